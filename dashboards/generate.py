#!/usr/bin/env python3
"""Writes bursar's Grafana dashboards (dashboards/*.json) from one source of truth: this file.

    python3 dashboards/generate.py           # rewrite the JSON files
    python3 dashboards/generate.py --check   # exit 1 if a committed file differs (CI)

Every panel reads the provisioned Postgres data source (uid `bursar-postgres`, user
`bursar_reader`), and every template variable goes into SQL through Grafana's quoting:
`${var:sqlstring}` (each value in single quotes, quotes doubled), with "All" as the custom
value `'__all__'`, so a filter reads `('__all__' IN (${v:sqlstring}) OR col IN (${v:sqlstring}))`
and "All" keeps rows whose column is NULL. tests/dashboards.rs expands and runs every query
as `bursar_reader` against a database filled by the real ingest. service.json (Prometheus)
is written by hand, not here.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "grafana-postgresql-datasource", "uid": "bursar-postgres"}
ALL = "'__all__'"


# ---- template variables ------------------------------------------------------------------


def multi_var(name, label, sql):
    """A multi-value query variable with "All" (the default), refreshed on time change."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": sql,
        "definition": sql,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ALL,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
    }


def team_tag_var():
    return {
        "name": "team_tag",
        "label": "Team tag key",
        "type": "textbox",
        "query": "team",
        "current": {"text": "team", "value": "team"},
        "options": [{"selected": True, "text": "team", "value": "team"}],
    }


def currency_var():
    sql = "SELECT DISTINCT billing_currency FROM cost_day WHERE $__timeFilter(day_start) ORDER BY 1"
    return {
        "name": "currency",
        "label": "Currency",
        "type": "query",
        "datasource": DS,
        "query": sql,
        "definition": sql,
        "refresh": 2,
        "multi": False,
        "includeAll": False,
        "current": {"selected": True, "text": "USD", "value": "USD"},
        "options": [],
    }


def is_in(col, var):
    """The one filter form: "All" or the column among the selected values."""
    return f"({ALL} IN (${{{var}:sqlstring}}) OR {col} IN (${{{var}:sqlstring}}))"


TEAM_OF_TAGS = "tags ->> ${team_tag:sqlstring}"
COST_DIMS = [
    ("provider", "Provider", "provider_name"),
    ("service", "Service", "service_name"),
    ("region", "Region", "region_id"),
    ("account", "Sub account", "sub_account_id"),
    ("team", "Team", TEAM_OF_TAGS),
]
# What the spend filters read: one cost_day row's dimensions.
COST_FILTER = " AND ".join(is_in(col, var) for var, _, col in COST_DIMS)
MONEY = f"billing_currency = ${{currency:sqlstring}} AND {COST_FILTER}"


def cost_vars():
    """provider, service, region, account, team tag and team over cost_day, and currency.
    Each list is what the earlier ones leave, in the dashboard's range."""
    out = []
    earlier = []
    for var, label, col in COST_DIMS:
        where = ["$__timeFilter(day_start)", f"{col} IS NOT NULL"] + earlier
        out.append(multi_var(var, label, f"SELECT DISTINCT {col} FROM cost_day WHERE {' AND '.join(where)} ORDER BY 1"))
        earlier.append(is_in(col, var))
        if var == "account":
            out.append(team_tag_var())
    out.append(currency_var())
    return out


def own_vars(table, time_filter, provider_col, region_col, team_col):
    """provider, region, team tag and team over one of bursar's own tables (the decision
    log, the fleet): those have no service or billing account."""
    return [
        multi_var("provider", "Provider", f"SELECT DISTINCT {provider_col} FROM {table} WHERE {time_filter} AND {provider_col} IS NOT NULL ORDER BY 1"),
        multi_var("region", "Region", f"SELECT DISTINCT {region_col} FROM {table} WHERE {time_filter} AND {region_col} IS NOT NULL ORDER BY 1"),
        team_tag_var(),
        multi_var("team", "Team", f"SELECT DISTINCT {team_col} FROM {table} WHERE {time_filter} AND {team_col} IS NOT NULL ORDER BY 1"),
    ]


# ---- panels --------------------------------------------------------------------------------


class Layout:
    """Places panels left to right, 24 columns wide, and numbers them."""

    def __init__(self):
        self.x, self.y, self.row_h, self.next_id, self.panels = 0, 0, 0, 1, []

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)

    def row(self, title):
        self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.row_h = 0, self.y + 1, 0


def panel(kind, title, sql, fmt, description="", unit=None, decimals=None, thresholds=None,
          stacked=False, options=None, interval=None, bars=False, threshold_line=False):
    defaults = {}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if thresholds is not None:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
    if kind == "timeseries":
        custom = {"drawStyle": "bars" if bars else "line", "fillOpacity": 70 if stacked or bars else 10,
                  "lineWidth": 1, "showPoints": "never"}
        if stacked:
            custom["stacking"] = {"mode": "normal", "group": "A"}
        if threshold_line:
            custom["thresholdsStyle"] = {"mode": "line"}
        defaults["custom"] = custom
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {},
        "targets": [{"refId": "A", "datasource": DS, "editorMode": "code", "rawQuery": True,
                     "format": fmt, "rawSql": sql.strip()}],
    }
    if interval:
        p["interval"] = interval
    return p


def ts(title, sql, **kw):
    return panel("timeseries", title, sql, "time_series", **kw)


def table(title, sql, **kw):
    return panel("table", title, sql, "table", **kw)


def stat(title, sql, **kw):
    kw.setdefault("options", {"reduceOptions": {"calcs": ["lastNotNull"], "values": False}, "colorMode": "value"})
    return panel("stat", title, sql, "table", **kw)


