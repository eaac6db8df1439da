-- Budgets (Postgres): definitions, fired alerts, the alert outbox and the evaluation history.
-- Money is NUMERIC; timestamps TIMESTAMPTZ.

-- A budget is its name and an opaque JSON spec (validated by domain::budget).
CREATE TABLE budget (
    name        TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,                                   -- JSON
    origin      TEXT NOT NULL CHECK (origin IN ('api', 'config')),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- One row per (budget, period, threshold) that fired: the primary key is what makes an
-- alert fire at most once per period, across restarts and replicas.
CREATE TABLE budget_alert (
    budget         TEXT NOT NULL,
    period_key     TEXT NOT NULL,
    threshold_key  TEXT NOT NULL,
    fired_at       TIMESTAMPTZ NOT NULL,
    actual         NUMERIC NOT NULL,
    forecast       NUMERIC NOT NULL,
    amount         NUMERIC NOT NULL,
    currency       TEXT NOT NULL,        -- ISO code, or GB for egress budgets
    PRIMARY KEY (budget, period_key, threshold_key)
);

-- Messages to deliver, written in the same transaction as their budget_alert row.
-- `target` is an email address or a Slack webhook URL: a secret, never logged.
CREATE TABLE alert_outbox (
    id               BIGSERIAL PRIMARY KEY,
    budget           TEXT NOT NULL,
    period_key       TEXT NOT NULL,
    threshold_key    TEXT NOT NULL,
    channel          TEXT NOT NULL CHECK (channel IN ('email', 'slack')),
    target           TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT NOT NULL,
    body_html        TEXT NOT NULL,
    slack_payload    TEXT NOT NULL,                              -- JSON (Block Kit)
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    claimed_until    TIMESTAMPTZ,                                -- lease of the sender
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ
);
-- The claim query: pending rows by due time.
CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX alert_outbox_budget ON alert_outbox (budget, period_key);

-- Every evaluation of a budget, for dashboards.
CREATE TABLE budget_evaluation (
    id            BIGSERIAL PRIMARY KEY,
    budget        TEXT NOT NULL,
    evaluated_at  TIMESTAMPTZ NOT NULL,
    period_key    TEXT NOT NULL,
    period_start  TIMESTAMPTZ NOT NULL,
    period_end    TIMESTAMPTZ NOT NULL,
    amount        NUMERIC NOT NULL,
    currency      TEXT NOT NULL,        -- ISO code, or GB for egress budgets
    actual        NUMERIC NOT NULL,
    forecast      NUMERIC               -- NULL when there is no forecast yet
);
CREATE INDEX budget_evaluation_budget ON budget_evaluation (budget, evaluated_at);
CREATE INDEX budget_evaluation_time ON budget_evaluation (evaluated_at);
