-- Billing (SQLite): FOCUS-shaped cost lines, ingest runs, quarantined rows.
-- Money is exact decimal TEXT; timestamps RFC 3339 TEXT (UTC); tags a JSON object.

CREATE TABLE ingest_run (
    id                TEXT PRIMARY KEY,
    started_at        TEXT NOT NULL,
    finished_at       TEXT,
    source            TEXT NOT NULL,     -- path or s3:// URI
    format            TEXT,              -- focus, cur, gcp, azure
    variant           TEXT,              -- FOCUS version or native variant
    status            TEXT NOT NULL,     -- running, ok, failed
    rows_read         INTEGER NOT NULL DEFAULT 0,
    rows_stored       INTEGER NOT NULL DEFAULT 0,
    rows_quarantined  INTEGER NOT NULL DEFAULT 0,
    deviations        TEXT NOT NULL DEFAULT '{}',   -- JSON {kind: count}
    totals            TEXT NOT NULL DEFAULT '{}',   -- JSON {currency: {billed, effective}}
    scopes            TEXT NOT NULL DEFAULT '[]',   -- JSON [scope] replaced by this run
    error             TEXT
);

-- Rows of one scope (format|provider|billing account|billing period start) are replaced
-- together, atomically, when a newer export of that period is ingested.
CREATE TABLE cost_line (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    scope               TEXT NOT NULL,
    ingest_run_id       TEXT NOT NULL,
    source_line         INTEGER NOT NULL,
    billed_cost         TEXT NOT NULL,
    effective_cost      TEXT NOT NULL,
    list_cost           TEXT,
    billing_currency    TEXT NOT NULL,
    billing_period_start TEXT NOT NULL,
    billing_period_end  TEXT NOT NULL,
    charge_period_start TEXT NOT NULL,
    charge_period_end   TEXT NOT NULL,
    charge_category     TEXT NOT NULL,
    provider_name       TEXT NOT NULL,
    service_name        TEXT,
    service_category    TEXT,
    region_id           TEXT,
    availability_zone   TEXT,
    resource_id         TEXT,
    sku_id              TEXT,
    billing_account_id  TEXT,
    sub_account_id      TEXT,
    pricing_category    TEXT,
    consumed_quantity   TEXT,
    consumed_unit       TEXT,
    tags                TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX cost_line_scope ON cost_line (scope);
CREATE INDEX cost_line_charge ON cost_line (charge_period_start);

CREATE TABLE ingest_quarantine (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    ingest_run_id  TEXT NOT NULL,
    file           TEXT NOT NULL,
    line           INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    raw            TEXT NOT NULL
);
CREATE INDEX ingest_quarantine_run ON ingest_quarantine (ingest_run_id);
CREATE INDEX cost_line_run ON cost_line (ingest_run_id);
