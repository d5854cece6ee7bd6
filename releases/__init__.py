"""Release health: how each firmware version fares on the devices that run it.

Owns the rollup tables release_rollup_state, release_cursor, release_device_days,
release_daily and release_digests (core/migrations/029).

    heartbeats ──(rollup.py, the monitor's `releases` job, by ts watermark)──►
        release_device_days (device, day, firmware)
        release_daily (model, firmware, day)  ◄── health.py (the route), digest.py (weekly)

stats.py holds the rate ratio and its interval: pure functions, no database.
"""
