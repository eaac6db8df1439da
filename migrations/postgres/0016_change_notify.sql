-- Change propagation between replicas (issue 21). Every write that should reach the other
-- replicas at once already moves a row here, in the writer's own transaction, whatever
-- process made it (a replica, `bursar poll`, `bursar import-catalog`, `bursar ingest`):
-- these triggers turn it into a NOTIFY on the channel `bursar_changes`, which Postgres
-- delivers to every listening replica when (and only if) that transaction commits. The
-- payload says what to reload:
--   catalog  catalog_generation moved (prices, hardware, spot bands)
--   spend    spend_generation moved (an ingest committed; a budget was written)
--   marks    availability marks or source status changed (SelectProvider's placement state)
-- A replica that misses a notification (its listening connection was lost) still sees the
-- change through its periodic generation poll.
CREATE FUNCTION notify_bursar_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bursar_changes', TG_ARGV[0]);
    RETURN NULL;
END;
$$;

CREATE TRIGGER catalog_generation_notifies
    AFTER UPDATE ON catalog_generation
    FOR EACH STATEMENT EXECUTE FUNCTION notify_bursar_change('catalog');
CREATE TRIGGER spend_generation_notifies
    AFTER UPDATE ON spend_generation
    FOR EACH STATEMENT EXECUTE FUNCTION notify_bursar_change('spend');
CREATE TRIGGER availability_mark_notifies
    AFTER INSERT OR UPDATE OR DELETE ON availability_mark
    FOR EACH STATEMENT EXECUTE FUNCTION notify_bursar_change('marks');
CREATE TRIGGER source_status_notifies
    AFTER INSERT OR UPDATE OR DELETE ON source_status
    FOR EACH STATEMENT EXECUTE FUNCTION notify_bursar_change('marks');
