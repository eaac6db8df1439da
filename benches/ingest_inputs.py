"""Makes the ingest benchmark inputs with DuckDB: about N rows of FOCUS CSV (the official
sample repeated, each copy shifted by whole months) and of AWS CUR Parquet (the Oct 2018
workshop CUR repeated the same way). Usage: ingest_inputs.py SHARED_DATA OUT_DIR ROWS"""
import json
import sys
import time

import duckdb

shared, out, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
t = time.time()
focus = f"{shared}/focus-sample/multi-provider/focus_sample.csv"
n_focus = con.execute(f"SELECT count(*) FROM read_csv('{focus}', all_varchar=true)").fetchone()[0]
copies = max(1, rows // n_focus)
shift = ", ".join(
    f"strftime(CAST({c} AS TIMESTAMP) + to_months(r.i), '%Y-%m-%d %H:%M:%S') AS {c}"
    for c in ["BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"]
)
con.execute(
    f"""COPY (SELECT * REPLACE ({shift}) FROM read_csv('{focus}', all_varchar=true, nullstr='NULL'),
        range({copies}) r(i)) TO '{out}/focus.csv' (HEADER, DELIMITER ',')"""
)
cur = f"{shared}/native-billing/aws/Oct2018-WorkshopCUR-00001.snappy.parquet"
n_cur = con.execute(f"SELECT count(*) FROM read_parquet('{cur}')").fetchone()[0]
cur_copies = max(1, rows // n_cur)
tcols = [
    r[0]
    for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{cur}')").fetchall()
    if r[1].startswith("TIMESTAMP")
]
shift = ", ".join(f"{c} + to_months(r.i) AS {c}" for c in tcols)
con.execute(
    f"""COPY (SELECT * REPLACE ({shift}) FROM read_parquet('{cur}'), range({cur_copies}) r(i))
        TO '{out}/cur.parquet' (FORMAT parquet, COMPRESSION snappy)"""
)
print(json.dumps({"focus_rows": n_focus * copies, "cur_rows": n_cur * cur_copies, "seconds": time.time() - t}))
