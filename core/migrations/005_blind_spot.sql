-- The monitor's guard against its own blindness: when did any ingest last receive anything?

CREATE TABLE ingest_status (
    client_id       text PRIMARY KEY,
    last_message_at timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- The monitor asks for the latest system incident of a kind (its blind spots).
CREATE INDEX incidents_system ON incidents (kind, opened_at) WHERE scope = 'system';
