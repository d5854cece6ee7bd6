-- The release rollup reads heartbeats by time range across devices. Rows arrive in roughly
-- ts order, so a BRIN index is a few pages per partition and spares a scan of the whole day.
CREATE INDEX heartbeats_ts_brin ON heartbeats USING brin (ts);
