"""The customer's side: what lets a person (not a program with a key) reach their own things.

    sessions  sign-in links (short-lived, single-use, sent to a verified channel) and the
              sessions they open; owns `signin_links` and `customer_sessions`
    cards     a device as a card on the customer's page: status in words, since when,
              battery, signal, firmware, what to do now (pure; GET /api/v1/me/home)
    static/   the customer's page at /my/ (plain HTML, script and style)
    requests  sending sign-in links: asked for by address (limited), or by staff
    addresses where a channel delivers (an e-mail, a phone number, a push topic), by Apprise
    verification  codes proving a channel a customer added is theirs; owns `channel_codes`

Every token here is random and kept only as its SHA-256: a copy of the database opens
nothing, and no server secret has to be shared by every process.
"""
