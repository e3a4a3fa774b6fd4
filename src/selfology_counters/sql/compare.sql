-- Statements of `selfology-counters compare` (bench/compare.py, bench/strategies.py). Each
-- strategy lives in a scratch schema of its own; ${schema} is that schema. Values are always
-- bind parameters.


-- name: create_sessions --
-- One new session per element of $1 (user ids; repeats allowed).
INSERT INTO ${schema}.onboarding_sessions (user_id)
SELECT user_id FROM unnest($1::bigint[]) AS u(user_id)
RETURNING id, user_id

-- name: create_counter_rows --
-- The users' counter rows, at zero, as a live system has them before these answers arrive.
INSERT INTO ${schema}.user_stats (user_id)
SELECT DISTINCT user_id FROM unnest($1::bigint[]) AS u(user_id)
ON CONFLICT (user_id) DO NOTHING

-- name: create_personality_rows --
INSERT INTO ${schema}.digital_personality (user_id)
SELECT DISTINCT user_id FROM unnest($1::bigint[]) AS u(user_id)
ON CONFLICT (user_id) DO NOTHING

-- name: user_stats_total --
-- What the counter says the users have: the sum of user_stats.total_answers_lifetime.
SELECT COALESCE(sum(total_answers_lifetime), 0)::bigint
  FROM ${schema}.user_stats WHERE user_id = ANY ($1::bigint[])

-- name: matview_total --
SELECT COALESCE(sum(total_answers), 0)::bigint
  FROM ${schema}.user_answer_totals WHERE user_id = ANY ($1::bigint[])

-- name: answers_total --
SELECT count(*) FROM ${schema}.user_answers_new WHERE user_id = ANY ($1::bigint[])


-- name: insert_answer --
-- The answer row every strategy writes; what else happens is the strategy.
INSERT INTO ${schema}.user_answers_new
       (session_id, user_id, question_json_id, raw_answer, answer_length)
VALUES ($1, $2, $3, $4, $5)

-- name: insert_answers_bulk --
-- $3 answers of one session in one statement.
INSERT INTO ${schema}.user_answers_new
       (session_id, user_id, question_json_id, raw_answer, answer_length)
SELECT $1, $2, 'bulk_' || g, 'bulk answer number ' || g, char_length('bulk answer number ' || g)
  FROM generate_series(1, $3::integer) g

-- name: insert_answers_per_session --
-- $2 answers for every session in $1, in one statement (background data for the read test).
INSERT INTO ${schema}.user_answers_new
       (session_id, user_id, question_json_id, raw_answer, answer_length)
SELECT s.id, s.user_id, 'bg_' || g, 'background answer ' || g,
       char_length('background answer ' || g)
  FROM ${schema}.onboarding_sessions s CROSS JOIN generate_series(1, $2::integer) g
 WHERE s.id = ANY ($1::bigint[])

-- name: add_to_session --
-- Manual UPDATE, as the original DAO did it (and for the other two counters alike).
UPDATE ${schema}.onboarding_sessions
   SET questions_answered = questions_answered + $2
 WHERE id = $1

-- name: add_to_user_stats --
INSERT INTO ${schema}.user_stats AS us (user_id, total_answers_lifetime, first_answer_at)
VALUES ($1, $2, now())
ON CONFLICT (user_id) DO UPDATE
   SET total_answers_lifetime = us.total_answers_lifetime + EXCLUDED.total_answers_lifetime,
       updated_at = now()

-- name: add_to_personality --
UPDATE ${schema}.digital_personality
   SET total_answers_analyzed = total_answers_analyzed + $2, last_updated = now()
 WHERE user_id = $1

-- name: read_counters --
-- Read-modify-write, step 1: the application reads the three counters...
SELECT s.questions_answered, us.total_answers_lifetime, dp.total_answers_analyzed
  FROM ${schema}.onboarding_sessions s
  LEFT JOIN ${schema}.user_stats us ON us.user_id = s.user_id
  LEFT JOIN ${schema}.digital_personality dp ON dp.user_id = s.user_id
 WHERE s.id = $1

-- name: set_session_count --
-- ... step 2: and writes back what it computed.
UPDATE ${schema}.onboarding_sessions SET questions_answered = $2 WHERE id = $1

-- name: set_user_count --
UPDATE ${schema}.user_stats SET total_answers_lifetime = $2, updated_at = now() WHERE user_id = $1

-- name: set_personality_count --
UPDATE ${schema}.digital_personality
   SET total_answers_analyzed = $2, last_updated = now()
 WHERE user_id = $1

-- name: insert_answer_with_event --
-- Event-driven: the answer and its event in one statement, hence one transaction.
WITH answer AS (
    INSERT INTO ${schema}.user_answers_new
           (session_id, user_id, question_json_id, raw_answer, answer_length)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING session_id, user_id)
INSERT INTO ${schema}.answer_events (session_id, user_id)
SELECT session_id, user_id FROM answer

-- name: insert_answers_bulk_with_events --
WITH answers AS (
    INSERT INTO ${schema}.user_answers_new
           (session_id, user_id, question_json_id, raw_answer, answer_length)
    SELECT $1, $2, 'bulk_' || g, 'bulk answer number ' || g,
           char_length('bulk answer number ' || g)
      FROM generate_series(1, $3::integer) g
    RETURNING session_id, user_id)
INSERT INTO ${schema}.answer_events (session_id, user_id)
SELECT session_id, user_id FROM answers

