-- Compact cost lines. A cost line used to carry every descriptive field as text (scope, run
-- id, provider, service, region, resource id, SKU, accounts, tags JSON, four timestamps):
-- ~500 bytes a line, and the table's write rate capped an ingest (binary COPY of ~500-byte
-- rows). The same information is now kept
-- in three tables:
--
--   cost_range  one row per (scope, ingest run, billing period): what `cost_line_range`
--               held, plus the billing period, which the scope already fixes;
--   cost_dims   one row per distinct combination of a run's descriptive fields (currency,
--               category, provider, service, region, zone, resource, SKU, accounts,
--               pricing category, unit, tags); an hourly export repeats each one per hour;
--   cost_fact   one row per line: its range, its dims, its source line, the money and
--               quantity (exact decimal text) and the charge period.
--
-- `cost_line` stays, as a view with the same columns as before, for bursar's queries,
-- dashboards and anyone's SQL.
--
-- Ids: each ingest run reserves blocks of ids in all three tables while it holds the
-- ingest advisory lock, writes them explicitly, and moves each table's sequence past its
-- block at the end (so no id is ever handed out twice).

CREATE TABLE cost_range (
    id                   BIGSERIAL PRIMARY KEY,
    scope                TEXT COLLATE "C" NOT NULL,
    ingest_run_id        TEXT COLLATE "C" NOT NULL,
    billing_period_start TIMESTAMPTZ NOT NULL,
    billing_period_end   TIMESTAMPTZ NOT NULL,
    first_id             BIGINT NOT NULL,
    last_id              BIGINT NOT NULL,
    lines                BIGINT NOT NULL
);
CREATE INDEX cost_range_scope ON cost_range (scope, ingest_run_id);

CREATE TABLE cost_dims (
    id                  BIGSERIAL PRIMARY KEY,
    ingest_run_id       TEXT COLLATE "C" NOT NULL,
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
    tags                JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX cost_dims_run ON cost_dims (ingest_run_id);

CREATE TABLE cost_fact (
    id                  BIGSERIAL PRIMARY KEY,
    range_id            BIGINT NOT NULL,
    dims_id             BIGINT NOT NULL,
    source_line         BIGINT NOT NULL,
    billed_cost         NUMERIC NOT NULL,
    effective_cost      NUMERIC NOT NULL,
    list_cost           NUMERIC,
    consumed_quantity   NUMERIC,
    charge_period_start TIMESTAMPTZ NOT NULL,
    charge_period_end   TIMESTAMPTZ NOT NULL
);
CREATE INDEX cost_fact_charge ON cost_fact (charge_period_start);

-- Move the stored lines. Ranges and dims are recomputed from the lines themselves.
INSERT INTO cost_range (scope, ingest_run_id, billing_period_start, billing_period_end, first_id, last_id, lines)
SELECT scope, ingest_run_id, billing_period_start, billing_period_end, MIN(id), MAX(id), COUNT(*)
FROM cost_line
GROUP BY scope, ingest_run_id, billing_period_start, billing_period_end
ORDER BY MIN(id);

-- Each distinct combination once, keyed for the join below by the md5 of its row's text
-- (a record's text tells NULL from '' and quotes separators, so equal keys mean equal rows).
CREATE TEMP TABLE cost_dims_move ON COMMIT DROP AS
SELECT nextval('cost_dims_id_seq') AS id, k.*
FROM (SELECT DISTINCT md5(ROW(l.ingest_run_id, l.billing_currency, l.charge_category, l.provider_name, l.service_name,
    l.service_category, l.region_id, l.availability_zone, l.resource_id, l.sku_id, l.billing_account_id,
    l.sub_account_id, l.pricing_category, l.consumed_unit, l.tags)::text) AS move_key,
    l.ingest_run_id, l.billing_currency, l.charge_category, l.provider_name, l.service_name,
    l.service_category, l.region_id, l.availability_zone, l.resource_id, l.sku_id, l.billing_account_id,
    l.sub_account_id, l.pricing_category, l.consumed_unit, l.tags
    FROM cost_line l) k;

INSERT INTO cost_dims (id, ingest_run_id, billing_currency, charge_category, provider_name, service_name,
    service_category, region_id, availability_zone, resource_id, sku_id, billing_account_id,
    sub_account_id, pricing_category, consumed_unit, tags)
SELECT id, ingest_run_id, billing_currency, charge_category, provider_name, service_name,
    service_category, region_id, availability_zone, resource_id, sku_id, billing_account_id,
    sub_account_id, pricing_category, consumed_unit, tags
FROM cost_dims_move ORDER BY id;

CREATE INDEX cost_range_move ON cost_range (scope, ingest_run_id, billing_period_start, billing_period_end);

INSERT INTO cost_fact (id, range_id, dims_id, source_line, billed_cost, effective_cost, list_cost,
    consumed_quantity, charge_period_start, charge_period_end)
SELECT l.id, r.id, d.id, l.source_line, l.billed_cost, l.effective_cost, l.list_cost,
    l.consumed_quantity, l.charge_period_start, l.charge_period_end
FROM cost_line l
JOIN cost_range r ON r.scope = l.scope AND r.ingest_run_id = l.ingest_run_id
    AND r.billing_period_start = l.billing_period_start AND r.billing_period_end = l.billing_period_end
JOIN cost_dims_move d ON d.move_key = md5(ROW(l.ingest_run_id, l.billing_currency, l.charge_category, l.provider_name, l.service_name,
    l.service_category, l.region_id, l.availability_zone, l.resource_id, l.sku_id, l.billing_account_id,
    l.sub_account_id, l.pricing_category, l.consumed_unit, l.tags)::text)
ORDER BY l.id;

DROP INDEX cost_range_move;

-- Ids deleted before the move are never handed out again.
SELECT setval('cost_fact_id_seq', GREATEST((SELECT last_value FROM cost_line_id_seq), (SELECT COALESCE(MAX(id), 1) FROM cost_fact)));

DROP TABLE cost_line;
DROP TABLE cost_line_range;

-- The lines as they were. LEFT JOINs on primary keys: a query that reads no column of
-- cost_range or cost_dims does not join them (join removal).
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
       f.charge_period_start AS charge_period_start,
       f.charge_period_end AS charge_period_end,
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
