-- Placement (SQLite): operator availability marks and the decision log.

CREATE TABLE availability_mark (
    id          TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    region      TEXT,
    zone        TEXT,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);

-- One row per SelectProvider decision, written off the request path in batches.
CREATE TABLE placement_decision (
    id                  TEXT PRIMARY KEY,
    decided_at          TEXT NOT NULL,
    team                TEXT,
    project             TEXT,
    job_id              TEXT,
    labels              TEXT NOT NULL,          -- JSON object of all caller labels
    request             TEXT NOT NULL,          -- JSON summary of the request
    offers_considered   INTEGER NOT NULL,
    feasible            INTEGER NOT NULL,
    chosen_provider     TEXT,
    chosen_region       TEXT,
    chosen_zone         TEXT,
    chosen_instance_type TEXT,
    chosen_market       TEXT,
    chosen_total        TEXT,                   -- exact decimal, USD
    runner_up_provider  TEXT,
    runner_up_region    TEXT,
    runner_up_instance_type TEXT,
    runner_up_market    TEXT,
    runner_up_total     TEXT,
    baseline_total      TEXT,                   -- cheapest on-demand in the data's own region
    estimated_saving    TEXT,                   -- baseline_total - chosen_total
    currency            TEXT NOT NULL,
    outcome             TEXT NOT NULL,          -- 'placed' or 'no_feasible'
    latency_us          INTEGER NOT NULL
);
CREATE INDEX placement_decision_time ON placement_decision (decided_at);
CREATE INDEX placement_decision_team ON placement_decision (team, decided_at);