def gauge(title, sql, **kw):
    kw.setdefault("options", {"reduceOptions": {"calcs": ["lastNotNull"], "values": True}, "showThresholdMarkers": True})
    return panel("gauge", title, sql, "table", **kw)


def bar(title, sql, **kw):
    kw.setdefault("options", {"orientation": "horizontal", "showValue": "auto", "xTickLabelRotation": 0})
    return panel("barchart", title, sql, "table", **kw)


def dashboard(uid, title, description, variables, layout, time_from="now-90d", tags=()):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["bursar", "finops", *tags],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "time": {"from": time_from, "to": "now"},
        "refresh": "",
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["bursar"], "asDropdown": True, "title": "bursar"}],
        "panels": layout.panels,
    }


TRAFFIC = [{"color": "green", "value": None}, {"color": "yellow", "value": 50},
           {"color": "orange", "value": 80}, {"color": "red", "value": 100}]
MONEY_UNIT = "currencyUSD"
DAY = "$__timeGroupAlias(day_start, '1d')"
MONTH = "date_trunc('month', day_start, 'UTC')"
# The month the range ends in, [start, the range's end].
MONTH_START = "date_trunc('month', $__timeTo()::timestamptz, 'UTC')"
IN_END_MONTH = f"day_start >= {MONTH_START} AND day_start <= $__timeTo()"
# The latest evaluation of each budget in the range.


def status(t=""):
    """A budget's status as AWS Budgets names it, from an evaluation row (alias `t`)."""
    p = f"{t}." if t else ""
    return (f"CASE WHEN {p}actual > {p}amount THEN 'Unhealthy' "
            f"WHEN {p}forecast > {p}amount THEN 'Forecasted Unhealthy' ELSE 'Healthy' END")


STATUS = status()
# Budgets that still exist (a deleted budget's evaluations stay in the history).
LIVE = "budget IN (SELECT name FROM budget)"


# ---- 1. spend overview -----------------------------------------------------------------------


def spend():
    L = Layout()
    L.add(gauge("Month-to-date spend against each budget", f"""
SELECT DISTINCT ON (budget) budget, 100 * actual / NULLIF(amount, 0) AS "percent of budget"
FROM budget_evaluation
WHERE currency <> 'GB' AND period_start <= $__timeTo() AND period_end > $__timeTo() AND {LIVE}
ORDER BY budget, evaluated_at DESC""",
        description="Each cost budget's spend so far in its period that holds the range's end, "
                    "from its latest evaluation (budgets carry their own scope; the filters above "
                    "do not apply). Yellow at 50 %, orange at 80 %, red at 100 %.",
        unit="percent", decimals=0, thresholds=TRAFFIC,
        options={"reduceOptions": {"calcs": ["lastNotNull"], "values": True}, "showThresholdMarkers": True,
                 "minVizHeight": 75}), 12, 8)
    L.add(stat("Month-to-date spend", f"""
SELECT COALESCE(SUM(billed_cost), 0) AS "month to date"
FROM cost_day
WHERE {IN_END_MONTH} AND {MONEY}""",
        description="Billed cost from the first of the month the range ends in to the range's end.",
        unit=MONEY_UNIT, decimals=2), 6, 8)
    L.add(stat("Month-end forecast", f"""
WITH m AS (SELECT {MONTH_START} AS start, {MONTH_START} AT TIME ZONE 'UTC' AS start_utc),
s AS (
  SELECT COALESCE(SUM(billed_cost), 0) AS mtd, MAX(day) AS last_day
  FROM cost_day, m
  WHERE day_start >= m.start AND day_start <= $__timeTo() AND {MONEY}
)
SELECT CASE WHEN s.last_day IS NULL THEN 0
  ELSE s.mtd / (s.last_day - m.start_utc::date + 1)
       * EXTRACT(DAY FROM m.start_utc + interval '1 month' - interval '1 day')
  END AS "month-end forecast"
FROM s, m""",
        description="Run rate: month-to-date spend per day (up to the last day with data) times the "
                    "days in the month.",
        unit=MONEY_UNIT, decimals=2), 6, 8)
    L.add(ts("Spend per day by provider", f"""
SELECT {DAY}, provider_name AS metric, SUM(billed_cost) AS value
FROM cost_day
WHERE $__timeFilter(day_start) AND {MONEY}
GROUP BY 1, 2 ORDER BY 1, 2""", unit=MONEY_UNIT, stacked=True, bars=True), 12, 9)
    L.add(ts("Spend per day by service (top 10)", f"""
WITH f AS (
  SELECT day_start, COALESCE(service_name, '(none)') AS service, billed_cost
  FROM cost_day WHERE $__timeFilter(day_start) AND {MONEY}
),
top AS (SELECT service FROM f GROUP BY 1 ORDER BY SUM(billed_cost) DESC LIMIT 10)
SELECT $__timeGroupAlias(day_start, '1d'),
  CASE WHEN service IN (SELECT service FROM top) THEN service ELSE '(other)' END AS metric,
  SUM(billed_cost) AS value
FROM f GROUP BY 1, 2 ORDER BY 1, 2""", unit=MONEY_UNIT, stacked=True, bars=True), 12, 9)
    L.add(ts("Spend per day by team", f"""
SELECT {DAY}, COALESCE({TEAM_OF_TAGS}, '(untagged)') AS metric, SUM(billed_cost) AS value
FROM cost_day
WHERE $__timeFilter(day_start) AND {MONEY}
GROUP BY 1, 2 ORDER BY 1, 2""",
        description="Team: the value of the tag named by the team tag key variable.",
        unit=MONEY_UNIT, stacked=True, bars=True), 12, 9)
    L.add(ts("Effective against billed cost per day", f"""
SELECT {DAY}, SUM(billed_cost) AS billed, SUM(effective_cost) AS effective
FROM cost_day
WHERE $__timeFilter(day_start) AND {MONEY}
GROUP BY 1 ORDER BY 1""",
        description="Billed: what the invoice charges that day. Effective: amortized, with "
                    "commitment purchases spread over the usage they cover.",
        unit=MONEY_UNIT), 12, 9)
    L.add(table("Top 10 cost movers (this period against the one before)", f"""
WITH cur AS (
  SELECT provider_name, COALESCE(service_name, '(none)') AS service, SUM(billed_cost) AS cost
  FROM cost_day WHERE $__timeFilter(day_start) AND {MONEY} GROUP BY 1, 2
),
prev AS (
  SELECT provider_name, COALESCE(service_name, '(none)') AS service, SUM(billed_cost) AS cost
  FROM cost_day
  WHERE day_start >= $__timeFrom()::timestamptz - ($__timeTo()::timestamptz - $__timeFrom()::timestamptz)
    AND day_start < $__timeFrom() AND {MONEY}
  GROUP BY 1, 2
)
SELECT COALESCE(c.provider_name, p.provider_name) AS provider,
  COALESCE(c.service, p.service) AS service,
  COALESCE(p.cost, 0) AS previous, COALESCE(c.cost, 0) AS current,
  COALESCE(c.cost, 0) - COALESCE(p.cost, 0) AS change
FROM cur c FULL JOIN prev p ON p.provider_name = c.provider_name AND p.service = c.service
ORDER BY abs(COALESCE(c.cost, 0) - COALESCE(p.cost, 0)) DESC, 1, 2
LIMIT 10""",
        description="The period before has the same length as the dashboard's range and ends where it starts.",
        unit=MONEY_UNIT, decimals=2), 12, 9)
    L.add(bar("Spend by charge category", f"""
SELECT charge_category, SUM(billed_cost) AS billed
FROM cost_day
WHERE $__timeFilter(day_start) AND {MONEY}
GROUP BY 1 ORDER BY 1""",
        description="FOCUS charge categories: Usage, Purchase, Tax, Credit, Adjustment (refunds).",
        unit=MONEY_UNIT), 12, 8)
    L.add(table("Spend by provider", f"""
SELECT provider_name AS provider, billing_currency AS currency, SUM(billed_cost) AS billed,
  SUM(effective_cost) AS effective, SUM(lines) AS lines
FROM cost_day
WHERE $__timeFilter(day_start) AND {MONEY}
GROUP BY 1, 2 ORDER BY 1, 2""", unit=MONEY_UNIT), 12, 8)
    return dashboard("bursar-spend", "bursar — spend overview",
                     "Where the money goes: month to date against budgets, the month-end forecast, "
                     "daily spend by provider, service and team, movers and charge categories. "
                     "Reads cost_day (one row per day and descriptive fields, kept by the ingest).",
                     cost_vars(), L)


