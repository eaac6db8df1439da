-- Compact cost lines. A cost line used to carry every descriptive field as text (scope, run
-- id, provider, service, region, resource id, SKU, accounts, tags JSON, four timestamps):
-- ~500 bytes a line, and SQLite's write rate for such rows (150k-280k rows/s on the
-- benchmark machine, no parsing at all) capped an ingest. The same information is now kept
-- in three tables:
--
--   cost_range  one row per (scope, ingest run, billing period): what `cost_line_range`
--               held, plus the billing period, which the scope already fixes;
--   cost_dims   one row per distinct combination of a run's descriptive fields (currency,
--               category, provider, service, region, zone, resource, SKU, accounts,
--               pricing category, unit, tags); an hourly export repeats each one per hour;
--   cost_fact   one row per line: its range, its dims, its source line, the money and
--               quantity (exact decimal text) and the charge period, in microseconds
--               since the Unix epoch (UTC): an integer index is smaller and cheaper to
--               insert into than one on 25-byte text.
--
-- `cost_line` stays, as a view with the same columns as before, for bursar's queries,
-- dashboards and anyone's SQL.
--
-- Ids: each ingest run reserves blocks of ids in all three tables while it holds the write
-- lock (BEGIN IMMEDIATE) and writes them explicitly; AUTOINCREMENT keeps them from ever
-- being reused after a delete.

CREATE TABLE cost_range (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    scope                TEXT NOT NULL,
    ingest_run_id        TEXT NOT NULL,
    billing_period_start TEXT NOT NULL,
    billing_period_end   TEXT NOT NULL,
    first_id             INTEGER NOT NULL,
    last_id              INTEGER NOT NULL,
    lines                INTEGER NOT NULL
);
CREATE INDEX cost_range_scope ON cost_range (scope, ingest_run_id);

CREATE TABLE cost_dims (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    ingest_run_id       TEXT NOT NULL,
    billing_currency    TEXT NOT NULL,
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
    consumed_unit       TEXT,
    tags                TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX cost_dims_run ON cost_dims (ingest_run_id);

CREATE TABLE cost_fact (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    range_id            INTEGER NOT NULL,
    dims_id             INTEGER NOT NULL,
    source_line         INTEGER NOT NULL,
    billed_cost         TEXT NOT NULL,
    effective_cost      TEXT NOT NULL,
    list_cost           TEXT,
    consumed_quantity   TEXT,
    charge_period_start INTEGER NOT NULL,
    charge_period_end   INTEGER NOT NULL
);
CREATE INDEX cost_fact_charge ON cost_fact (charge_period_start);

-- Move the stored lines. Ranges and dims are recomputed from the lines themselves. Charge
-- periods were RFC 3339 text as sqlx writes it (`2024-01-01T00:00:00[.ffffff]+00:00`):
-- whole seconds from strftime, the fraction's first six digits from the text.
INSERT INTO cost_range (scope, ingest_run_id, billing_period_start, billing_period_end, first_id, last_id, lines)
SELECT scope, ingest_run_id, billing_period_start, billing_period_end, MIN(id), MAX(id), COUNT(*)
FROM cost_line
GROUP BY scope, ingest_run_id, billing_period_start, billing_period_end
ORDER BY MIN(id);

INSERT INTO cost_dims (ingest_run_id, billing_currency, charge_category, provider_name, service_name,
    service_category, region_id, availability_zone, resource_id, sku_id, billing_account_id,
    sub_account_id, pricing_category, consumed_unit, tags)
SELECT DISTINCT ingest_run_id, billing_currency, charge_category, provider_name, service_name,
    service_category, region_id, availability_zone, resource_id, sku_id, billing_account_id,
    sub_account_id, pricing_category, consumed_unit, tags
FROM cost_line;

-- For the join below only (IS compares NULLs as equal and can use it).
CREATE INDEX cost_dims_move ON cost_dims (ingest_run_id, billing_currency, charge_category,
    provider_name, service_name, service_category, region_id, availability_zone, resource_id,
    sku_id, billing_account_id, sub_account_id, pricing_category, consumed_unit, tags);
CREATE INDEX cost_range_move ON cost_range (scope, ingest_run_id, billing_period_start, billing_period_end);

INSERT INTO cost_fact (id, range_id, dims_id, source_line, billed_cost, effective_cost, list_cost,
    consumed_quantity, charge_period_start, charge_period_end)
SELECT l.id, r.id, d.id, l.source_line, l.billed_cost, l.effective_cost, l.list_cost,
    l.consumed_quantity,
    CAST(strftime('%s', l.charge_period_start) AS INTEGER) * 1000000 + CASE WHEN substr(l.charge_period_start, 20, 1) = '.'
        THEN CAST(substr(substr(l.charge_period_start, 21, length(l.charge_period_start) - 20 - CASE WHEN l.charge_period_start LIKE '%Z' THEN 1 ELSE 6 END)
        || '000000', 1, 6) AS INTEGER) ELSE 0 END,
    CAST(strftime('%s', l.charge_period_end) AS INTEGER) * 1000000 + CASE WHEN substr(l.charge_period_end, 20, 1) = '.'
        THEN CAST(substr(substr(l.charge_period_end, 21, length(l.charge_period_end) - 20 - CASE WHEN l.charge_period_end LIKE '%Z' THEN 1 ELSE 6 END)
        || '000000', 1, 6) AS INTEGER) ELSE 0 END
FROM cost_line l
JOIN cost_range r ON r.scope = l.scope AND r.ingest_run_id = l.ingest_run_id
    AND r.billing_period_start = l.billing_period_start AND r.billing_period_end = l.billing_period_end
JOIN cost_dims d ON d.ingest_run_id = l.ingest_run_id AND d.billing_currency = l.billing_currency
    AND d.charge_category = l.charge_category AND d.provider_name = l.provider_name
    AND d.service_name IS l.service_name AND d.service_category IS l.service_category
    AND d.region_id IS l.region_id AND d.availability_zone IS l.availability_zone
    AND d.resource_id IS l.resource_id AND d.sku_id IS l.sku_id
    AND d.billing_account_id IS l.billing_account_id AND d.sub_account_id IS l.sub_account_id
    AND d.pricing_category IS l.pricing_category AND d.consumed_unit IS l.consumed_unit
    AND d.tags = l.tags
ORDER BY l.id;

DROP INDEX cost_dims_move;
DROP INDEX cost_range_move;

-- Ids deleted before the move are never handed out again.
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'cost_line'))
WHERE name = 'cost_fact' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'cost_line');
INSERT INTO sqlite_sequence (name, seq)
SELECT 'cost_fact', seq FROM sqlite_sequence WHERE name = 'cost_line'
AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'cost_fact');

