-- Deferred mode's calls (deferred.py). The work is in the functions of objects.sql.

-- name: set_mode --
SELECT ${schema}.${model.FUNCTION["set_mode"].name}($1)

-- name: fold --
-- No row: another worker holds the mode row, nothing was folded.
SELECT folded, now() - oldest_answered_at AS oldest_age
  FROM ${schema}.${model.FUNCTION["fold"].name}()

## Citus: the fold, shard by shard (deferred.fold_once). Each statement is its own transaction
## on one node; none spans shards.
<% turn = f"'{schema}.{model.MODE_TABLE}'::regclass::oid::bigint" %>
-- name: fold_turn --
-- Workers take turns (a second one finds the fold busy); a switch of mode waits for the turn
-- (objects.sql, set_mode). A session lock: released when the worker's connection ends.
SELECT pg_try_advisory_lock(${turn})

-- name: fold_turn_end --
SELECT pg_advisory_unlock(${turn})

-- name: pending_users_by_shard --
-- The users with pending answers, grouped by the shard that holds them.
SELECT get_shard_id_for_distribution_column('${schema}.${model.ANSWERS}', d.u) AS shard,
       array_agg(d.u ORDER BY d.u) AS users
  FROM (SELECT DISTINCT ${model.SHARD_KEY} AS u FROM ${schema}.${model.ANSWERS}
         WHERE ${model.PENDING}) d
 GROUP BY 1
 ORDER BY 1

-- name: fold_users --
-- One shard's users ($1, all on that shard): Citus routes the statement to that shard alone,
-- with the locks its own writes take (a shard being moved waits, or is written where it now
-- lives). The update trigger there adds every answer whose mark it clears to the co-located
-- counters, in this statement's transaction. An answer whose transaction is still running
-- is invisible here and stays pending; a DELETE or move of an answer waits for this row
-- lock, or this statement for theirs.
WITH f AS (UPDATE ${schema}.${model.ANSWERS} SET ${model.PENDING} = false
            WHERE ${model.SHARD_KEY} = ANY ($1::bigint[]) AND ${model.PENDING}
           RETURNING answered_at)
SELECT count(*) AS folded, now() - min(answered_at) AS oldest_age FROM f

-- name: fold_recorded --
UPDATE ${schema}.${model.MODE_TABLE} SET last_fold_at = now(), last_fold_rows = $1
