-- A read-only role for what only reads (Grafana's Postgres datasource, reporting): SELECT on every table of
-- the schema, now and for tables later migrations create (default privileges of the role that migrates).
-- It cannot log in until the deployment gives it a password (compose: the `postgres-readonly` one-shot, from
-- POSTGRES_READONLY_PASSWORD); it never gets INSERT, UPDATE, DELETE or DDL.
-- depends: 0500_ops_api

DO $$
BEGIN
    CREATE ROLE bnml_readonly NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- roles are per cluster: another database of this server (or a concurrent migration) made it
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO bnml_readonly', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO bnml_readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO bnml_readonly;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO bnml_readonly;
