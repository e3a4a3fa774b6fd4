-- Adopting the original Selfology database (see docs/ADOPTING.md). Every statement is
-- idempotent: a rerun after an interruption skips what is done. Schema names are fixed to
-- ${schema}; values are bind parameters.

-- name: table_columns --
SELECT c.relname AS table_name, a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped

<%! from selfology_counters import original %>
-- name: original_triggers --
-- The original system's counter triggers (migrations 003/004/007/008) and their functions:
-- by the names of original.py, or by what they do (a trigger on the answers whose function
-- names a counter column counts answers a second time next to ours).
SELECT c.relname AS table_name, t.tgname AS trigger_name, p.proname AS function_name
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_proc p ON p.oid = t.tgfoid
 WHERE n.nspname = $1 AND NOT t.tgisinternal
   AND t.tgname NOT LIKE 'selfology\_counters\_%'
   AND (p.proname IN (${", ".join(f"'{name}'" for name in (*(t.function for t in original.TRIGGERS), *original.LEGACY_FUNCTIONS))})
        OR t.tgname IN (${", ".join(f"'{t.name}'" for t in original.TRIGGERS)})
        OR (c.relname = '${model.ANSWERS}'
            AND p.prosrc ~ '${"|".join(c.column for c in model.COUNTERS)}'))

-- name: our_trigger_count --
SELECT count(*) FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND t.tgname LIKE 'selfology\_counters\_%'

-- name: constraint_exists --
SELECT EXISTS (SELECT 1 FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
                WHERE n.nspname = $1 AND k.conname = $2)

-- name: index_state --
-- NULL: no such index; false: left INVALID by an interrupted CREATE INDEX CONCURRENTLY.
SELECT i.indisvalid FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2

-- name: leading_column_index --
-- Does a valid, non-partial index of the table start with this column? The bot's own index
-- on answers(session_id) serves as well as ours; building a second would only slow writes.
SELECT EXISTS (
    SELECT 1 FROM pg_index i
      JOIN pg_class t ON t.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
     WHERE n.nspname = $1 AND t.relname = $2 AND a.attname = $3
       AND i.indisvalid AND i.indpred IS NULL)

-- name: original_drift --
-- Counters that differ from the truth, computed on the original layout (the answers carry no
-- user_id yet, so the user comes from the session). For the plan and the report.
WITH per_session AS (
    SELECT a.session_id, count(*) AS n FROM ${schema}.user_answers_new a GROUP BY a.session_id
), per_user AS (
    SELECT s.user_id, count(*) AS n
      FROM ${schema}.user_answers_new a JOIN ${schema}.onboarding_sessions s ON s.id = a.session_id
     GROUP BY s.user_id
), drift AS (
    SELECT 'onboarding_sessions.questions_answered' AS counter, s.id::bigint AS key,
           s.questions_answered::bigint AS stored, COALESCE(ps.n, 0) AS actual,
           true AS row_exists
      FROM ${schema}.onboarding_sessions s LEFT JOIN per_session ps ON ps.session_id = s.id
    UNION ALL
    SELECT 'user_stats.total_answers_lifetime', u.user_id, us.total_answers_lifetime,
           COALESCE(pu.n, 0), us.user_id IS NOT NULL
      FROM (SELECT user_id FROM ${schema}.user_stats UNION SELECT user_id FROM per_user) u
      LEFT JOIN ${schema}.user_stats us ON us.user_id = u.user_id
      LEFT JOIN per_user pu ON pu.user_id = u.user_id
    UNION ALL
    SELECT 'digital_personality.total_answers_analyzed', dp.user_id, dp.total_answers_analyzed,
           COALESCE(pu.n, 0), true
      FROM ${schema}.digital_personality dp LEFT JOIN per_user pu ON pu.user_id = dp.user_id
)
SELECT counter, count(*) AS wrong, max(abs(COALESCE(stored, 0) - actual)) AS largest_drift,
       count(*) FILTER (WHERE NOT row_exists) AS missing_rows
  FROM drift
 WHERE stored IS DISTINCT FROM actual
 GROUP BY counter