# ---- 2. budgets ----------------------------------------------------------------------------


def budgets():
    L = Layout()
    budget_var = multi_var("budget", "Budget",
                           "SELECT name FROM budget ORDER BY 1")
    in_budget = is_in("budget", "budget")
    # Each live budget's latest evaluation in the range: one index probe per budget
    # (budget_evaluation (budget, evaluated_at)), not a scan of every evaluation.
    latest = f"""
SELECT b.name AS budget, e.period_key, e.period_start, e.period_end, e.currency, e.amount, e.actual, e.forecast
FROM budget b
CROSS JOIN LATERAL (
  SELECT period_key, period_start, period_end, currency, amount, actual, forecast
  FROM budget_evaluation
  WHERE budget = b.name AND $__timeFilter(evaluated_at)
  ORDER BY evaluated_at DESC LIMIT 1) e
WHERE {is_in('b.name', 'budget')}"""
    L.add(table("Budget status", f"""
WITH latest AS ({latest.strip()})
SELECT budget, period_key AS period, currency, amount, actual, forecast,
  {STATUS} AS status, round(100 * actual / NULLIF(amount, 0), 1) AS "percent used"
FROM latest ORDER BY budget""",
        description="Each budget's latest evaluation in the range, with its status as AWS Budgets "
                    "shows it: Unhealthy when actual spend is over the amount, Forecasted Unhealthy "
                    "when the forecast is over while actual spend is not, Healthy otherwise.",
        options={"showHeader": True, "cellHeight": "sm"}), 16, 8)
    L.add(stat("Budgets by status", f"""
WITH latest AS ({latest.strip()})
SELECT s.status, COUNT(l.budget) AS budgets
FROM (VALUES ('Healthy'), ('Forecasted Unhealthy'), ('Unhealthy')) AS s(status)
LEFT JOIN latest l ON {status('l')} = s.status
GROUP BY s.status ORDER BY array_position(ARRAY['Healthy', 'Forecasted Unhealthy', 'Unhealthy'], s.status)""",
        options={"reduceOptions": {"calcs": ["lastNotNull"], "values": True}, "colorMode": "value",
                 "textMode": "value_and_name"}), 8, 8)
    L.add(ts("Burn against the amount, with the forecast", f"""
SELECT $__timeGroupAlias(evaluated_at, $__interval), budget || ' ' || k.series AS metric,
  (array_agg(k.value ORDER BY evaluated_at DESC))[1] AS value
FROM budget_evaluation
CROSS JOIN LATERAL (VALUES ('actual', actual), ('forecast', forecast), ('amount', amount)) AS k(series, value)
WHERE $__timeFilter(evaluated_at) AND {in_budget} AND {LIVE} AND k.value IS NOT NULL
GROUP BY 1, 2 ORDER BY 1, 2""",
        description="Spend so far in the period, the period-end forecast and the amount: the last "
                    "evaluation in each interval."), 24, 9)
    L.add(table("Thresholds crossed", f"""
SELECT fired_at AS "fired at", budget, period_key AS period, threshold_key AS threshold,
  actual, forecast, amount, currency
FROM budget_alert
WHERE $__timeFilter(fired_at) AND {in_budget}
ORDER BY fired_at DESC LIMIT 500"""), 14, 8)
    L.add(bar("Alerts: sent, pending, retrying", f"""
SELECT s.status, COUNT(o.id) AS alerts
FROM (VALUES ('sent'), ('pending'), ('retrying')) AS s(status)
LEFT JOIN alert_outbox o ON $__timeFilter(o.created_at) AND {is_in('o.budget', 'budget')}
  AND s.status = CASE WHEN o.state = 'delivered' THEN 'sent' WHEN o.attempts = 0 THEN 'pending' ELSE 'retrying' END
GROUP BY s.status ORDER BY array_position(ARRAY['sent', 'pending', 'retrying'], s.status)""",
        description="From the alert outbox (its state only: the reader cannot see recipients, "
                    "webhook URLs or message bodies). Retrying: a delivery failed and will be tried again."), 10, 8)
    L.add(stat("Month-to-date spend in the filters' scope", f"""
SELECT COALESCE(SUM(billed_cost), 0) AS "month to date" FROM cost_day
WHERE {IN_END_MONTH} AND {MONEY}""",
        description="For comparing with a budget's scope: the spend the filters above select.",
        unit=MONEY_UNIT, decimals=2), 24, 5)
    return dashboard("bursar-budgets", "bursar — budgets",
                     "Budgets as finance reads them in AWS Budgets: status, burn and forecast, "
                     "thresholds crossed and the alerts they sent.",
                     [budget_var] + cost_vars(), L)


