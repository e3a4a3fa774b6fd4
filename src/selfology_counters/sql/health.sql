-- check, repair and stats. Counters: model.py; the truth: truth.sql, through the view
-- counter_consistency_check (objects.sql).
## v: the variant's pieces (variant_plain.sql or variant_citus.sql, as sqlfiles.render chose).
<%namespace name="v" file="${context['variant']}"/>

-- name: mode --
SELECT mode, horizon, switched_at, last_fold_at, last_fold_rows FROM ${schema}.${model.MODE_TABLE}

-- name: backlog --
-- Answers not folded yet, and how old the oldest is (deferred mode; none in immediate mode).
SELECT count(*) AS pending, now() - min(answered_at) AS oldest_age
  FROM ${schema}.${model.ANSWERS}
 WHERE ${v.is_pending()}

-- name: oldest_writer --
-- The oldest transaction of this database that has written anything, a session's or a
-- prepared one (two-phase commit, named by its gid): a fold cannot move the horizon past it
-- (its answers, if any, are not final yet). Other databases' transactions do not hold it
-- (objects.sql, local_horizon).
SELECT pid, database, state, age, gid FROM (
    SELECT pid, datname AS database, state, now() - xact_start AS age, NULL::text AS gid
      FROM pg_stat_activity
     WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND datname = current_database()
    UNION ALL
    SELECT NULL, database, 'prepared', now() - prepared, gid
      FROM pg_prepared_xacts WHERE database = current_database()) w
 ORDER BY age DESC NULLS LAST
 LIMIT 1

## Answers that no counter rule can place, of every user or (``users``, a parameter) of some.
## On Citus a session is found by its id and its user (v.answers_with_another_user says what
## that means for the second column).
<%def name="integrity(users=None)">
SELECT (SELECT count(*) FROM ${schema}.${model.ANSWERS} a
         WHERE ${f"a.user_id = ANY ({users}) AND " if users else ""}NOT EXISTS (SELECT 1 FROM ${schema}.${model.SESSIONS.table} s
                            WHERE s.${model.SESSIONS.key} = a.${model.SESSIONS.source}${v.same_shard("s", f"a.{model.SHARD_KEY}")}))
           AS answers_without_session,
${v.answers_with_another_user(users)}
</%def>
-- name: integrity --
-- Answers that no counter rule can place: with no session, or with another user than their
-- session's (possible only while the foreign key is disabled, deferred or dropped).
${integrity()}

-- name: integrity_users --
${integrity("$1::bigint[]")}

## check_all and check_users stay two statements (not `$1 IS NULL OR user_id = ANY ($1)`) so
## that a prepared check_users always plans with the user filter, which reaches the user_id
## indexes.
<%def name="issues_by_counter(where)">
SELECT counter, count(*) AS checked,
       COALESCE(jsonb_agg(jsonb_build_object(
           'key', key, 'user_id', user_id, 'stored', stored, 'pending', pending,
           'actual', actual, 'status', status)
           ORDER BY abs(COALESCE(drift, actual)) DESC, key)
         FILTER (WHERE status <> 'CONSISTENT'), '[]') AS issues
  FROM ${schema}.counter_consistency_check${where}
 GROUP BY counter
</%def>
-- name: check_all --
${issues_by_counter("")}

-- name: check_users --
${issues_by_counter(" WHERE user_id = ANY ($1::bigint[])")}

<%namespace name="truth" file="truth.sql"/>
## Repair, per counter of the model, in its lock order: the mode row first (FOR SHARE: no
## fold moves the horizon meanwhile), then the batch's rows (keys ascending), then a recount
## from the one truth (truth.sql) in a statement of its own, so its snapshot sees every answer
## committed before the locks were granted. The stored value holds the answers below the
## horizon (all of them in immediate mode).

## On Citus a batch is one user's keys ($2, the shard key), so that Citus sends the lock and
## the recount to that user's shard (it refuses a row lock across shards).
<%def name="by_user(alias=None)">${v.same_shard(alias, "$2")}</%def>
-- name: lock_answers_as_a_switch --
-- The lock a switch of mode takes first (objects.sql, set_mode): held, no switch runs.
LOCK TABLE ${schema}.${model.ANSWERS} IN SHARE ROW EXCLUSIVE MODE

