-- A counter that every committed change to what budgets read moves in the same
-- transaction: each ingest run (any process: `bursar ingest`, `--watch`, Cost Explorer)
-- bumps it just before it commits (`IngestTx::commit`), and the trigger below bumps it on
-- every statement that writes `budget`. The server polls it every `budget_evaluation.poll`
-- and re-evaluates its budgets (swapping SelectProvider's gate snapshot) only when it moved.
CREATE TABLE spend_generation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO spend_generation (id, generation) VALUES (1, 1);

CREATE FUNCTION bump_spend_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE spend_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;
CREATE TRIGGER budget_moves_spend_generation
    AFTER INSERT OR UPDATE OR DELETE ON budget
    FOR EACH STATEMENT EXECUTE FUNCTION bump_spend_generation();
