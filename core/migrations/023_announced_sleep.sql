-- Announced sleep (MQTT contract 1.1) and models' active schedules (issue 14, part 3).
--
-- A heartbeat may carry `next_checkin_s`: the device will be silent that long. The ingest
-- folds it into the stored deadline (overdue_at = the earlier of device time and receipt
-- + the announced sleep + the model's grace), so the monitor still reads deadlines by
-- range and never computes one per tick. contract/deadline.py is the same rule in Python.

-- When the device said it would check in next (its newest heartbeat's announcement, or the
-- start of its model's next active window when its deadline fell outside one). NULL: it
-- announced nothing. The monitor puts it into the owner's message ("did not wake up as
-- expected at 07:00"); no index, it is only read with the row.
ALTER TABLE device_state ADD COLUMN expected_at timestamptz;

-- Hours (in the device's own timezone, devices.timezone) in which the model's devices are
-- switched on; silence outside them is not offline. Both NULL: always on. An end before
-- the start crosses midnight (22:00-06:00).
ALTER TABLE device_models
    ADD COLUMN active_from  time,
    ADD COLUMN active_until time,
    ADD CONSTRAINT device_models_active_hours CHECK (
        (active_from IS NULL) = (active_until IS NULL) AND active_from <> active_until);

-- NULL when `at` falls inside an active window (or there is no schedule); else the start
-- of the next window after it. Windows are built from local wall-clock times on the days
-- around `at`, so one across midnight or a DST change is handled by AT TIME ZONE.
-- contract.deadline.next_active_start is this function in Python (tests/contract holds
-- the two together).
CREATE FUNCTION fleetwatch_next_active_start(
    at timestamptz, tz text, active_from time, active_until time)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN bool_or(at >= w.starts AND at < w.ends) THEN NULL
                ELSE min(w.starts) FILTER (WHERE w.starts > at) END
    FROM (
        SELECT (d.day + active_from) AT TIME ZONE tz AS starts,
               (d.day + CASE WHEN active_until > active_from THEN 0 ELSE 1 END
                      + active_until) AT TIME ZONE tz AS ends
        FROM (SELECT (at AT TIME ZONE tz)::date + n AS day
              FROM generate_series(-1, 2) AS n) AS d
        WHERE active_from IS NOT NULL AND active_until IS NOT NULL
    ) AS w
$$;
