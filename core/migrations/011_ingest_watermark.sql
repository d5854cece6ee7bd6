-- How far each ingest has provably read the broker, and when it last regained the broker.
--
-- caught_up_at: the send time of the latest tick the ingest published to itself and got
-- back through its own session; the broker queues a session's messages in order, so
-- everything it accepted before that moment is stored. The monitor judges deadlines
-- against this, not the wall clock: a heartbeat waiting in the broker for a restarting
-- ingest is not silence.
-- broker_back_at: when the ingest reconnected after losing the broker; the devices'
-- Last Wills a broker sends on its way down are not news about the devices.
ALTER TABLE ingest_status
    ADD COLUMN caught_up_at   timestamptz,
    ADD COLUMN broker_back_at timestamptz;
