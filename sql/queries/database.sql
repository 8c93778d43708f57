-- The server rather than a schema: databases created and dropped by name (the load test's
-- fresh databases, the tests' per-test copies). DDL takes no $1 parameters: {database} and
-- {template} are identifiers, filled in quoted by daemon.db.sql.query_with_identifiers.

-- name: create_database
CREATE DATABASE {database};

-- name: create_database_from_template
CREATE DATABASE {database} TEMPLATE {template};

-- name: drop_database
-- FORCE: a run that failed half-way may leave connections open.
DROP DATABASE IF EXISTS {database} WITH (FORCE);

-- name: backend_pid
SELECT pg_backend_pid();

-- name: client_connections
-- Client connections to the server other than this one (the embedded server's keeper stops
-- it after a while without any).
SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid();

-- name: database_name
-- What the daemon's spool files are named for (engine.spool).
SELECT current_database();

-- name: write_probe
-- /readyz: can the daemon write its contacts? Run in a transaction with a short lock_timeout
-- (write_probe_settings first): a read-only database refuses FOR UPDATE, a table lock (ACCESS
-- EXCLUSIVE on contacts) makes it wait past the timeout. No row is locked (LIMIT 0).
SELECT id FROM contacts LIMIT 0 FOR UPDATE;

-- name: write_probe_settings
SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true);