# ---- 3. rates and discounts ------------------------------------------------------------------

# A usage line's list and contracted cost where the export has them; else the next known one
# (no discount is invented: a missing list cost counts as the contracted, then the effective).
LIST = "COALESCE(list_cost, contracted_cost, effective_cost)"
CONTRACTED = "COALESCE(contracted_cost, list_cost, effective_cost)"


def rates():
    L = Layout()
    usage = f"charge_category = 'Usage' AND $__timeFilter(day_start) AND {MONEY}"
    L.add(ts("List, contracted and effective cost per month", f"""
SELECT {MONTH} AS time, SUM({LIST}) AS list, SUM({CONTRACTED}) AS contracted, SUM(effective_cost) AS effective
FROM cost_day WHERE {usage}
GROUP BY 1 ORDER BY 1""", unit=MONEY_UNIT, bars=True,
        description="Usage charges. List: at public prices; contracted: at negotiated rates; "
                    "effective: after commitment discounts (amortized)."), 14, 9)
    L.add(stat("Effective savings rate", f"""
SELECT COALESCE(1 - SUM(effective_cost) / NULLIF(SUM({LIST}), 0), 0) AS "effective savings rate"
FROM cost_day WHERE {usage}""", unit="percentunit", decimals=1,
        description="1 − effective / list over the range (FinOps rate optimization)."), 5, 9)
    L.add(stat("Negotiated and commitment savings", f"""
SELECT COALESCE(SUM({LIST}) - SUM({CONTRACTED}), 0) AS negotiated,
  COALESCE(SUM({CONTRACTED}) - SUM(effective_cost), 0) AS commitment
FROM cost_day WHERE {usage}""", unit=MONEY_UNIT, decimals=2,
        options={"reduceOptions": {"calcs": ["lastNotNull"], "values": False}, "colorMode": "value",
                 "textMode": "value_and_name"},
        description="Negotiated = list − contracted; commitment = contracted − effective."), 5, 9)
    L.add(table("Savings per month", f"""
SELECT {MONTH} AS month, SUM({LIST}) AS list, SUM({CONTRACTED}) AS contracted,
  SUM(effective_cost) AS effective,
  SUM({LIST}) - SUM({CONTRACTED}) AS "negotiated savings",
  SUM({CONTRACTED}) - SUM(effective_cost) AS "commitment savings",
  round(100 * (1 - SUM(effective_cost) / NULLIF(SUM({LIST}), 0)), 2) AS "effective savings rate %"
FROM cost_day WHERE {usage}
GROUP BY 1 ORDER BY 1""", unit=MONEY_UNIT), 24, 8)
    L.add(table("Savings by provider and commitment discount category", f"""
SELECT provider_name AS provider, COALESCE(commitment_discount_category, '(none)') AS "commitment category",
  SUM({LIST}) AS list, SUM(effective_cost) AS effective,
  SUM({LIST}) - SUM({CONTRACTED}) AS "negotiated savings",
  SUM({CONTRACTED}) - SUM(effective_cost) AS "commitment savings"
FROM cost_day WHERE {usage}
GROUP BY 1, 2 ORDER BY 1, 2""", unit=MONEY_UNIT), 12, 8)
    L.add(ts("Credits and refunds per month", f"""
SELECT {MONTH} AS time, SUM(billed_cost) FILTER (WHERE charge_category = 'Credit') AS credits,
  SUM(billed_cost) FILTER (WHERE charge_category = 'Adjustment') AS refunds,
  SUM(billed_cost) FILTER (WHERE charge_class = 'Correction') AS corrections
FROM cost_day
WHERE (charge_category IN ('Credit', 'Adjustment') OR charge_class = 'Correction')
  AND $__timeFilter(day_start) AND {MONEY}
GROUP BY 1 ORDER BY 1""", unit=MONEY_UNIT, bars=True,
        description="Billed credits (FOCUS Credit), refunds and other adjustments (Adjustment), and "
                    "corrections of earlier periods (ChargeClass Correction)."), 12, 8)
    return dashboard("bursar-rates", "bursar — rates and discounts",
                     "Rate optimization: what list prices would have cost, what negotiated rates "
                     "and commitment discounts saved, the effective savings rate, credits and refunds.",
                     cost_vars(), L)


