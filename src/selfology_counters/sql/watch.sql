<%namespace name="health" file="health.sql"/>
-- What `watch` reads besides check (health.sql): where its quick check starts, and lock waits.

-- name: last_answer_id --
SELECT COALESCE(max(id), 0) AS last_id FROM ${schema}.${model.ANSWERS}

-- name: answers_since --
-- The users with answers above a watermark (an id the quick check saw before), through the
-- primary key; and the highest id now (NULL when there is none above it).
SELECT max(id) AS last_id, COALESCE(array_agg(DISTINCT user_id), '{}') AS user_ids
  FROM ${schema}.${model.ANSWERS}
 WHERE id > $1

-- name: lock_waits --
-- Sessions of this database waiting for a lock while they hold or await one on a counted
-- table (a writer blocked on a counter row holds a lock on the table it writes), and how long
-- the longest has been waiting. A session waits for one lock at a time; waitstart is NULL for
-- a moment after the wait began.
SELECT count(*)::integer AS waiters,
       COALESCE(extract(epoch FROM max(now() - COALESCE(w.waitstart, now()))), 0)::float8
           AS longest_seconds
  FROM pg_locks w
 WHERE NOT w.granted AND w.pid <> pg_backend_pid()
   AND ${health.locks_a_counted_table("w.pid")}
