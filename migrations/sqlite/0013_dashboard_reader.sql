-- Postgres creates the read-only role `bursar_reader` for Grafana here
-- (migrations/postgres/0013_dashboard_reader.sql). SQLite has no roles, and the dashboards
-- read Postgres only (dashboards/README.md): nothing to do. The file keeps both backends'
-- migrations numbered alike.
SELECT 1;
