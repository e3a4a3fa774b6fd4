-- The benchmark's own statements, run inside a scratch schema that holds the same tables,
-- functions and triggers as `selfology` (installed from the same files).
## v: the variant's pieces (variant_plain.sql or variant_citus.sql, as sqlfiles.render chose).
<%namespace name="v" file="${context['variant']}"/>

-- name: create_bare_table --
-- The floor: the same table, indexes and foreign key as user_answers_new, without triggers
-- (distributed: as on Citus, without ON UPDATE CASCADE).
CREATE TABLE ${schema}.bare_answers (LIKE ${schema}.${model.ANSWERS}
    INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING IDENTITY);
ALTER TABLE ${schema}.bare_answers ADD CONSTRAINT bare_answers_session_fk
    FOREIGN KEY (session_id, user_id) REFERENCES ${schema}.${model.SESSIONS.table} (id, user_id)
    ON DELETE CASCADE${v.session_fk_on_update()}

-- name: create_session --
INSERT INTO ${schema}.${model.SESSIONS.table} (user_id) VALUES ($1) RETURNING id

-- name: bare_insert --
INSERT INTO ${schema}.bare_answers (session_id, user_id, question_json_id, raw_answer, answer_length)
VALUES ($1, $2, $3, $4, $5) RETURNING id

-- name: bot_insert --
-- The bot's original statement: user_id and answer_length are filled in by the database.
INSERT INTO ${schema}.${model.ANSWERS} (session_id, question_json_id, raw_answer)
VALUES ($1, $2, $3) RETURNING id

-- name: bulk_bare --
INSERT INTO ${schema}.bare_answers (session_id, user_id, question_json_id, raw_answer, answer_length)
SELECT $1, $2, 'bulk_' || g, 'bulk answer number ' || g, char_length('bulk answer number ' || g)
  FROM generate_series(1, $3::integer) g

-- name: bulk_counted --
INSERT INTO ${schema}.${model.ANSWERS} (session_id, user_id, question_json_id, raw_answer, answer_length)
SELECT $1, $2, 'bulk_' || g, 'bulk answer number ' || g, char_length('bulk answer number ' || g)
  FROM generate_series(1, $3::integer) g

-- name: user_total --
-- The exact read, in either counter mode.
SELECT ${schema}.${model.USER_STATS.reader}($1)

-- name: user_total_stored --
-- The stored column alone, as the bot reads it raw: exact in immediate mode only. Timed beside
-- the exact read as the cost of reading one row of one table, the least any read can cost.
SELECT t.${model.USER_STATS.column} FROM ${schema}.${model.USER_STATS.table} t WHERE t.${model.USER_STATS.key} = $1

-- name: deferred_mode --
SELECT ${schema}.${model.FUNCTION["set_mode"].name}('${model.DEFERRED}')

-- name: drop_schema --
DROP SCHEMA IF EXISTS ${schema} CASCADE

-- Ownership of a scratch schema: the run that made it holds, on a connection of its own for
-- as long as the schema lives, the session-level advisory lock (24095, hashtext(name)).
-- A killed run's lock goes with its connection, so its schema is "left over": nobody holds it.

-- name: hold_scratch --
SELECT pg_advisory_lock(24095, hashtext($1))

-- name: scratch_schemas --
-- Every scratch schema and whether a live run holds it (a shared try-lock fails only while
-- the owner holds the exclusive one; it is released at the end of this statement's
-- transaction, so nothing is kept).
SELECT nspname AS schema, NOT pg_try_advisory_xact_lock_shared(24095, hashtext(nspname)) AS in_use
  FROM pg_namespace
 WHERE nspname LIKE 'selfology\_bench\_%'
 ORDER BY nspname

-- name: claim_scratch --
-- In the transaction that drops a left-over schema: true when no run holds it (and then
-- none can claim it before the drop commits).
SELECT pg_try_advisory_xact_lock(24095, hashtext($1))
