-- The read-only role Grafana's dashboards connect as (dashboards/provisioning/): SELECT on
-- exactly the tables and views the dashboards in dashboards/*.json read, and USAGE on the
-- schema; nothing else. tests/dashboards.rs runs every panel as this role and checks that
-- what is granted is what the dashboards read.
--
-- Roles are cluster-wide: the role is created once, by the first database migrated, and
-- the migration of every other database on the server finds it (concurrent migrations of
-- several databases race on CREATE ROLE: the loser's duplicate is caught). It is NOLOGIN
-- until a password is configured: `serve` and `bursar migrate` with
-- `[dashboards] reader_password` (BURSAR_DASHBOARDS_READER_PASSWORD) call
-- bursar_reader_password() below, which makes it LOGIN with that password.
--
-- A bursar database user without CREATEROLE cannot create it: the migration then says so
-- (NOTICE) and grants nothing. An administrator may create `bursar_reader` (NOLOGIN) in
-- advance; this migration, run by the tables' owner, then grants to it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bursar_reader') THEN
        BEGIN
            CREATE ROLE bursar_reader NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL; -- created meanwhile by another database's migration
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'bursar_reader not created (no CREATEROLE): dashboards need it; see dashboards/README.md';
                RETURN;
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO bursar_reader', current_schema());
    GRANT SELECT ON
        -- spend (the daily summary; no panel reads cost_line)
        cost_day,
        -- budgets: evaluations, thresholds crossed
        budget_evaluation, budget_alert,
        -- data quality and prices
        ingest_run, ingest_quarantine, source_status,
        price_current, price_observation, instance_type,
        -- savings and idle GPUs
        placement_decision, fleet_instance, fleet_action, fleet_case, gpu_sample
    TO bursar_reader;
    -- The outbox's state, not its messages: `target` is an email address or a Slack
    -- webhook URL (a secret), and subject, bodies and the last error are left out too.
    GRANT SELECT (id, budget, period_key, threshold_key, channel, state, attempts,
                  next_attempt_at, created_at, delivered_at)
        ON alert_outbox TO bursar_reader;
    -- Which budgets exist, not their definitions: `spec` holds the alert recipients.
    GRANT SELECT (name, origin, created_at, updated_at) ON budget TO bursar_reader;
END
$$;

-- Sets the role's password and lets it log in. Called with the password as a bound
-- parameter, so the password is in no SQL text a client logs; an error says why without
-- the statement (which holds the password).
CREATE FUNCTION bursar_reader_password(password TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF password IS NULL OR password = '' THEN
        RAISE EXCEPTION 'the password of bursar_reader must not be empty';
    END IF;
    BEGIN
        EXECUTE format('ALTER ROLE bursar_reader LOGIN PASSWORD %L', password);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'cannot set the password of bursar_reader: %', SQLERRM
            USING ERRCODE = SQLSTATE;
    END;
END
$$;
REVOKE ALL ON FUNCTION bursar_reader_password(TEXT) FROM PUBLIC;

-- Read-only in every session, whatever the schema's privileges (PUBLIC keeps CREATE on
-- schema public before Postgres 15): a write fails with "cannot execute … in a read-only
-- transaction".
DO $$
BEGIN
    ALTER ROLE bursar_reader SET default_transaction_read_only = on;
EXCEPTION WHEN OTHERS THEN
    -- No right to alter roles, no role (its creation was refused above), or another
    -- database's migration altering it at this moment (which sets the same value).
    RAISE NOTICE 'bursar_reader: cannot set default_transaction_read_only (%); set it as an administrator', SQLERRM;
END
$$;
