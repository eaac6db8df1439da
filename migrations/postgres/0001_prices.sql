-- Price catalog (Postgres). Money is NUMERIC (exact); timestamps TIMESTAMPTZ.
-- Same shape as migrations/sqlite/0001_prices.sql.

CREATE TABLE instance_type (
    provider        TEXT NOT NULL,
    instance_type   TEXT NOT NULL,
    vcpus           DOUBLE PRECISION NOT NULL,
    memory_gib      DOUBLE PRECISION NOT NULL,
    gpu_model       TEXT,
    gpu_count       DOUBLE PRECISION NOT NULL DEFAULT 0,
    gpu_memory_gib  DOUBLE PRECISION NOT NULL DEFAULT 0,
    arch            TEXT NOT NULL DEFAULT 'x86_64',
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, instance_type)
);

CREATE TABLE price_observation (
    id              BIGSERIAL PRIMARY KEY,
    provider        TEXT NOT NULL,
    region          TEXT NOT NULL,
    zone            TEXT NOT NULL,
    instance_type   TEXT NOT NULL,
    market          TEXT NOT NULL CHECK (market IN ('on_demand', 'spot')),
    price_per_hour  NUMERIC NOT NULL,
    currency        TEXT NOT NULL,
    source          TEXT NOT NULL,
    observed_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX price_observation_offer
    ON price_observation (provider, region, instance_type, market, observed_at);

CREATE TABLE price_current (
    provider        TEXT NOT NULL,
    region          TEXT NOT NULL,
    zone            TEXT NOT NULL,
    instance_type   TEXT NOT NULL,
    market          TEXT NOT NULL CHECK (market IN ('on_demand', 'spot')),
    price_per_hour  NUMERIC NOT NULL,
    currency        TEXT NOT NULL,
    source          TEXT NOT NULL,
    observed_at     TIMESTAMPTZ NOT NULL,
    changed_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, region, zone, instance_type, market)
);

CREATE TABLE spot_band (
    provider        TEXT NOT NULL,
    region          TEXT NOT NULL,
    instance_type   TEXT NOT NULL,
    band            INTEGER NOT NULL,
    label           TEXT NOT NULL,
    savings_pct     INTEGER NOT NULL,
    observed_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, region, instance_type)
);

CREATE TABLE source_status (
    name            TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    last_attempt_at TIMESTAMPTZ,
    last_success_at TIMESTAMPTZ,
    last_error      TEXT,
    last_error_at   TIMESTAMPTZ,
    rows            BIGINT NOT NULL DEFAULT 0
);
