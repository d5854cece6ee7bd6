-- What one device's garbage may cost, and an ingest's name kept off /metrics.
--
-- A rejected message keeps only the first 1,024 bytes of its payload
-- (contract.messages.KEPT_PAYLOAD_BYTES) and the whole payload's size; rows stored whole
-- before are cut the same way. The ingest stores at most a few rejections per device a
-- minute (FLEETWATCH_INGEST_REJECTED_PER_DEVICE_PER_MINUTE), counts the rest in
-- rejected_unkept_total, and deletes rows older than FLEETWATCH_INGEST_REJECTED_RETENTION_DAYS
-- (through rejected_messages_received).
ALTER TABLE rejected_messages ADD COLUMN payload_size integer;
UPDATE rejected_messages
SET payload_size = octet_length(payload), payload = substring(payload FROM 1 FOR 1024)
WHERE payload IS NOT NULL;
ALTER TABLE rejected_messages
    ADD CONSTRAINT rejected_messages_payload_kept CHECK (octet_length(payload) <= 1024),
    ADD CONSTRAINT rejected_messages_payload_size CHECK (payload_size >= 0);

-- metric_label: how /metrics names an ingest (its watermark lag). Not its client id, which
-- names its broker session and is nobody's business outside; a random label of its own,
-- which the ingest logs when it starts.
ALTER TABLE ingest_status
    ADD COLUMN rejected_unkept_total bigint NOT NULL DEFAULT 0,
    ADD COLUMN metric_label text NOT NULL
        DEFAULT left(md5(random()::text || clock_timestamp()::text), 12);
