-- Asking for a sign-in link by address, and verifying the channels customers add (portal/).

-- Where a channel delivers, normalized (portal/addresses.py): an e-mail's recipient in lower
-- case, a phone number as + and digits, a push topic; NULL where a URL names no person
-- (webhooks). Computed from the Apprise URL with Apprise's own parsing whenever a channel is
-- saved; channels saved before this migration get theirs when an API process starts
-- (portal.addresses.fill_missing_addresses: SQL cannot parse Apprise URLs).
ALTER TABLE contact_channels ADD COLUMN address text;
-- A sign-in request looks up verified channels by address.
CREATE INDEX contact_channels_address ON contact_channels (address)
    WHERE address IS NOT NULL AND verified_at IS NOT NULL;

-- Links sent to a channel within the hour: a request's limit per address.
CREATE INDEX signin_links_channel ON signin_links (channel_id, created_at)
    WHERE channel_id IS NOT NULL;

-- A code sent to a channel a customer added: the channel counts once the code comes back.
-- Only a salted SHA-256 of the code is kept. A 6-digit code's hash is no secret against
-- someone holding this table (a million guesses); what protects it is its short life and
-- its few tries, both enforced here.
CREATE TABLE channel_codes (
    id          bigserial PRIMARY KEY,
    channel_id  bigint NOT NULL REFERENCES contact_channels (id) ON DELETE CASCADE,
    customer_id text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    code_hash   bytea NOT NULL CHECK (octet_length(code_hash) = 32),
    salt        bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    -- Wrong codes given so far; at the limit the code is ended.
    tries       integer NOT NULL DEFAULT 0,
    -- Used, replaced by a newer code, or out of tries.
    ended_at    timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX channel_codes_channel ON channel_codes (channel_id, created_at);
