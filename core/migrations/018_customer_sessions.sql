-- The customer's side: sign-in links and sessions, kept as hashes only (portal/).
-- No password is stored anywhere: a customer signs in by following a short-lived, single-use
-- link sent to one of their own verified channels, which opens a session.

-- A channel counts for sign-in (and, once customers add their own, for alerts) only once it
-- is verified. Channels that exist were added by staff or by import, who vouch for them.
ALTER TABLE contact_channels ADD COLUMN verified_at timestamptz;
UPDATE contact_channels SET verified_at = created_at;

CREATE TABLE signin_links (
    token_hash  bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    customer_id text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    -- The verified channel the link was sent to (NULL: minted for the operator, the demo).
    channel_id  bigint REFERENCES contact_channels (id) ON DELETE CASCADE,
    -- Who asked: 'customer' (the page), or the staff key's name.
    requested_by text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX signin_links_customer ON signin_links (customer_id, created_at);

CREATE TABLE customer_sessions (
    id           bigserial PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    customer_id  text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    ended_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX customer_sessions_customer ON customer_sessions (customer_id);