DROP TABLE cost_line;
DROP TABLE cost_line_range;

-- The lines as they were, charge periods as RFC 3339 text again (as sqlx writes it, so
-- they read back as timestamps). LEFT JOINs on primary keys: a query that reads no column
-- of cost_range or cost_dims does not join them. bursar's own queries read cost_fact and
-- cost_dims directly, so a time range uses the integer index.
CREATE VIEW cost_line AS
SELECT f.id AS id,
       r.scope AS scope,
       r.ingest_run_id AS ingest_run_id,
       f.source_line AS source_line,
       f.billed_cost AS billed_cost,
       f.effective_cost AS effective_cost,
       f.list_cost AS list_cost,
       d.billing_currency AS billing_currency,
       r.billing_period_start AS billing_period_start,
       r.billing_period_end AS billing_period_end,
       strftime('%Y-%m-%dT%H:%M:%S', f.charge_period_start / 1000000, 'unixepoch')
           || CASE WHEN f.charge_period_start % 1000000 = 0 THEN ''
                   WHEN f.charge_period_start % 1000 = 0 THEN printf('.%03d', (f.charge_period_start % 1000000) / 1000)
                   ELSE printf('.%06d', f.charge_period_start % 1000000) END || '+00:00' AS charge_period_start,
       strftime('%Y-%m-%dT%H:%M:%S', f.charge_period_end / 1000000, 'unixepoch')
           || CASE WHEN f.charge_period_end % 1000000 = 0 THEN ''
                   WHEN f.charge_period_end % 1000 = 0 THEN printf('.%03d', (f.charge_period_end % 1000000) / 1000)
                   ELSE printf('.%06d', f.charge_period_end % 1000000) END || '+00:00' AS charge_period_end,
       d.charge_category AS charge_category,
       d.provider_name AS provider_name,
       d.service_name AS service_name,
       d.service_category AS service_category,
       d.region_id AS region_id,
       d.availability_zone AS availability_zone,
       d.resource_id AS resource_id,
       d.sku_id AS sku_id,
       d.billing_account_id AS billing_account_id,
       d.sub_account_id AS sub_account_id,
       d.pricing_category AS pricing_category,
       f.consumed_quantity AS consumed_quantity,
       d.consumed_unit AS consumed_unit,
       d.tags AS tags
FROM cost_fact f
LEFT JOIN cost_range r ON r.id = f.range_id
LEFT JOIN cost_dims d ON d.id = f.dims_id;
