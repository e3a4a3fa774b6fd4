-- name: session_truth --
SELECT s.questions_answered,
       (SELECT count(*) FROM @schema@.user_answers_new a WHERE a.session_id = s.id) AS session_count,
       (SELECT count(*) FROM @schema@.user_answers_new a WHERE a.user_id = s.user_id) AS user_count
  FROM @schema@.onboarding_sessions s
 WHERE s.id = $1
