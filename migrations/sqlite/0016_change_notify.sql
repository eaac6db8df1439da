-- Postgres notifies listening replicas of catalog, spend and mark changes here
-- (migrations/postgres/0016_change_notify.sql). SQLite mode is single-node (a second
-- `bursar serve` on the same file refuses to start), and its server sees other processes'
-- writes through the generation poll: nothing to do. The file keeps both backends'
-- migrations numbered alike.
SELECT 1;
