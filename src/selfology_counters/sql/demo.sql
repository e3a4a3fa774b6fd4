-- name: counters_of_user --
-- The user's counters next to the truth, read from the consistency view (the one truth).
SELECT counter, key, stored, pending, actual
  FROM ${schema}.${model.VIEW["counter_consistency_check"].name}
 WHERE user_id = $1

-- name: answers_of_user --
-- COUNT(*) of the user's answers: in deferred mode, before the first fold, the user has no
-- user_stats row yet and so no row in the view.
SELECT count(*) FROM ${schema}.${model.ANSWERS} WHERE ${model.USER_STATS.source} = $1
