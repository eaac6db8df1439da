-- Idle-GPU enforcement (postgres): the GPU fleet's inventory, utilisation samples, the policy's
-- open cases (notice sent, action due), snoozes, the audit log and the savings ledger.

-- The last inventory of GPU machines, one row per (provider, instance id). Rows of
-- instances an inventory no longer lists stay, with their last state, for the ledger.
CREATE TABLE fleet_instance (
    provider          TEXT NOT NULL,
    id                TEXT NOT NULL,       -- EC2 instance id, GCE numeric id, Azure vmId
    name              TEXT NOT NULL,
    scope             TEXT NOT NULL,       -- AWS region, GCP project, Azure subscription/RG
    resource          TEXT NOT NULL,       -- what the cloud adapter addresses it by
    region            TEXT NOT NULL,
    zone              TEXT NOT NULL,
    instance_type     TEXT NOT NULL,
    gpu_model         TEXT NOT NULL,
    gpu_count         INTEGER NOT NULL,
    state             TEXT NOT NULL,
    launched_at       TIMESTAMPTZ,
    private_hostname  TEXT NOT NULL,
    labels            TEXT NOT NULL,       -- JSON object
    managed_by        TEXT NOT NULL,       -- '' = not owned by an autoscaler
    cloud_protection  TEXT NOT NULL,       -- '' = none
    price_per_hour    NUMERIC,               -- from the catalog; NULL when it has none
    currency          TEXT NOT NULL,
    first_seen        TIMESTAMPTZ NOT NULL,
    last_seen         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, id)
);

-- Utilisation samples, from dcgm-exporter scrapes, Prometheus queries and agent pushes.
-- `at` is Unix milliseconds (both backends; compact and fast to prune). Kept for
-- `idle_gpu.retention`.
CREATE TABLE gpu_sample (
    instance_id   TEXT NOT NULL,
    gpu           TEXT NOT NULL,
    at            BIGINT NOT NULL,
    utilization   DOUBLE PRECISION NOT NULL,          -- percent, 0–100
    memory_mib    DOUBLE PRECISION,
    power_watts   DOUBLE PRECISION,
    source        TEXT NOT NULL          -- dcgm, prometheus, push
);
CREATE INDEX gpu_sample_instance_at ON gpu_sample (instance_id, at);
CREATE INDEX gpu_sample_at ON gpu_sample (at);

-- An instance the policy found idle and is taking down the ladder (notice sent, action
-- due, what was audited): the policy's `Case` as JSON, read back at the next pass and after a
-- restart. Deleted when the case ends (acted, cancelled, kept).
CREATE TABLE fleet_case (
    provider      TEXT NOT NULL,
    instance_id   TEXT NOT NULL,
    opened_at     TIMESTAMPTZ NOT NULL,
    detail        TEXT NOT NULL,       -- JSON
    PRIMARY KEY (provider, instance_id)
);

-- Snoozes (`bursar fleet keep`).
CREATE TABLE fleet_keep (
    provider      TEXT NOT NULL,
    instance_id   TEXT NOT NULL,
    until_at      TIMESTAMPTZ NOT NULL,
    reason        TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, instance_id)
);

-- The audit log: one row per decision, with its reason and the utilisation evidence.
CREATE TABLE fleet_action (
    id              BIGSERIAL PRIMARY KEY,
    at              TIMESTAMPTZ NOT NULL,
    provider        TEXT NOT NULL,
    instance_id     TEXT NOT NULL,
    instance_name   TEXT NOT NULL,
    decision        TEXT NOT NULL,
    mode            TEXT NOT NULL,
    reason          TEXT NOT NULL,
    evidence        TEXT NOT NULL,        -- JSON
    price_per_hour  NUMERIC,
    currency        TEXT NOT NULL,
    error           TEXT NOT NULL,
    -- Savings ledger, for stopped/terminated rows: the latest inventory poll that still saw
    -- the machine stopped or gone (NULL until one has); avoided = price × (stopped_until - at).
    stopped_until   TIMESTAMPTZ,
    -- Set when a later poll saw it running again: the ledger stops counting.
    restarted_at    TIMESTAMPTZ
);
CREATE INDEX fleet_action_instance ON fleet_action (provider, instance_id, at);
CREATE INDEX fleet_action_at ON fleet_action (at);
