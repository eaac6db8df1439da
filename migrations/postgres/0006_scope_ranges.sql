-- Replacing a scope no longer goes through a per-line index on cost_line.scope, and tag
-- filters no longer through a GIN index on tags: together they were ~60 % of the time a
-- COPY of cost lines spent in the backend. Every query over cost_line is bounded by time,
-- so tag filters read the charge-period index's range and test the tags of those rows.
--
-- Each run reserves a block of ids for its lines (under an advisory lock, see
-- store/billing.rs) and records here, per scope it stored, the first and last id its lines
-- of that scope got. A newer export of the scope deletes
-- `id BETWEEN first_id AND last_id AND scope = … AND ingest_run_id = …`: a primary-key range.
CREATE TABLE cost_line_range (
    scope          TEXT COLLATE "C" NOT NULL,
    ingest_run_id  TEXT COLLATE "C" NOT NULL,
    first_id       BIGINT NOT NULL,
    last_id        BIGINT NOT NULL,
    lines          BIGINT NOT NULL,
    PRIMARY KEY (scope, ingest_run_id)
);

-- Lines stored before this migration: their runs' ranges (a superset when two runs'
-- ids interleaved; the delete also filters on the run and the scope).
INSERT INTO cost_line_range (scope, ingest_run_id, first_id, last_id, lines)
SELECT scope, ingest_run_id, MIN(id), MAX(id), COUNT(*) FROM cost_line GROUP BY scope, ingest_run_id;

DROP INDEX IF EXISTS cost_line_scope;
DROP INDEX IF EXISTS cost_line_tags;
