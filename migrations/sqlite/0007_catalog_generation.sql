-- A counter that every write to the tables the in-memory catalog is built from
-- (price_current, instance_type, spot_band) moves in the same transaction. The server's
-- periodic catalog refresh reads it first and rebuilds only when it moved, so a replica
-- picks up another replica's prices without re-reading and re-indexing ~170k unchanged
-- offers every interval.
CREATE TABLE catalog_generation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO catalog_generation (id, generation) VALUES (1, 1);
