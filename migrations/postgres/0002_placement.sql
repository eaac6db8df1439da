-- Placement (Postgres): operator availability marks and the decision log.

CREATE TABLE availability_mark (
    id          TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    region      TEXT,
    zone        TEXT,
    reason      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE placement_decision (
    id                  TEXT PRIMARY KEY,
    decided_at          TIMESTAMPTZ NOT NULL,
    team                TEXT,
    project             TEXT,
    job_id              TEXT,
    labels              JSONB NOT NULL,
    request             JSONB NOT NULL,
    offers_considered   BIGINT NOT NULL,
    feasible            BIGINT NOT NULL,
    chosen_provider     TEXT,
    chosen_region       TEXT,
    chosen_zone         TEXT,
    chosen_instance_type TEXT,
    chosen_market       TEXT,
    chosen_total        NUMERIC,
    runner_up_provider  TEXT,
    runner_up_region    TEXT,
    runner_up_instance_type TEXT,
    runner_up_market    TEXT,
    runner_up_total     NUMERIC,
    baseline_total      NUMERIC,
    estimated_saving    NUMERIC,
    currency            TEXT NOT NULL,
    outcome             TEXT NOT NULL,
    latency_us          BIGINT NOT NULL
);
CREATE INDEX placement_decision_time ON placement_decision (decided_at);
CREATE INDEX placement_decision_team ON placement_decision (team, decided_at);