# ---- 4. data quality ---------------------------------------------------------------------------


def data_quality():
    L = Layout()
    L.add(table("Ingest runs per source and status", """
SELECT source, COALESCE(format, '?') AS format, status, COUNT(*) AS runs,
  MAX(started_at) AS "last run", SUM(rows_stored) AS "rows stored", SUM(rows_quarantined) AS "rows quarantined"
FROM ingest_run WHERE $__timeFilter(started_at)
GROUP BY 1, 2, 3 ORDER BY "last run" DESC""",
        description="Statuses: ok, rejected (too many bad rows), failed, interrupted (the process "
                    "went away), running."), 14, 8)
    L.add(bar("Ingest runs by status", """
SELECT status, COUNT(*) AS runs FROM ingest_run WHERE $__timeFilter(started_at)
GROUP BY 1 ORDER BY 1"""), 10, 8)
    L.add(table("Quarantined rows by reason", """
SELECT q.reason, COALESCE(q.column_name, '(row)') AS "column", COUNT(*) AS rows,
  COUNT(DISTINCT q.ingest_run_id) AS runs, MIN(q.file) AS "a file"
FROM ingest_quarantine q JOIN ingest_run r ON r.id = q.ingest_run_id
WHERE $__timeFilter(r.started_at)
GROUP BY 1, 2 ORDER BY rows DESC LIMIT 100"""), 14, 8)
    L.add(stat("Rows quarantined", """
SELECT COALESCE(SUM(rows_quarantined), 0) AS quarantined FROM ingest_run WHERE $__timeFilter(started_at)""",
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]), 10, 8)
    L.add(table("Last day each billing source reached", f"""
SELECT provider_name AS provider, COALESCE(billing_account_id, '(none)') AS "billing account",
  MAX(day) AS "last day", ($__timeTo()::timestamptz AT TIME ZONE 'UTC')::date - MAX(day) AS "days behind the range's end",
  SUM(lines) AS lines
FROM cost_day WHERE $__timeFilter(day_start) AND {COST_FILTER}
GROUP BY 1, 2 ORDER BY 4 DESC, 1, 2""",
        description="The newest charge day stored per provider and billing account: a number for a "
                    "later day is not complete yet."), 14, 8)
    L.add(table("Price sources' freshness", """
SELECT name AS source, state, last_success_at AS "last success",
  round(EXTRACT(EPOCH FROM (now() - last_success_at)) / 3600, 1) AS "hours since",
  last_error_at AS "last error at", rows
FROM source_status ORDER BY last_success_at NULLS FIRST, name""",
        description="Each price source's state and the age of its last successful poll."), 10, 8)
    return dashboard("bursar-data-quality", "bursar — data quality",
                     "Whether a number is complete before trusting it: ingest runs, quarantined rows, "
                     "how far each billing source has reached, price sources' freshness.",
                     cost_vars(), L, time_from="now-30d")


# ---- 5. egress ---------------------------------------------------------------------------------

RULE_GB = 10000


def egress():
    L = Layout()
    moved = f"$__timeFilter(day_start) AND {MONEY}"
    L.add(ts("Egress GB per provider and month", f"""
SELECT {MONTH} AS time, provider_name AS metric, SUM(egress_gb) AS value
FROM cost_day WHERE {moved} AND egress_gb > 0
GROUP BY 1, 2 ORDER BY 1, 2""", unit="decgbytes", bars=True, stacked=True, threshold_line=True,
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": RULE_GB}],
        description="GB moved by egress lines (domain::egress_lines), per month; the red line is the "
                    "10 TB/month rule."), 14, 9)
    L.add(stat("Egress this month", f"""
SELECT COALESCE(SUM(egress_gb), 0) AS "GB this month" FROM cost_day WHERE {IN_END_MONTH} AND {MONEY}""",
        unit="decgbytes", decimals=1,
        thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": RULE_GB * 0.8},
                    {"color": "red", "value": RULE_GB}]), 10, 9)
    L.add(table("Egress per provider and month", f"""
SELECT {MONTH} AS month, provider_name AS provider, billing_currency AS currency,
  SUM(egress_gb) AS gb, SUM(egress_cost) AS cost,
  round(100 * SUM(egress_gb) / {RULE_GB}, 2) AS "% of 10 TB"
FROM cost_day WHERE {moved} AND egress_gb > 0
GROUP BY 1, 2, 3 ORDER BY 1, 2""",
        description="Cost: the billed cost of the egress lines (domain::egress_lines)."), 14, 8)
    L.add(table("Egress budgets", f"""
SELECT DISTINCT ON (budget) budget, period_key AS period, amount AS "GB allowed", actual AS "GB so far",
  forecast AS "GB forecast", {STATUS} AS status
FROM budget_evaluation
WHERE currency = 'GB' AND $__timeFilter(evaluated_at) AND {LIVE}
ORDER BY budget, evaluated_at DESC""",
        description="Budgets with metric = egress, from their latest evaluation in the range."), 10, 8)
    return dashboard("bursar-egress", "bursar — egress", "Data out per provider and month, against the "
                     "egress budgets and the 10 TB/month rule.", cost_vars(), L, time_from="now-1y")


