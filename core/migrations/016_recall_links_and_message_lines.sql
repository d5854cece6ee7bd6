-- Recall links kept as hashes only. Each notice sent (the first, and the repeat on the next
-- channel) carries a link token of its own; the owner's message holds the token, this table
-- its SHA-256. A link works while its recall is open (campaigns/links.py).
CREATE TABLE recall_links (
    token_hash  bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    campaign_id bigint NOT NULL,
    device_id   text NOT NULL,
    created_at  timestamptz NOT NULL,
    FOREIGN KEY (campaign_id, device_id)
        REFERENCES campaign_devices (campaign_id, device_id) ON DELETE CASCADE
);
CREATE INDEX recall_links_device ON recall_links (campaign_id, device_id);

-- Links already sent keep working: their tokens move here as hashes, and the column that
-- held them in clear goes.
INSERT INTO recall_links (token_hash, campaign_id, device_id, created_at)
SELECT sha256(convert_to(ack_token, 'UTF8')), campaign_id, device_id,
       coalesce(notified_at, now())
FROM campaign_devices WHERE ack_token IS NOT NULL;
ALTER TABLE campaign_devices DROP COLUMN ack_token;

-- A timeline's message lines name the customer channel they were about (`channel_id`), so
-- that its owner, and only they, read them (incidents/visibility.py). Lines written before
-- get it from the delivery they record; staff channels' lines stay without.
UPDATE incident_events e
SET detail = e.detail || jsonb_build_object('channel_id', n.channel_id)
FROM delivery_attempts a
JOIN notifications n ON n.id = a.notification_id
WHERE e.kind IN ('notified', 'notification_failed')
  AND NOT e.detail ? 'channel_id'
  AND e.detail ->> 'message_id' = a.message_id::text
  AND n.channel_id IS NOT NULL;
