-- Questions about what is installed. Schema names are bind parameters here.

-- name: answers_table --
SELECT to_regclass(quote_ident($1) || '.${model.ANSWERS}') IS NOT NULL

-- name: version_table --
SELECT to_regclass(quote_ident($1) || '.' || quote_ident($2)) IS NOT NULL

-- name: answers_table_literal --
-- The same question without a bind parameter, for Alembic's driver inside a migration.
SELECT to_regclass('${schema}.${model.ANSWERS}') IS NOT NULL

-- name: lifecycle_lock --
-- Serialises `migrate` runs on one database (session-level: held across the Alembic
-- revisions, which run on a connection of their own). The key is this package's, fixed.
-- Tried, not waited for: a statement waiting for the lock holds a snapshot, and the running
-- migrate's CREATE INDEX CONCURRENTLY would wait for that snapshot forever.
SELECT pg_try_advisory_lock(7395602861027461201)

-- name: lifecycle_unlock --
SELECT pg_advisory_unlock(7395602861027461201)
