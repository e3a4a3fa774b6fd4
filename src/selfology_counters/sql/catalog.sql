-- Questions about what is installed. Schema names are bind parameters here.

-- name: answers_table --
SELECT to_regclass(quote_ident($1) || '.user_answers_new') IS NOT NULL

-- name: version_table --
SELECT to_regclass(quote_ident($1) || '.' || quote_ident($2)) IS NOT NULL

-- name: answers_table_literal --
-- The same question without a bind parameter, for Alembic's driver inside a migration.
SELECT to_regclass('@schema@.user_answers_new') IS NOT NULL
