-- Deferred mode's calls (deferred.py). The work is in the functions of objects.sql.

-- name: set_mode --
SELECT ${schema}.${model.FUNCTION["set_mode"].name}($1)

-- name: fold --
-- No row: another worker holds the mode row, nothing was folded.
SELECT folded, now() - oldest_answered_at AS oldest_age
  FROM ${schema}.${model.FUNCTION["fold"].name}()
