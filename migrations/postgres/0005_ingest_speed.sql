-- cost_line_run served no query (replacing a scope goes through cost_line_scope) and cost
-- every inserted line an index update. Scope and run ids are machine keys: compare them
-- bytewise ("C") rather than by the database's locale.
DROP INDEX IF EXISTS cost_line_run;
ALTER TABLE cost_line ALTER COLUMN scope TYPE TEXT COLLATE "C";
ALTER TABLE cost_line ALTER COLUMN ingest_run_id TYPE TEXT COLLATE "C";
