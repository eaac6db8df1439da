-- Replacing a scope no longer goes through a per-line index on cost_line.scope: that index
-- cost every inserted line a b-tree insert in the middle of the tree (~40 % of an ingest's
-- write time). Each run reserves a block of ids for its lines instead, and records here,
-- per scope it stored, the first and last id its lines of that scope got. A newer export of
-- the scope deletes `id BETWEEN first_id AND last_id AND scope = … AND ingest_run_id = …`:
-- a range of the primary key.
CREATE TABLE cost_line_range (
    scope          TEXT NOT NULL,
    ingest_run_id  TEXT NOT NULL,
    first_id       INTEGER NOT NULL,
    last_id        INTEGER NOT NULL,
    lines          INTEGER NOT NULL,
    PRIMARY KEY (scope, ingest_run_id)
);

-- Lines stored before this migration: their runs' ranges (a superset when two runs'
-- ids interleaved; the delete also filters on the run and the scope).
INSERT INTO cost_line_range (scope, ingest_run_id, first_id, last_id, lines)
SELECT scope, ingest_run_id, MIN(id), MAX(id), COUNT(*) FROM cost_line GROUP BY scope, ingest_run_id;

DROP INDEX IF EXISTS cost_line_scope;
