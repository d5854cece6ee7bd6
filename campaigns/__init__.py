"""Recall notices, over-the-air update campaigns and safety recalls with their remedy, rolled
out in waves that stop themselves.

targeting.py   which devices a campaign is for (pure)
waves.py       who is in which wave, maintenance windows, when the next wave opens (pure)
steps.py       one device's update: its next step, timeouts, retries, success (pure)
gates.py       the health gate comparing updated devices with the rest (pure)
store.py       creating campaigns, their progress, pause / resume / cancel (SQL)
readings.py    what the runner reads: campaign rows, wave counts, the gate's figures (SQL)
notices.py     what owners are told, through the alerts outbox
links.py       a recall notice's link: a token per notice kept as a hash, open while the
               recall is (SQL, and the pure rule)
remedy.py      a safety recall with its remedy: already fixed, follow-ups due, settled,
               the remedy's words, completion counts (pure)
recall.py      a safety recall's steps in each tick and what owners are told (SQL)
completion.py  a safety recall's completion per device, as JSON or CSV (SQL)
runner.py      the periodic job (APScheduler) that moves every campaign on, and its MQTT
"""