-- name: add_answers_user_id_integer --
ALTER TABLE ${schema}.user_answers_new ADD COLUMN IF NOT EXISTS user_id integer

-- name: add_answers_user_id_bigint --
ALTER TABLE ${schema}.user_answers_new ADD COLUMN IF NOT EXISTS user_id bigint

-- name: add_missing_columns --
-- Columns our code reads that an older schema may lack. Adding a column with a constant
-- default does not rewrite the table.
ALTER TABLE ${schema}.onboarding_sessions
    ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'active',
    ADD COLUMN IF NOT EXISTS questions_answered integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS completed_at timestamptz;
ALTER TABLE ${schema}.user_answers_new
    ADD COLUMN IF NOT EXISTS answer_length integer,
    ADD COLUMN IF NOT EXISTS answered_at timestamptz DEFAULT now();
ALTER TABLE ${schema}.user_answers_new ALTER COLUMN answered_at SET DEFAULT now();
ALTER TABLE ${schema}.user_stats
    ADD COLUMN IF NOT EXISTS first_answer_at timestamptz,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz DEFAULT now();
ALTER TABLE ${schema}.digital_personality
    ADD COLUMN IF NOT EXISTS last_updated timestamptz DEFAULT now()

-- name: id_range --
SELECT COALESCE(min(id), 0)::bigint AS lo, COALESCE(max(id), 0)::bigint AS hi
  FROM ${schema}.user_answers_new

-- name: backfill_user_id --
UPDATE ${schema}.user_answers_new a
   SET user_id = s.user_id
  FROM ${schema}.onboarding_sessions s
 WHERE a.id >= $1 AND a.id < $2 AND a.user_id IS NULL AND s.id = a.session_id

-- name: lock_for_swap --
-- The answers first, as writers take them; DROP TRIGGER needs ACCESS EXCLUSIVE there, and
-- CREATE TRIGGER needs SHARE ROW EXCLUSIVE on the other two tables that get one.
LOCK TABLE ${schema}.user_answers_new IN ACCESS EXCLUSIVE MODE;
LOCK TABLE ${schema}.onboarding_sessions, ${schema}.digital_personality IN SHARE ROW EXCLUSIVE MODE

-- name: catch_up_user_id --
-- Answers the bot inserted since the back-fill, under the swap lock (found by the index).
UPDATE ${schema}.user_answers_new a
   SET user_id = s.user_id
  FROM ${schema}.onboarding_sessions s
 WHERE a.user_id IS NULL AND s.id = a.session_id

-- name: drop_trigger_sql --
SELECT format('DROP TRIGGER IF EXISTS %I ON %I.%I', $1::text, $2::text, $3::text)

-- name: drop_function_sql --
SELECT format('DROP FUNCTION IF EXISTS %I.%I()', $1::text, $2::text)

-- name: counter_defaults --
% for c in model.COUNTERS:
ALTER TABLE ${schema}.${c.table} ALTER COLUMN ${c.column} SET DEFAULT 0;
% endfor

-- name: recount_by_hand --
-- The dry run's script only: every user check finds wrong, recounted by the function the
-- swap installed (migrate itself runs health.repair, in short batches).
SELECT count(*) AS users_recounted FROM ${schema}.validate_all_answer_counters()

-- name: not_null_check_sql --
-- The no-rewrite way to SET NOT NULL on a large live table: a CHECK added NOT VALID, then
-- validated (no write lock), lets SET NOT NULL skip its scan. Returns the four statements.
SELECT format('ALTER TABLE %I.%I ADD CONSTRAINT %I CHECK (%I IS NOT NULL) NOT VALID',
              $1::text, $2::text, $4::text, $3::text) AS add_check,
       format('ALTER TABLE %I.%I VALIDATE CONSTRAINT %I', $1::text, $2::text, $4::text) AS validate,
       format('ALTER TABLE %I.%I ALTER COLUMN %I SET NOT NULL', $1::text, $2::text, $3::text)
           AS set_not_null,
       format('ALTER TABLE %I.%I DROP CONSTRAINT %I', $1::text, $2::text, $4::text) AS drop_check

