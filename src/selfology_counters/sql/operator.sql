-- Questions the operator's commands ask besides the consistency check itself.

-- name: user_presence --
-- Whether the user exists for the counters at all: answers, sessions and counter rows.
SELECT (SELECT count(*) FROM ${schema}.${model.ANSWERS} WHERE user_id = $1) AS answers,
       (SELECT count(*) FROM ${schema}.${model.SESSIONS.table} WHERE user_id = $1) AS sessions,
       (SELECT count(*) FROM ${schema}.${model.USER_STATS.table}
         WHERE ${model.USER_STATS.key} = $1) AS user_stats_rows,
       (SELECT count(*) FROM ${schema}.${model.PERSONALITY.table}
         WHERE ${model.PERSONALITY.key} = $1) AS personality_rows
