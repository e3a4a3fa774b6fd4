-- check, repair and stats. Counter definitions: counters.py; truth: counter_consistency_check.

-- name: check_all --
-- check_all and check_user stay two statements (not `$1 IS NULL OR user_id = $1`) so that a
-- prepared check_user always plans with the user filter, which reaches the user_id indexes.
SELECT counter, count(*) AS checked,
       COALESCE(jsonb_agg(jsonb_build_object(
           'key', key, 'user_id', user_id, 'stored', stored, 'actual', actual, 'status', status)
           ORDER BY abs(COALESCE(drift, actual)) DESC, key)
         FILTER (WHERE status <> 'CONSISTENT'), '[]') AS issues
  FROM @schema@.counter_consistency_check
 GROUP BY counter

-- name: check_user --
SELECT counter, count(*) AS checked,
       COALESCE(jsonb_agg(jsonb_build_object(
           'key', key, 'user_id', user_id, 'stored', stored, 'actual', actual, 'status', status)
           ORDER BY abs(COALESCE(drift, actual)) DESC, key)
         FILTER (WHERE status <> 'CONSISTENT'), '[]') AS issues
  FROM @schema@.counter_consistency_check
 WHERE user_id = $1
 GROUP BY counter

-- name: triggers --
-- Every non-internal trigger on the counted tables: ours (any version) and anybody else's.
SELECT c.relname AS table_name, t.tgname AS name, t.tgenabled::text AS enabled,
       obj_description(t.oid, 'pg_trigger') AS stamp, p.proname AS function
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_proc p ON p.oid = t.tgfoid
 WHERE n.nspname = $1 AND NOT t.tgisinternal AND c.relname = ANY ($2::text[])

-- name: functions --
SELECT p.proname AS name, obj_description(p.oid, 'pg_proc') AS stamp,
       s.calls, s.total_time, s.self_time
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  LEFT JOIN pg_stat_user_functions s ON s.funcid = p.oid
 WHERE n.nspname = $1 AND p.proname LIKE 'selfology\_counters\_%'

-- name: enable_trigger_sql --
SELECT format('ALTER TABLE %I.%I ENABLE TRIGGER %I', $1::text, $2::text, $3::text)

-- name: lock_sessions --
SELECT id FROM @schema@.onboarding_sessions WHERE id = ANY ($1::bigint[]) ORDER BY id
   FOR NO KEY UPDATE

-- name: recount_sessions --
-- A statement of its own after the lock: its snapshot sees every answer committed before.
UPDATE @schema@.onboarding_sessions s
   SET questions_answered = c.actual
  FROM (SELECT s2.id, s2.questions_answered AS before,
               (SELECT count(*) FROM @schema@.user_answers_new a WHERE a.session_id = s2.id)::integer
                   AS actual
          FROM @schema@.onboarding_sessions s2 WHERE s2.id = ANY ($1::bigint[])) c
 WHERE s.id = c.id AND s.questions_answered IS DISTINCT FROM c.actual
RETURNING s.id AS key, c.before, c.actual AS after

-- name: create_user_stats --
-- Users with answers but no user_stats row. Created at zero, then recounted under the lock.
INSERT INTO @schema@.user_stats (user_id, total_answers_lifetime)
SELECT k, 0 FROM unnest($1::bigint[]) AS k ORDER BY k
ON CONFLICT (user_id) DO NOTHING
RETURNING user_id

-- name: lock_user_stats --
SELECT user_id FROM @schema@.user_stats WHERE user_id = ANY ($1::bigint[]) ORDER BY user_id
   FOR NO KEY UPDATE

-- name: recount_user_stats --
UPDATE @schema@.user_stats us
   SET total_answers_lifetime = c.actual,
       first_answer_at = COALESCE(us.first_answer_at, c.first_answer_at),
       updated_at = now()
  FROM (SELECT u.user_id, u.total_answers_lifetime AS before,
               (SELECT count(*) FROM @schema@.user_answers_new a WHERE a.user_id = u.user_id)::integer
                   AS actual,
               (SELECT min(answered_at) FROM @schema@.user_answers_new a WHERE a.user_id = u.user_id)
                   AS first_answer_at
          FROM @schema@.user_stats u WHERE u.user_id = ANY ($1::bigint[])) c
 WHERE us.user_id = c.user_id AND us.total_answers_lifetime IS DISTINCT FROM c.actual
RETURNING us.user_id AS key, c.before, c.actual AS after

-- name: lock_digital_personality --
SELECT user_id FROM @schema@.digital_personality WHERE user_id = ANY ($1::bigint[])
 ORDER BY user_id FOR NO KEY UPDATE

-- name: recount_digital_personality --
UPDATE @schema@.digital_personality dp
   SET total_answers_analyzed = c.actual, last_updated = now()
  FROM (SELECT d.user_id, d.total_answers_analyzed AS before,
               (SELECT count(*) FROM @schema@.user_answers_new a WHERE a.user_id = d.user_id)::integer
                   AS actual
          FROM @schema@.digital_personality d WHERE d.user_id = ANY ($1::bigint[])) c
 WHERE dp.user_id = c.user_id AND dp.total_answers_analyzed IS DISTINCT FROM c.actual
RETURNING dp.user_id AS key, c.before, c.actual AS after

-- name: settings --
SELECT version() AS version,
       current_setting('server_version_num')::integer AS version_num,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('track_functions') AS track_functions,
       current_database() AS database

-- name: answers_last_hour --
SELECT count(*) FROM @schema@.user_answers_new WHERE answered_at > now() - interval '1 hour'

-- name: lock_waiters --
-- Sessions waiting on a lock right now while holding or awaiting one on a counted table
-- (a writer blocked on a counter row holds a lock on the table it writes).
SELECT a.pid, a.wait_event, now() - a.query_start AS waiting_for, left(a.query, 200) AS query
  FROM pg_stat_activity a
 WHERE a.wait_event_type = 'Lock'
   AND EXISTS (SELECT 1 FROM pg_locks l
                 JOIN pg_class c ON c.oid = l.relation
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE l.pid = a.pid AND n.nspname = $1 AND c.relname = ANY ($2::text[]))

-- name: table_stats --
SELECT t.relname AS table_name,
       pg_total_relation_size(t.relid) AS total_bytes,
       t.n_live_tup AS live_tuples, t.n_dead_tup AS dead_tuples,
       t.n_tup_upd AS updates, t.n_tup_hot_upd AS hot_updates,
       t.last_autovacuum, t.last_vacuum
  FROM pg_stat_user_tables t
 WHERE t.schemaname = $1 AND t.relname = ANY ($2::text[])
 ORDER BY t.relname
