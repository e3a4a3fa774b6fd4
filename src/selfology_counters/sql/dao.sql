-- Statements of OnboardingDAO. None of them touches a counter: the triggers do.
<%namespace name="truth" file="truth.sql"/>
-- name: start_session --
INSERT INTO ${schema}.${model.SESSIONS.table} (user_id) VALUES ($1) RETURNING id

-- name: insert_answer --
-- One round trip: the session lookup that validates the session also supplies user_id.
-- FOR NO KEY UPDATE takes now the lock the counter trigger takes anyway (same order), and
-- makes a session completed or moved at this moment re-checked on its latest version.
INSERT INTO ${schema}.${model.ANSWERS} (session_id, user_id, question_json_id, raw_answer, answer_length)
SELECT s.id, s.user_id, $2, $3, $4
  FROM ${schema}.${model.SESSIONS.table} s
 WHERE s.id = $1 AND s.status = 'active'
   FOR NO KEY UPDATE OF s
RETURNING id

## The distributed (Citus) variants, selected by the bound context (sqlfiles.query). Citus
## sends an INSERT ... SELECT with bind parameters to every shard (and through the
## coordinator), so there the inserts are plain VALUES naming the session's user ($5, the
## shard key), each preceded in its transaction by lock_session: both go to that user's shard
## alone.
-- name: insert_answer_distributed --
INSERT INTO ${schema}.${model.ANSWERS} (session_id, user_id, question_json_id, raw_answer, answer_length)
VALUES ($1, $5, $2, $3, $4)
RETURNING id

-- name: insert_answers --
INSERT INTO ${schema}.${model.ANSWERS} (session_id, user_id, question_json_id, raw_answer, answer_length)
SELECT s.id, s.user_id, a.question_json_id, a.raw_answer, a.answer_length
  FROM ${schema}.${model.SESSIONS.table} s,
       unnest($2::text[], $3::text[], $4::integer[]) WITH ORDINALITY
           AS a(question_json_id, raw_answer, answer_length, ord)
 WHERE s.id = $1 AND s.status = 'active'
 ORDER BY a.ord
   FOR NO KEY UPDATE OF s
RETURNING id

-- name: insert_answers_distributed --
INSERT INTO ${schema}.${model.ANSWERS} (session_id, user_id, question_json_id, raw_answer, answer_length)
SELECT $1, $5, a.question_json_id, a.raw_answer, a.answer_length
  FROM unnest($2::text[], $3::text[], $4::integer[]) WITH ORDINALITY
           AS a(question_json_id, raw_answer, answer_length, ord)
 ORDER BY a.ord
RETURNING id

-- name: lock_session --
-- Distributed (Citus) only, in the insert's transaction: the lock the plain INSERT takes.
SELECT status FROM ${schema}.${model.SESSIONS.table}
 WHERE id = $1 AND ${model.SHARD_KEY} = $2
   FOR NO KEY UPDATE

-- name: session_status --
SELECT status FROM ${schema}.${model.SESSIONS.table} WHERE id = $1

-- name: session_owner --
-- Distributed (Citus) only: the session's user, which never changes there.
SELECT ${model.SHARD_KEY} FROM ${schema}.${model.SESSIONS.table} WHERE id = $1

-- name: delete_answer --
DELETE FROM ${schema}.${model.ANSWERS} WHERE id = $1 RETURNING id

-- name: complete_session --
UPDATE ${schema}.${model.SESSIONS.table}
   SET status = 'completed', completed_at = now()
 WHERE id = $1 AND status = 'active'
RETURNING id

-- name: user_total_answers --
-- Exact in either counter mode (stored + pending, one snapshot); 0 for a user never seen.
-- The expression of the public reader function, not a call of it: a prepared statement
-- skips the PL/pgSQL call, a few microseconds of a read that costs a few tens.
SELECT ${truth.exact_of(model.USER_STATS, "$1")}

-- name: personality_count --
-- NULL when the user has no digital_personality row.
SELECT ${truth.exact_of(model.PERSONALITY, "$1")}

-- name: session_answer_count --
-- NULL when there is no such session. On Citus $2 is the session's user (the shard key).
SELECT ${truth.exact_of(model.SESSIONS, "$1")}

-- name: session_answer_count_distributed --
-- NULL when there is no such session. On Citus $2 is the session's user (the shard key).
SELECT ${truth.exact_of(model.SESSIONS, "$1", "$2")}

-- name: create_personality --
-- Only the key: the counter starts at the user's true count by itself (the BEFORE INSERT
-- trigger init_personality), and every other column of the bot's table has a default. A row
-- that exists is left as it is.
INSERT INTO ${schema}.${model.PERSONALITY.table} (${model.PERSONALITY.key}) VALUES ($1)
ON CONFLICT (${model.PERSONALITY.key}) DO NOTHING
RETURNING ${model.PERSONALITY.key}

-- name: session_answers --
SELECT id, question_json_id, raw_answer, answer_length, answered_at
  FROM ${schema}.${model.ANSWERS}
 WHERE session_id = $1
 ORDER BY id
