"""The customer's side: what lets a person (not a program with a key) reach their own things,
and answer the messages they get.

    sessions      sign-in links (short-lived, single-use, sent to a verified channel) and the
                  sessions they open; owns `signin_links` and `customer_sessions`
    requests      sending sign-in links: asked for by address (limited), or by staff
    addresses     where a channel delivers (an e-mail, a phone number, a push topic), by Apprise
    verification  codes proving a channel a customer added is theirs; owns `channel_codes`
    links         message links: minted per message as the dispatcher claims it, kept as
                  hashes, opened by token (who, what about, until when); owns
                  `message_links` and `message_link_subjects`
    actions       what an owner may do about a device or an incident ("I know", snooze, stop
                  watching, confirm a recall): when each is available, and doing it
    page          what a link's page shows: the device, its incident with the owner's
                  timeline, the recall, the actions available now
    cards         a device as a card on the customer's page: status in words, since when,
                  battery, signal, firmware, what to do now (pure; GET /api/v1/me/home)
    static/       the customer's page at /my/ (plain HTML, script and style)

Every token here is random and kept only as its SHA-256: a copy of the database opens
nothing, and no server secret has to be shared by every process. Writes go through their
owners: incidents/ for incidents and timelines, monitor/ for a device's status, alerts/ for
silences and the outbox, campaigns/ for recalls.
"""
