-- cost_line_run served no query (replacing a scope goes through cost_line_scope) and cost
-- every inserted line an index update.
DROP INDEX IF EXISTS cost_line_run;
