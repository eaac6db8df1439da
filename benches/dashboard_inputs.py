"""Makes one month of FOCUS billing for `bursar bench dashboards` with DuckDB: the official
FOCUS sample (1,000 lines) repeated until about LINES lines, all in the billing month that
starts at MONTH (YYYY-MM-01). Copy i of a line keeps its fields and money; its charge
period moves 7*i hours later within the month's first 28 days (so every day carries lines),
its resource id gets the suffix -(i % 50) (50 times the resources), and its tags get
"team": "team-(i % 4)" (four teams; the dashboards' team variable reads the `team` tag).
Written as Parquet (strings as the CSV has them). Usage:
dashboard_inputs.py SHARED_DATA OUT_FILE MONTH LINES"""
import json
import sys
import time

import duckdb

shared, out, month, lines = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = time.time()
con = duckdb.connect()
focus = f"{shared}/focus-sample/multi-provider/focus_sample.csv"
n = con.execute(f"SELECT count(*) FROM read_csv('{focus}', all_varchar=true)").fetchone()[0]
copies = max(1, lines // n)
fmt = "'%Y-%m-%d %H:%M:%S'"
start = f"TIMESTAMP '{month} 00:00:00'"
# Hours from the sample's billing period start to the line's charge period start, moved by
# the copy and kept within 28 days; the charge period keeps its length.
offset = (
    "((date_diff('hour', CAST(BillingPeriodStart AS TIMESTAMP), CAST(ChargePeriodStart AS TIMESTAMP))"
    " + 7 * r.i) % 672 + 672) % 672"
)
length = "date_diff('second', CAST(ChargePeriodStart AS TIMESTAMP), CAST(ChargePeriodEnd AS TIMESTAMP))"
team = "'\"team\": \"team-' || CAST(r.i % 4 AS VARCHAR) || '\"'"
con.execute(
    f"""COPY (SELECT * REPLACE (
            strftime({start}, {fmt}) AS BillingPeriodStart,
            strftime({start} + INTERVAL 1 MONTH, {fmt}) AS BillingPeriodEnd,
            strftime({start} + to_hours({offset}), {fmt}) AS ChargePeriodStart,
            strftime({start} + to_hours({offset}) + to_seconds({length}), {fmt}) AS ChargePeriodEnd,
            ResourceId || '-' || CAST(r.i % 50 AS VARCHAR) AS ResourceId,
            CASE WHEN Tags IS NULL OR trim(Tags) IN ('', '{{}}') THEN '{{' || {team} || '}}'
                 ELSE '{{' || {team} || ', ' || substr(trim(Tags), 2) END AS Tags)
        FROM read_csv('{focus}', all_varchar=true, nullstr='NULL'), range({copies}) r(i))
        TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
)
print(json.dumps({"rows": n * copies, "seconds": time.time() - t}))
