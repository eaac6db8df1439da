-- A counter that every committed change to what budgets read moves in the same
-- transaction: each ingest run (any process: `bursar ingest`, `--watch`, Cost Explorer)
-- bumps it just before it commits (`IngestTx::commit`), and the triggers below bump it on
-- every write to `budget`. The server polls it every `budget_evaluation.poll` and
-- re-evaluates its budgets (swapping SelectProvider's gate snapshot) only when it moved.
CREATE TABLE spend_generation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO spend_generation (id, generation) VALUES (1, 1);

CREATE TRIGGER budget_insert_moves_spend_generation AFTER INSERT ON budget
BEGIN
    UPDATE spend_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER budget_update_moves_spend_generation AFTER UPDATE ON budget
BEGIN
    UPDATE spend_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER budget_delete_moves_spend_generation AFTER DELETE ON budget
BEGIN
    UPDATE spend_generation SET generation = generation + 1 WHERE id = 1;
END;