<%def name="mark_counting_head()">-- This transaction's counter writes are ours (the keep triggers, objects.sql, let them
-- through); undone at its end.</%def>
-- name: mark_counting --
${mark_counting_head()}
SELECT set_config('${model.COUNTING_MARK}', 'on', true)

-- name: mark_counting_distributed --
${mark_counting_head()}
-- Distributed (Citus): the keep triggers fire on the shards, in the workers' sessions. Told
-- to, Citus sends the SET LOCAL commands that follow in this transaction to every node it
-- runs on, the ones it opens later included; the mark is one. Needs a transaction block (two
-- statements: sent without arguments, as one simple query).
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL ${model.COUNTING_MARK} = 'on'

-- name: lock_mode --
SELECT horizon FROM ${schema}.${model.MODE_TABLE} FOR SHARE

% for c in model.COUNTERS:
-- name: lock_${c.short} --
SELECT ${c.key} FROM ${schema}.${c.table} WHERE ${c.key} = ANY ($1::bigint[])${by_user()} ORDER BY ${c.key}
   FOR NO KEY UPDATE

-- name: recount_${c.short} --
UPDATE ${schema}.${c.table} t
   SET ${c.column} = r.actual${f", {c.touched} = now()" if c.touched else ""}
  FROM (SELECT t.${c.key} AS key, t.${c.column} AS before, ${truth.folded_of(c, "t")}::integer AS actual
          FROM ${schema}.${c.table} t WHERE t.${c.key} = ANY ($1::bigint[])${by_user("t")}) r
 WHERE t.${c.key} = r.key${by_user("t")} AND t.${c.column} IS DISTINCT FROM r.actual
RETURNING t.${c.key} AS key, r.before, r.actual AS after

%   if c.created_by_answers:
-- name: create_missing_${c.short} --
-- Keys with answers but no row. Created at zero, then recounted under the lock.
INSERT INTO ${schema}.${c.table} (${c.key}, ${c.column})
SELECT k, 0 FROM unnest($1::bigint[]) AS k ORDER BY k
ON CONFLICT (${c.key}) DO NOTHING
RETURNING ${c.key} AS key

%   endif
% endfor
-- name: settings --
SELECT version() AS version,
       current_setting('server_version_num')::integer AS version_num,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('track_functions') AS track_functions,
       current_database() AS database

-- name: answers_last_hour --
SELECT count(*) FROM ${schema}.${model.ANSWERS} WHERE answered_at > now() - interval '1 hour'

## Whether backend ``pid`` holds or awaits a lock on a counted table ($1 schema, $2 tables)
## of this database (a relation's oid alone may name a table of another database).
<%def name="locks_a_counted_table(pid)">EXISTS (SELECT 1 FROM pg_locks l
                 JOIN pg_class c ON c.oid = l.relation
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE l.pid = ${pid}
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND n.nspname = $1 AND c.relname = ANY ($2::text[]))</%def>
-- name: lock_waiters --
-- Sessions waiting on a lock right now while holding or awaiting one on a counted table
-- (a writer blocked on a counter row holds a lock on the table it writes). In this database
-- only: a relation's oid means another table in another database.
SELECT a.pid, a.wait_event, now() - a.query_start AS waiting_for, left(a.query, 200) AS query
  FROM pg_stat_activity a
 WHERE a.wait_event_type = 'Lock' AND a.datname = current_database()
   AND ${locks_a_counted_table("a.pid")}

-- name: table_stats --
SELECT t.relname AS table_name,
       pg_total_relation_size(t.relid) AS total_bytes,
       t.n_live_tup AS live_tuples, t.n_dead_tup AS dead_tuples,
       t.n_tup_upd AS updates, t.n_tup_hot_upd AS hot_updates,
       t.last_autovacuum, t.last_vacuum
  FROM pg_stat_user_tables t
 WHERE t.schemaname = $1 AND t.relname = ANY ($2::text[])
 ORDER BY t.relname

-- name: function_calls --
-- Per-function calls and time; rows only where track_functions collected some.
SELECT p.proname AS name, s.calls, s.total_time, s.self_time
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_stat_user_functions s ON s.funcid = p.oid
 WHERE n.nspname = $1 AND p.proname = ANY ($2::text[])
