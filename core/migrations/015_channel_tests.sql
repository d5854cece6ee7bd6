-- Test messages a customer sent to their own channels: each is a real send to a URL of the
-- customer's choosing, so they are limited per customer and hour
-- (FLEETWATCH_API_CHANNEL_TESTS_PER_HOUR). Rows older than the hour are dropped as new ones
-- come.
CREATE TABLE channel_tests (
    id          bigserial PRIMARY KEY,
    customer_id text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    channel_id  bigint REFERENCES contact_channels (id) ON DELETE SET NULL,
    sent_at     timestamptz NOT NULL
);
CREATE INDEX channel_tests_customer ON channel_tests (customer_id, sent_at);
