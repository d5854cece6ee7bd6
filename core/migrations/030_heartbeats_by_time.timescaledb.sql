-- A hypertable has an index on ts from create_hypertable; the plain-PostgreSQL BRIN index
-- of this step is not needed here.
SELECT 1;
