-- Leader election and fencing (Postgres). One row per singleton role ('singleton': the
-- pollers, watchers, budget recording, the outbox, idle-GPU enforcement, the report mail).
-- The holder renews `expires_at` by the database's clock; a follower takes the row over
-- once it has expired, with `term` + 1.
CREATE TABLE leader_lease (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    term        BIGINT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

-- Fencing. A leader's singleton work runs on connections whose session carries its term
-- (`bursar.leader_term`, set by the store on every acquire of the leader's pool). Before
-- any statement that writes a fenced table, this trigger checks that the term still holds
-- an unexpired lease (by clock_timestamp(), not the transaction's start) and refuses the
-- statement otherwise (SQLSTATE BF001). It keeps the lease row FOR KEY SHARE until the
-- writing transaction ends; a takeover locks the row FOR UPDATE first, so it waits for a
-- write that passed the check to commit or roll back. Sessions without a term (RPCs, the
-- CLI, the dashboards' role) are not fenced.
CREATE FUNCTION bursar_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t TEXT := current_setting('bursar.leader_term', true);
BEGIN
    IF t IS NULL OR t = '' THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM leader_lease
        WHERE name = 'singleton' AND term = t::BIGINT AND expires_at > clock_timestamp()
        FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stale leader term %: the lease is held by another term or has expired', t
            USING ERRCODE = 'BF001';
    END IF;
    RETURN NULL;
END
$$;

-- Puts the fence on one table: a migration that adds a table written by singleton work
-- calls it (`SELECT bursar_fence_table('t');`).
CREATE FUNCTION bursar_fence_table(t regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE TRIGGER bursar_fence BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
        'FOR EACH STATEMENT EXECUTE FUNCTION bursar_fence()', t);
END
$$;

-- Every table there is: whatever singleton work writes is fenced.
DO $$
DECLARE
    r RECORD;
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS t FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
          AND NOT c.relispartition
          AND c.relname NOT IN ('leader_lease', '_sqlx_migrations')
    LOOP
        PERFORM bursar_fence_table(r.t);
    END LOOP;
END
$$;
