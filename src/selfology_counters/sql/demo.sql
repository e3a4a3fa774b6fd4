-- name: counters_of_user --
-- The user's counters next to the truth, read from the consistency view (the one truth).
SELECT counter, key, stored, pending, actual
  FROM ${schema}.${model.VIEW["counter_consistency_check"].name}
 WHERE user_id = $1
