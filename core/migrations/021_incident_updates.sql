-- Staff's updates to customers on an incident or a fleet outage: the timeline keeps each
-- one (`update` lines); the incident keeps the latest, which an outage's reminders carry,
-- and the promise of the next, which nudges staff once if it passes without one.
ALTER TABLE incidents
    ADD COLUMN last_update_at   timestamptz,
    ADD COLUMN last_update_text text,
    ADD COLUMN next_update_at   timestamptz,
    -- When staff were nudged about the promise in next_update_at (NULL: not yet).
    ADD COLUMN update_nudged_at timestamptz;
-- The few open incidents with a promise still to check.
CREATE INDEX incidents_update_promised ON incidents (next_update_at)
    WHERE next_update_at IS NOT NULL AND update_nudged_at IS NULL AND status <> 'resolved';