-- name: fold_events --
-- The event worker's batch: take up to $1 of the oldest events, delete them and add them to
-- the counters, all in this one statement (so an event is counted exactly once). Returns the
-- number folded and the age in seconds of the oldest one (the lag at that moment).
WITH batch AS (
    DELETE FROM ${schema}.answer_events
     WHERE id IN (SELECT id FROM ${schema}.answer_events
                   ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
    RETURNING session_id, user_id, created_at),
per_session AS (
    SELECT session_id, count(*)::integer AS n FROM batch GROUP BY session_id),
per_user AS (
    SELECT user_id, count(*)::integer AS n FROM batch GROUP BY user_id),
sessions_updated AS (
    UPDATE ${schema}.onboarding_sessions s
       SET questions_answered = s.questions_answered + d.n
      FROM per_session d
     WHERE s.id = d.session_id),
users_updated AS (
    INSERT INTO ${schema}.user_stats AS us (user_id, total_answers_lifetime, first_answer_at)
    SELECT user_id, n, now() FROM per_user
    ON CONFLICT (user_id) DO UPDATE
       SET total_answers_lifetime = us.total_answers_lifetime + EXCLUDED.total_answers_lifetime,
           updated_at = now()),
personalities_updated AS (
    UPDATE ${schema}.digital_personality dp
       SET total_answers_analyzed = dp.total_answers_analyzed + d.n, last_updated = now()
      FROM per_user d
     WHERE dp.user_id = d.user_id)
SELECT count(*)::integer AS events,
       COALESCE(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 AS oldest_s
  FROM batch

-- name: refresh_matview --
REFRESH MATERIALIZED VIEW ${schema}.user_answer_totals

-- name: refresh_matview_concurrently --
REFRESH MATERIALIZED VIEW CONCURRENTLY ${schema}.user_answer_totals

-- name: matview_unreflected --
-- Answers of the users in $1 that the materialized view does not show yet.
SELECT (SELECT count(*) FROM ${schema}.user_answers_new WHERE user_id = ANY ($1::bigint[]))
     - (SELECT COALESCE(sum(total_answers), 0)
          FROM ${schema}.user_answer_totals WHERE user_id = ANY ($1::bigint[]))


-- name: select_one --
SELECT 1

-- name: count_user_answers --
-- COUNT(*) on every read.
SELECT count(*) FROM ${schema}.user_answers_new WHERE user_id = $1

-- name: matview_user_total --
SELECT total_answers FROM ${schema}.user_answer_totals WHERE user_id = $1

-- name: analyze_answers --
ANALYZE ${schema}.user_answers_new

-- name: vacuum_answers --
VACUUM ${schema}.user_answers_new

-- name: analyze_matview --
ANALYZE ${schema}.user_answer_totals

-- name: vacuum_matview --
VACUUM ${schema}.user_answer_totals

-- name: table_rows --
SELECT count(*) FROM ${schema}.user_answers_new


-- name: server --
-- The server and the settings that decide what the figures mean.
SELECT version() AS version,
       current_setting('server_version') AS server_version,
       ARRAY(SELECT name || '=' || current_setting(name)
               FROM pg_settings WHERE name = ANY ($1::text[]) ORDER BY name) AS settings,
       -- the extensions of $2 (those strategies are built with) this database has, and versions
       ARRAY(SELECT extname || ' ' || extversion
               FROM pg_extension WHERE extname = ANY ($2::text[]) ORDER BY extname) AS extensions

-- name: connection_room --
-- How many more connections this role may open now (our own connection included as in use).
SELECT current_setting('max_connections')::integer AS max_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::integer
           AS in_use,
       CASE WHEN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN 0
            ELSE current_setting('superuser_reserved_connections')::integer
                 + COALESCE(current_setting('reserved_connections', true)::integer, 0)
       END AS reserved

-- name: set_local_statement_timeout --
-- A bound on one step of migration 007's bulk ladder (milliseconds, as text).
SELECT set_config('statement_timeout', $1, true)

-- name: disable_autovacuum --
-- The read test's tables: "cold" (after ANALYZE) and "warm" (after VACUUM) must be the states
-- their names say, not whatever autovacuum did in between.
ALTER TABLE ${schema}.user_answers_new SET (autovacuum_enabled = false)

-- name: exact_total --
-- Deferred mode's exact read (stored + pending) of the users, as the DAO reads it.
SELECT COALESCE(sum(${schema}.${model.USER_STATS.reader}(u)), 0) FROM unnest($1::bigint[]) AS u


-- name: immv_total --
-- pg_ivm: what its per-user IMMV says the users in $1 have (a user without answers has no row).
SELECT COALESCE(sum(answers), 0)::bigint
  FROM ${schema}.answers_per_user WHERE user_id = ANY ($1::bigint[])

-- name: immv_user_total --
SELECT answers FROM ${schema}.answers_per_user WHERE user_id = $1

-- name: analyze_immv --
ANALYZE ${schema}.answers_per_user

-- name: vacuum_immv --
VACUUM ${schema}.answers_per_user

-- name: pg_ivm_installed --
SELECT extversion FROM pg_extension WHERE extname = 'pg_ivm'

-- name: create_pg_ivm --
-- For the run only, when it was not there (dropped afterwards); needs a superuser: pg_ivm is
-- not a trusted extension.
CREATE EXTENSION pg_ivm

-- name: drop_pg_ivm --
DROP EXTENSION pg_ivm
