-- Statements of OnboardingDAO. None of them touches a counter: the triggers do.
<%
    # Distributed (Citus): an INSERT names the session's user too ($5, the shard key), so
    # that Citus sends it to that user's shard. Citus refuses a row lock in INSERT ... SELECT,
    # so there the session is not locked ahead (an answer racing the session's completion
    # commits as if it came just before it).
    distributed = context.get("distributed", False)
    of_user = f" AND s.{model.SHARD_KEY} = $5" if distributed else ""
    lock = "" if distributed else "\n   FOR NO KEY UPDATE OF s"
%>
-- name: start_session --
INSERT INTO ${schema}.onboarding_sessions (user_id) VALUES ($1) RETURNING id

-- name: insert_answer --
-- One round trip: the session lookup that validates the session also supplies user_id.
-- FOR NO KEY UPDATE takes now the lock the counter trigger takes anyway (same order), and
-- makes a session completed or moved at this moment re-checked on its latest version.
INSERT INTO ${schema}.user_answers_new (session_id, user_id, question_json_id, raw_answer, answer_length)
SELECT s.id, s.user_id, $2, $3, $4
  FROM ${schema}.onboarding_sessions s
 WHERE s.id = $1${of_user} AND s.status = 'active'${lock}
RETURNING id

-- name: insert_answers --
INSERT INTO ${schema}.user_answers_new (session_id, user_id, question_json_id, raw_answer, answer_length)
SELECT s.id, s.user_id, a.question_json_id, a.raw_answer, a.answer_length
  FROM ${schema}.onboarding_sessions s,
       unnest($2::text[], $3::text[], $4::integer[]) WITH ORDINALITY
           AS a(question_json_id, raw_answer, answer_length, ord)
 WHERE s.id = $1${of_user} AND s.status = 'active'
 ORDER BY a.ord${lock}
RETURNING id

-- name: session_status --
SELECT status FROM ${schema}.onboarding_sessions WHERE id = $1

-- name: session_owner --
-- Distributed (Citus) only: the session's user, which never changes there.
SELECT ${model.SHARD_KEY} FROM ${schema}.onboarding_sessions WHERE id = $1

-- name: delete_answer --
DELETE FROM ${schema}.user_answers_new WHERE id = $1 RETURNING id

-- name: complete_session --
UPDATE ${schema}.onboarding_sessions
   SET status = 'completed', completed_at = now()
 WHERE id = $1 AND status = 'active'
RETURNING id

-- name: user_total_answers --
-- Exact in either counter mode (stored + pending, one snapshot); 0 for a user never seen.
SELECT ${schema}.${model.USER_STATS.reader}($1)

-- name: personality_count --
-- NULL when the user has no digital_personality row.
SELECT ${schema}.${model.PERSONALITY.reader}($1)

-- name: session_answers --
SELECT id, question_json_id, raw_answer, answer_length, answered_at
  FROM ${schema}.user_answers_new
 WHERE session_id = $1
 ORDER BY id
