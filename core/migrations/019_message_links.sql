-- Message links (portal/links.py): every message to a customer carries a link to their page
-- for what it is about, kept as the SHA-256 of its token only. One link per message sent; a
-- digest's one link covers each of its notifications' subjects (message_link_subjects).
CREATE TABLE message_links (
    token_hash  bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    customer_id text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    -- The dispatcher's message (delivery_attempts.message_id) the link went out in.
    message_id  uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);
-- Expired links are deleted by age.
CREATE INDEX message_links_expiry ON message_links (expires_at);

-- What a link is about: one row per notification of its message (the device, its incident
-- if any, the recall campaign if a recall notice).
CREATE TABLE message_link_subjects (
    token_hash      bytea NOT NULL REFERENCES message_links (token_hash) ON DELETE CASCADE,
    notification_id bigint NOT NULL,
    device_id       text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    incident_id     bigint,
    campaign_id     bigint,
    PRIMARY KEY (token_hash, notification_id)
);
CREATE INDEX message_link_subjects_device ON message_link_subjects (device_id);

-- An owner's snooze is a silence of its own kind: it holds ordinary alerts but not urgent
-- ones (alerts/router.py), and the owner's next snooze replaces it. Staff silences: NULL.
ALTER TABLE silences ADD COLUMN owner_id text REFERENCES customers (id) ON DELETE CASCADE;
CREATE INDEX silences_owner ON silences (target, owner_id) WHERE owner_id IS NOT NULL;

-- The owner said "I know": no reminders from then on (alerts/escalation.py). Apart from
-- acknowledged_at, which staff set too and which stops escalation only.
ALTER TABLE incidents ADD COLUMN owner_acknowledged_at timestamptz;

-- 'paused': the owner stopped watching the device on purpose, until it next reports
-- (monitor/pause.py). Kept out of the watch index; its next heartbeat brings it back through
-- the recovery read, whose partial index now covers it too.
ALTER TABLE device_state DROP CONSTRAINT device_state_status_check;
ALTER TABLE device_state ADD CONSTRAINT device_state_status_check
    CHECK (status IN ('provisioned', 'never_seen', 'online', 'degraded', 'offline', 'retired',
                      'paused'));
DROP INDEX device_state_back;
CREATE INDEX device_state_back ON device_state (status_changed_at)
    WHERE status IN ('offline', 'never_seen', 'paused') AND last_received_at > status_changed_at;