# ---- 6. savings ledger --------------------------------------------------------------------------

DECISION_TEAM = "labels ->> ${team_tag:sqlstring}"
FLEET_TEAM = "i.labels::jsonb ->> ${team_tag:sqlstring}"

# Dollars the idle-GPU policy avoided per UTC day: each stop or termination costs its price
# per hour from the action until the last inventory that saw the machine still stopped (at
# most 30 days: store::fleet's LEDGER_HORIZON), split at midnights and clipped to the range;
# milliseconds then dollars, as store::fleet::fleet_savings counts them.
AVOIDED = f"""
SELECT d.day AT TIME ZONE 'UTC' AS day, a.provider, a.instance_id, a.currency,
  a.price_per_hour * floor(EXTRACT(EPOCH FROM (LEAST(a.until, d.day + interval '1 day', a.range_to)
    - GREATEST(a.at, d.day, a.range_from))) * 1000) / 3600000 AS avoided
FROM (
  SELECT provider, instance_id, currency, price_per_hour, at AT TIME ZONE 'UTC' AS at,
    LEAST(stopped_until, at + interval '30 days') AT TIME ZONE 'UTC' AS until,
    $__timeFrom()::timestamptz AT TIME ZONE 'UTC' AS range_from,
    $__timeTo()::timestamptz AT TIME ZONE 'UTC' AS range_to
  FROM fleet_action
  WHERE decision IN ('stopped', 'terminated') AND price_per_hour IS NOT NULL AND stopped_until IS NOT NULL
    AND at <= $__timeTo() AND LEAST(stopped_until, at + interval '30 days') > $__timeFrom()
) a
CROSS JOIN LATERAL generate_series(date_trunc('day', GREATEST(a.at, a.range_from)),
  LEAST(a.until, a.range_to), interval '1 day') AS d(day)
WHERE LEAST(a.until, d.day + interval '1 day', a.range_to) > GREATEST(a.at, d.day, a.range_from)"""


def fleet_filter():
    """The provider, region and team filters over fleet_instance `i`."""
    return f"{is_in('i.provider', 'provider')} AND {is_in('i.region', 'region')} AND {is_in(FLEET_TEAM, 'team')}"


