-- Spend by day, for dashboards and the monthly report (issue 20).
--
-- Three FOCUS columns were not stored: ContractedCost (a line's cost at the negotiated
-- rates, before commitment discounts), ChargeClass (NULL, or 'Correction' for a line that
-- corrects an earlier billing period) and CommitmentDiscountCategory ('Spend' or 'Usage',
-- NULL when no commitment discount applies). The cost belongs with the line, the other two
-- with the line's descriptive fields.
ALTER TABLE cost_fact ADD COLUMN contracted_cost NUMERIC;
ALTER TABLE cost_dims ADD COLUMN charge_class TEXT;
ALTER TABLE cost_dims ADD COLUMN commitment_discount_category TEXT;

-- cost_daily: the lines summed per (range, UTC day of the charge period start, the
-- descriptive fields a dashboard groups or filters by). Everything a line carries but its
-- resource, SKU and zone. The ingest computes it in Rust while it streams the lines
-- (`store::daily`) and writes it in the same transaction; replacing a scope deletes it by
-- range with the lines. Rows are partial sums: a large file may write the same key more
-- than once, so always SUM. egress_gb: GB moved by the lines that are egress under
-- `domain::egress_lines` (0 for others); egress_cost: their billed cost. day_start is the day as a timestamp (00:00 UTC),
-- so Grafana's `$__timeFilter(day_start)` is a plain indexed range.
CREATE TABLE cost_daily (
    range_id                      BIGINT NOT NULL,
    day                           DATE NOT NULL,
    day_start                     TIMESTAMPTZ NOT NULL,
    billing_currency              TEXT NOT NULL,
    charge_category               TEXT NOT NULL,
    charge_class                  TEXT,
    provider_name                 TEXT NOT NULL,
    service_name                  TEXT,
    service_category              TEXT,
    region_id                     TEXT,
    billing_account_id            TEXT,
    sub_account_id                TEXT,
    pricing_category              TEXT,
    commitment_discount_category  TEXT,
    consumed_unit                 TEXT,
    tags                          JSONB NOT NULL DEFAULT '{}',
    billed_cost                   NUMERIC NOT NULL,
    effective_cost                NUMERIC NOT NULL,
    list_cost                     NUMERIC,
    contracted_cost               NUMERIC,
    consumed_quantity             NUMERIC,
    egress_gb                     NUMERIC NOT NULL,
    egress_cost                   NUMERIC NOT NULL,
    lines                         BIGINT NOT NULL
);
CREATE INDEX cost_daily_range ON cost_daily (range_id);
CREATE INDEX cost_daily_day ON cost_daily (day_start);

-- Ranges stored before this migration are summarised by `Store::migrate` (the same Rust
-- as the ingest, so the egress rule has one home).

-- What dashboards and the report read: one row per cost_daily row, with its billing period.
CREATE VIEW cost_day AS
SELECT d.day AS day,
       d.day_start AS day_start,
       r.billing_period_start AS billing_period_start,
       d.provider_name AS provider_name,
       d.service_name AS service_name,
       d.service_category AS service_category,
       d.region_id AS region_id,
       d.billing_account_id AS billing_account_id,
       d.sub_account_id AS sub_account_id,
       d.charge_category AS charge_category,
       d.charge_class AS charge_class,
       d.pricing_category AS pricing_category,
       d.commitment_discount_category AS commitment_discount_category,
       d.billing_currency AS billing_currency,
       d.tags AS tags,
       d.billed_cost AS billed_cost,
       d.effective_cost AS effective_cost,
       d.list_cost AS list_cost,
       d.contracted_cost AS contracted_cost,
       d.consumed_quantity AS consumed_quantity,
       d.consumed_unit AS consumed_unit,
       d.egress_gb AS egress_gb,
       d.egress_cost AS egress_cost,
       d.lines AS lines
FROM cost_daily d
LEFT JOIN cost_range r ON r.id = d.range_id;

-- The lines as before, with the three new columns at the end.
CREATE OR REPLACE VIEW cost_line AS
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
       d.tags AS tags,
       f.contracted_cost AS contracted_cost,
       d.charge_class AS charge_class,
       d.commitment_discount_category AS commitment_discount_category
FROM cost_fact f
LEFT JOIN cost_range r ON r.id = f.range_id
LEFT JOIN cost_dims d ON d.id = f.dims_id;
