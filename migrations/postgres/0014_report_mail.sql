-- The monthly report by email (Postgres): one row per report month queued in the alert
-- outbox. The primary key is what sends a month's report at most once, across restarts and
-- replicas: the row and the outbox messages are written in one transaction.
CREATE TABLE report_mail (
    month       TEXT PRIMARY KEY,      -- 'YYYY-MM'
    queued_at   TIMESTAMPTZ NOT NULL,
    recipients  BIGINT NOT NULL
);