def savings():
    L = Layout()
    decisions = (f"outcome = 'placed' AND $__timeFilter(decided_at) AND {is_in('chosen_provider', 'provider')} "
                 f"AND {is_in('chosen_region', 'region')} AND {is_in(DECISION_TEAM, 'team')}")
    ledger = f"""
SELECT date_trunc('month', decided_at, 'UTC') AS month, COALESCE({DECISION_TEAM}, '(no team)') AS team, currency,
  CASE WHEN chosen_market = 'spot' THEN 'spot' ELSE 'placement' END AS kind, estimated_saving AS amount
FROM placement_decision WHERE {decisions} AND estimated_saving IS NOT NULL
UNION ALL
SELECT date_trunc('month', v.day, 'UTC'), COALESCE({FLEET_TEAM}, '(no team)'), v.currency, 'idle GPUs', v.avoided
FROM ({AVOIDED.strip()}) v
JOIN fleet_instance i ON i.provider = v.provider AND i.id = v.instance_id
WHERE {fleet_filter()}"""
    L.add(table("Savings ledger per month and team", f"""
WITH ledger AS ({ledger.strip()})
SELECT month, team, currency,
  COALESCE(SUM(amount) FILTER (WHERE kind = 'placement'), 0) AS "placement savings",
  COALESCE(SUM(amount) FILTER (WHERE kind = 'spot'), 0) AS "spot savings",
  COALESCE(SUM(amount) FILTER (WHERE kind = 'idle GPUs'), 0) AS "idle-GPU dollars avoided",
  SUM(amount) AS total
FROM ledger GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        description="Placement: SelectProvider's estimate against the cheapest on-demand offer in the "
                    "data's own region (the baseline), for on-demand placements; spot: the same for "
                    "spot placements; idle GPUs: what stopped idle machines did not cost. Team: the "
                    "team tag of the job's labels or of the machine.", unit=MONEY_UNIT), 24, 9)
    L.add(ts("Savings per month by kind", f"""
WITH ledger AS ({ledger.strip()})
SELECT month AS time, kind AS metric, SUM(amount) AS value
FROM ledger GROUP BY 1, 2 ORDER BY 1, 2""", unit=MONEY_UNIT, bars=True, stacked=True), 16, 9)
    L.add(stat("Savings in the range", f"""
WITH ledger AS ({ledger.strip()})
SELECT COALESCE(SUM(amount) FILTER (WHERE kind = 'placement'), 0) AS placement,
  COALESCE(SUM(amount) FILTER (WHERE kind = 'spot'), 0) AS spot,
  COALESCE(SUM(amount) FILTER (WHERE kind = 'idle GPUs'), 0) AS "idle GPUs"
FROM ledger""", unit=MONEY_UNIT, decimals=2,
        options={"reduceOptions": {"calcs": ["lastNotNull"], "values": False}, "colorMode": "value",
                 "textMode": "value_and_name", "orientation": "vertical"}), 8, 9)
    variables = own_vars("placement_decision", "$__timeFilter(decided_at)", "chosen_provider",
                         "chosen_region", DECISION_TEAM)
    return dashboard("bursar-savings", "bursar — savings ledger",
                     "One ledger of what bursar saved: placements against their baseline, spot, and "
                     "idle GPUs stopped; per team and per month.", variables, L)


# ---- 7. idle GPUs ---------------------------------------------------------------------------------


def idle_gpus():
    L = Layout()
    threshold = {
        "name": "idle_below", "label": "Idle below (% utilisation)", "type": "custom",
        "query": "5,10,20", "multi": False, "includeAll": False,
        "current": {"text": "10", "value": "10"},
        "options": [{"selected": v == "10", "text": v, "value": v} for v in ("5", "10", "20")],
    }
    L.add(ts("Idle GPU-hours per day", f"""
SELECT $__timeGroupAlias(hour, '1d'), SUM(gpus) AS "idle GPU-hours"
FROM (
  SELECT to_timestamp((s.at / 3600000) * 3600) AS hour, s.instance_id, COUNT(DISTINCT s.gpu) AS gpus,
    MAX(s.utilization) AS peak
  FROM gpu_sample s
  WHERE s.at >= $__unixEpochFrom()::bigint * 1000 AND s.at <= $__unixEpochTo()::bigint * 1000
  GROUP BY 1, 2
) h
JOIN fleet_instance i ON i.id = h.instance_id
WHERE h.peak < ${{idle_below:sqlstring}}::double precision AND {fleet_filter()}
GROUP BY 1 ORDER BY 1""", bars=True,
        description="Per machine and hour, the GPUs read, when none went above the threshold. "
                    "Samples are kept for idle_gpu.retention (7 days by default)."), 12, 9)
    L.add(bar("Actions by state", f"""
SELECT s.state, COUNT(a.id) AS actions
FROM (VALUES ('would act'), ('notified'), ('cancelled'), ('acted'), ('failed'), ('kept'), ('held'), ('skipped')) AS s(state)
LEFT JOIN (
  SELECT a.id, CASE WHEN a.decision IN ('would_notify', 'would_stop', 'would_terminate') THEN 'would act'
    WHEN a.decision IN ('stopped', 'terminated') THEN 'acted' ELSE a.decision END AS state
  FROM fleet_action a JOIN fleet_instance i ON i.provider = a.provider AND i.id = a.instance_id
  WHERE $__timeFilter(a.at) AND {fleet_filter()}
) a ON a.state = s.state
GROUP BY s.state
ORDER BY array_position(ARRAY['would act', 'notified', 'cancelled', 'acted', 'failed', 'kept', 'held', 'skipped'], s.state)""",
        description="From the audit log: would act (dry run), notified, cancelled (busy again), "
                    "acted (stopped or terminated), failed; kept (snoozed), held (limits), skipped."), 12, 9)
    L.add(ts("Dollars avoided per day", f"""
SELECT $__timeGroupAlias(v.day, '1d'), SUM(v.avoided) AS "dollars avoided"
FROM ({AVOIDED.strip()}) v
JOIN fleet_instance i ON i.provider = v.provider AND i.id = v.instance_id
WHERE {fleet_filter()}
GROUP BY 1 ORDER BY 1""", unit=MONEY_UNIT, bars=True,
        description="The savings ledger: price per hour × hours each stopped machine stayed stopped "
                    "(at most 30 days)."), 16, 8)
    L.add(stat("Dollars avoided in the range", f"""
SELECT COALESCE(SUM(v.avoided), 0) AS "dollars avoided"
FROM ({AVOIDED.strip()}) v
JOIN fleet_instance i ON i.provider = v.provider AND i.id = v.instance_id
WHERE {fleet_filter()}""", unit=MONEY_UNIT, decimals=2), 8, 8)
    L.add(table("Machines idle right now", f"""
SELECT i.provider, i.name, i.instance_type AS "instance type", i.gpu_model AS gpu, i.gpu_count AS gpus,
  COALESCE({FLEET_TEAM}, '(no team)') AS team, c.opened_at AS "idle since",
  c.detail::jsonb ->> 'stage' AS stage, (c.detail::jsonb ->> 'due_at')::timestamptz AS "action due",
  i.price_per_hour AS "price per hour", i.currency
FROM fleet_case c JOIN fleet_instance i ON i.provider = c.provider AND i.id = c.instance_id
WHERE i.state = 'running' AND {fleet_filter()}
ORDER BY c.opened_at""",
        description="Running machines the idle policy has an open case for (found idle; notice sent "
                    "or due). Not bound by the time range: now."), 24, 8)
    L.add(table("Audit log", f"""
SELECT a.at, a.provider, a.instance_name AS machine, a.decision, a.mode, a.reason, a.price_per_hour AS "price per hour",
  a.error
FROM fleet_action a JOIN fleet_instance i ON i.provider = a.provider AND i.id = a.instance_id
WHERE $__timeFilter(a.at) AND {fleet_filter()}
ORDER BY a.at DESC LIMIT 500"""), 24, 8)
    variables = own_vars("fleet_instance", "last_seen >= $__timeFrom()", "provider", "region",
                         "labels::jsonb ->> ${team_tag:sqlstring}") + [threshold]
    return dashboard("bursar-idle-gpus", "bursar — idle GPUs",
                     "Idle GPU-hours, what the idle-GPU policy did and what it saved, and the machines "
                     "idle right now.", variables, L, time_from="now-7d")


# ---- 8. prices and placement ------------------------------------------------------------------


def prices():
    L = Layout()
    provider = is_in("provider", "provider")
    L.add(table("Offers by provider and market", f"""
SELECT provider, market, COUNT(*) AS offers, MIN(price_per_hour) AS "cheapest per hour", MAX(observed_at) AS newest
FROM price_current WHERE {provider} AND {is_in('region', 'region')}
GROUP BY provider, market ORDER BY provider, market"""), 12, 8)
    L.add(table("Price sources", """
SELECT name, state, last_success_at AS "last success", last_error_at AS "last error at", rows, last_error AS "last error"
FROM source_status ORDER BY name"""), 12, 8)
    L.add(table("Cheapest offer per GPU model and provider", f"""
SELECT i.gpu_model AS gpu, c.provider, c.market,
  MIN(c.price_per_hour / NULLIF(i.gpu_count, 0)::numeric) AS "cheapest per GPU-hour"
FROM price_current c JOIN instance_type i ON i.provider = c.provider AND i.instance_type = c.instance_type
WHERE i.gpu_model IS NOT NULL AND i.gpu_count > 0 AND {is_in('c.provider', 'provider')} AND {is_in('c.region', 'region')}
GROUP BY 1, 2, 3 ORDER BY 1, 4"""), 24, 10)
    L.add(ts("Price history: $instance_type", f"""
SELECT observed_at AS time, provider || ' ' || region || ' ' || zone || ' ' || market AS metric,
  price_per_hour AS value
FROM price_observation
WHERE instance_type = ${{instance_type:sqlstring}} AND $__timeFilter(observed_at) AND {provider} AND {is_in('region', 'region')}
ORDER BY 1""", unit=MONEY_UNIT), 24, 10)
    L.add(ts("Price changes per day by source", f"""
SELECT $__timeGroupAlias(observed_at, '1d'), source AS metric, COUNT(*) AS value
FROM price_observation WHERE $__timeFilter(observed_at) AND {provider}
GROUP BY 1, 2 ORDER BY 1, 2""", bars=True), 24, 8)
    variables = [
        multi_var("provider", "Provider", "SELECT DISTINCT provider FROM price_current ORDER BY 1"),
        multi_var("region", "Region",
                  f"SELECT DISTINCT region FROM price_current WHERE {provider} ORDER BY 1"),
        {"name": "instance_type", "label": "Instance type", "type": "textbox", "query": "p4d.24xlarge",
         "current": {"text": "p4d.24xlarge", "value": "p4d.24xlarge"},
         "options": [{"selected": True, "text": "p4d.24xlarge", "value": "p4d.24xlarge"}]},
    ]
    return dashboard("bursar-prices", "bursar — price catalog",
                     "Offers by provider and market, price sources, the cheapest GPU offers, price history.",
                     variables, L, time_from="now-30d")


def placement():
    L = Layout()
    f = (f"$__timeFilter(decided_at) AND {is_in('chosen_provider', 'provider')} AND "
         f"{is_in('chosen_region', 'region')} AND {is_in(DECISION_TEAM, 'team')}")
    placed = f"outcome = 'placed' AND {f}"
    L.add(table("Estimated placement savings by team", f"""
SELECT COALESCE({DECISION_TEAM}, '(no team)') AS team, currency, COUNT(*) AS decisions,
  SUM(chosen_total) AS chosen_total, SUM(baseline_total) AS baseline_total,
  SUM(estimated_saving) AS estimated_saving
FROM placement_decision WHERE {placed}
GROUP BY 1, 2 ORDER BY estimated_saving DESC NULLS LAST, team"""), 12, 8)
    L.add(ts("Estimated placement savings per day by team", f"""
SELECT $__timeGroupAlias(decided_at, '1d'), COALESCE({DECISION_TEAM}, '(no team)') AS metric,
  SUM(estimated_saving) AS value
FROM placement_decision WHERE {placed}
GROUP BY 1, 2 ORDER BY 1, 2""", unit=MONEY_UNIT), 12, 8)
    L.add(table("Where jobs were placed", f"""
SELECT chosen_provider AS provider, chosen_market AS market, COUNT(*) AS decisions, SUM(chosen_total) AS total
FROM placement_decision WHERE {placed}
GROUP BY 1, 2 ORDER BY decisions DESC, provider, market"""), 12, 8)
    L.add(ts("Spot share of placements per day", f"""
SELECT $__timeGroupAlias(decided_at, '1d'), AVG(CASE WHEN chosen_market = 'spot' THEN 1.0 ELSE 0.0 END) AS "spot share"
FROM placement_decision WHERE {placed}
GROUP BY 1 ORDER BY 1""", unit="percentunit"), 12, 8)
    L.add(ts("Decisions per day by outcome", """
SELECT $__timeGroupAlias(decided_at, '1d'), outcome AS metric, COUNT(*) AS value
FROM placement_decision WHERE $__timeFilter(decided_at)
GROUP BY 1, 2 ORDER BY 1, 2""", bars=True), 12, 8)
    L.add(ts("Decision latency (ms) per hour", """
SELECT $__timeGroupAlias(decided_at, '1h'),
  percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_us) / 1000.0 AS p50,
  percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_us) / 1000.0 AS p99
FROM placement_decision WHERE $__timeFilter(decided_at)
GROUP BY 1 ORDER BY 1""", unit="ms"), 12, 8)
    variables = own_vars("placement_decision", "$__timeFilter(decided_at)", "chosen_provider",
                         "chosen_region", DECISION_TEAM)
    return dashboard("bursar-placement", "bursar — placement decisions and savings",
                     "SelectProvider's decision log: savings against the baseline by team and day, "
                     "where jobs went, spot share, outcomes and latency.", variables, L, time_from="now-30d")


DASHBOARDS = {
    "spend.json": spend,
    "budgets.json": budgets,
    "rates.json": rates,
    "data-quality.json": data_quality,
    "egress.json": egress,
    "savings.json": savings,
    "idle-gpus.json": idle_gpus,
    "prices.json": prices,
    "placement.json": placement,
}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, build in DASHBOARDS.items():
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        path = os.path.join(HERE, name)
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if old == text:
            continue
        if check:
            stale.append(name)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote dashboards/{name}")
    if stale:
        print("out of date (run python3 dashboards/generate.py): " + ", ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
