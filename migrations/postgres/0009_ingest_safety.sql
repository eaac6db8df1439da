-- Ingest safety and visibility.
--
-- ingest_quarantine.column_name: the column a quarantined row failed on (NULL when the row
-- as a whole is at fault: invalid JSON, a file that ends inside the row).
-- ingest_run.lease_until: how long the ingesting process vouches for a `running` run; it
-- renews the lease while it works. A `running` run whose lease ran out belongs to a process
-- that is gone (killed, crashed) and is marked `interrupted`.
-- Statuses are now: running, ok, rejected, failed, interrupted.

ALTER TABLE ingest_quarantine ADD COLUMN column_name TEXT;
ALTER TABLE ingest_run ADD COLUMN lease_until TIMESTAMPTZ;
CREATE INDEX ingest_run_status ON ingest_run (status);
