-- On TimescaleDB the API reads summaries from the continuous aggregate heartbeats_5m and
-- compressed chunks are segmented by device: the plain-PostgreSQL covering index of this
-- step is not needed here.
SELECT 1;
