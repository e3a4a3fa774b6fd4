-- selfology.counter_consistency_check: every counter next to the truth, one row per counter
-- and key, covering what the original view missed (sessions, users with answers but no
-- user_stats row). `check` reads it; people who prefer SQL can too:
--   SELECT * FROM selfology.counter_consistency_check WHERE status <> 'CONSISTENT';
-- Written so that a filter on user_id reaches the indexes on user_id (no full scan for one user).

CREATE VIEW @schema@.counter_consistency_check AS
SELECT c.counter, c.key, c.user_id, c.stored, c.actual,
       c.stored - c.actual AS drift,
       CASE WHEN NOT c.row_exists THEN 'MISSING_ROW'
            WHEN c.stored IS NULL THEN 'NULL_VALUE'  -- possible in an adopted schema
            WHEN c.stored < 0 THEN 'NEGATIVE'
            WHEN c.stored <> c.actual THEN 'INCONSISTENT'
            ELSE 'CONSISTENT' END AS status
  FROM (
WITH per_session AS (
    SELECT session_id, user_id, count(*)::bigint AS n
      FROM @schema@.user_answers_new
     GROUP BY session_id, user_id
), per_user AS NOT MATERIALIZED (  -- inlined twice, so a user_id filter reaches it
    SELECT user_id, count(*)::bigint AS n
      FROM @schema@.user_answers_new
     GROUP BY user_id
), users AS (
    SELECT user_id FROM @schema@.user_stats
    UNION
    SELECT user_id FROM @schema@.user_answers_new
)
SELECT 'onboarding_sessions.questions_answered'::text AS counter,
       s.id AS key, s.user_id,
       s.questions_answered::bigint AS stored,
       COALESCE(ps.n, 0) AS actual, true AS row_exists
  FROM @schema@.onboarding_sessions s
  LEFT JOIN per_session ps ON ps.session_id = s.id AND ps.user_id = s.user_id
UNION ALL
SELECT 'user_stats.total_answers_lifetime', u.user_id, u.user_id,
       us.total_answers_lifetime::bigint, COALESCE(pu.n, 0), us.user_id IS NOT NULL
  FROM users u
  LEFT JOIN @schema@.user_stats us ON us.user_id = u.user_id
  LEFT JOIN per_user pu ON pu.user_id = u.user_id
UNION ALL
SELECT 'digital_personality.total_answers_analyzed', dp.user_id, dp.user_id,
       dp.total_answers_analyzed::bigint, COALESCE(pu.n, 0), true
  FROM @schema@.digital_personality dp
  LEFT JOIN per_user pu ON pu.user_id = dp.user_id
) c;

COMMENT ON VIEW @schema@.counter_consistency_check IS '@digest@';
