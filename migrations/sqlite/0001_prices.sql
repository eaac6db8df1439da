-- Price catalog (SQLite). Money is TEXT holding an exact, normalised decimal string;
-- timestamps are RFC 3339 TEXT in UTC. Same shape as migrations/postgres/0001_prices.sql.

-- Hardware of each instance type, per provider.
CREATE TABLE instance_type (
    provider        TEXT NOT NULL,
    instance_type   TEXT NOT NULL,
    vcpus           REAL NOT NULL,
    memory_gib      REAL NOT NULL,
    gpu_model       TEXT,
    gpu_count       REAL NOT NULL DEFAULT 0,
    gpu_memory_gib  REAL NOT NULL DEFAULT 0,
    arch            TEXT NOT NULL DEFAULT 'x86_64',
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (provider, instance_type)
);

-- History: one row each time an offer's price is first seen or changes.
CREATE TABLE price_observation (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    provider        TEXT NOT NULL,
    region          TEXT NOT NULL,
    zone            TEXT NOT NULL,
    instance_type   TEXT NOT NULL,
    market          TEXT NOT NULL CHECK (market IN ('on_demand', 'spot')),
    price_per_hour  TEXT NOT NULL,
    currency        TEXT NOT NULL,
    source          TEXT NOT NULL,
    observed_at     TEXT NOT NULL
);
CREATE INDEX price_observation_offer
    ON price_observation (provider, region, instance_type, market, observed_at);

-- Current view: one row per offer. observed_at = last time a source confirmed the price;
-- changed_at = when it last changed.
CREATE TABLE price_current (
    provider        TEXT NOT NULL,
    region          TEXT NOT NULL,
    zone            TEXT NOT NULL,
    instance_type   TEXT NOT NULL,
    market          TEXT NOT NULL CHECK (market IN ('on_demand', 'spot')),
    price_per_hour  TEXT NOT NULL,
    currency        TEXT NOT NULL,
    source          TEXT NOT NULL,
    observed_at     TEXT NOT NULL,
    changed_at      TEXT NOT NULL,
    PRIMARY KEY (provider, region, zone, instance_type, market)
);

-- Spot interruption frequency band per instance type and region (AWS spot advisor).
CREATE TABLE spot_band (
    provider        TEXT NOT NULL,
    region          TEXT NOT NULL,
    instance_type   TEXT NOT NULL,
    band            INTEGER NOT NULL,
    label           TEXT NOT NULL,
    savings_pct     INTEGER NOT NULL,
    observed_at     TEXT NOT NULL,
    PRIMARY KEY (provider, region, instance_type)
);

-- Health of each price source.
CREATE TABLE source_status (
    name            TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    last_attempt_at TEXT,
    last_success_at TEXT,
    last_error      TEXT,
    last_error_at   TEXT,
    rows            INTEGER NOT NULL DEFAULT 0
);