-- name: drop_original_view --
-- The original's views and migration 008's repair functions: ours, of the same names and
-- columns, are installed next, over the one truth (their column types may differ, which
-- CREATE OR REPLACE refuses).
DROP VIEW IF EXISTS ${schema}.counter_consistency_check;
% for kind_and_name in original.PUBLIC_ORIGINALS:
DROP ${kind_and_name.split(" ", 1)[0]} IF EXISTS ${schema}.${kind_and_name.split(" ", 1)[1]};
% endfor

-- name: create_index_answers_user_id --
CREATE INDEX CONCURRENTLY IF NOT EXISTS user_answers_new_user_id_idx
    ON ${schema}.user_answers_new (user_id)

-- name: create_index_answers_session_id --
CREATE INDEX CONCURRENTLY IF NOT EXISTS user_answers_new_session_id_idx
    ON ${schema}.user_answers_new (session_id)

-- name: create_index_sessions_user_id --
CREATE INDEX CONCURRENTLY IF NOT EXISTS onboarding_sessions_user_id_idx
    ON ${schema}.onboarding_sessions (user_id)

-- name: create_index_sessions_id_user_id --
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS onboarding_sessions_id_user_id_key
    ON ${schema}.onboarding_sessions (id, user_id)

-- name: drop_invalid_index --
-- Only ever called with one of the index names above, after index_state said INVALID.
SELECT format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I', $1::text, $2::text)

-- name: add_unique_constraint --
ALTER TABLE ${schema}.onboarding_sessions
    ADD CONSTRAINT onboarding_sessions_id_user_id_key UNIQUE USING INDEX onboarding_sessions_id_user_id_key

-- name: add_session_fk --
ALTER TABLE ${schema}.user_answers_new
    ADD CONSTRAINT user_answers_new_session_fk FOREIGN KEY (session_id, user_id)
    REFERENCES ${schema}.onboarding_sessions (id, user_id)
    ON DELETE CASCADE ON UPDATE CASCADE NOT VALID

-- name: resync_user_id --
-- Answers back-filled before their session moved to another user (before the cascading
-- foreign key existed) carry the old user; realigned here, the counter trigger moves their
-- counts, and VALIDATE then finds every pair in place.
UPDATE ${schema}.user_answers_new a
   SET user_id = s.user_id
  FROM ${schema}.onboarding_sessions s
 WHERE s.id = a.session_id AND a.user_id IS DISTINCT FROM s.user_id

-- name: validate_session_fk --
ALTER TABLE ${schema}.user_answers_new VALIDATE CONSTRAINT user_answers_new_session_fk

-- name: add_counter_checks --
-- Added only where the counter has no such constraint yet (the original may have them).
DO $$
BEGIN
% for c in model.COUNTERS:
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conname = '${c.table}_${c.column}_check'
                      AND conrelid = '${schema}.${c.table}'::regclass) THEN
        ALTER TABLE ${schema}.${c.table} ADD CONSTRAINT
            ${c.table}_${c.column}_check CHECK (${c.column} >= 0) NOT VALID;
    END IF;
% endfor
END;
$$

-- name: validate_counter_checks --
% for c in model.COUNTERS:
ALTER TABLE ${schema}.${c.table} VALIDATE CONSTRAINT ${c.table}_${c.column}_check;
% endfor

-- name: set_lock_timeout --
-- Below deadlock_timeout (1s by default): when a schema change and the bot queue on each
-- other, the schema change gives way (and is retried), never the bot. Only around DDL: the
-- back-fill and the recount wait for row locks like any writer.
SET lock_timeout = '200ms'

-- name: reset_lock_timeout --
SET lock_timeout = 0

-- name: set_local_lock_timeout --
SET LOCAL lock_timeout = '200ms'
