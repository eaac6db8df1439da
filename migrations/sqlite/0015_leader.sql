-- Leader election (SQLite): single node, so this process is always the leader; the row
-- records its holder and term like Postgres's, and nothing is fenced.
CREATE TABLE leader_lease (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    term        INTEGER NOT NULL,
    expires_at  TEXT NOT NULL
);
