"""Times DuckDB loading one file into a table of a fresh on-disk database (the ratio
baseline for `bursar bench ingest`). Usage: duckdb_load.py FILE DB_PATH"""
import json
import os
import sys
import time

import duckdb

path, db = sys.argv[1], sys.argv[2]
if os.path.exists(db):
    os.remove(db)
con = duckdb.connect(db)
t = time.time()
if path.endswith(".parquet"):
    con.execute(f"CREATE TABLE cost AS SELECT * FROM read_parquet('{path}')")
else:
    con.execute(f"CREATE TABLE cost AS SELECT * FROM read_csv('{path}', nullstr=['NULL', ''], sample_size=-1)")
con.execute("CHECKPOINT")
n = con.execute("SELECT count(*) FROM cost").fetchone()[0]
print(json.dumps({"rows": n, "seconds": time.time() - t}))
