-- Deferred mode's storm (issue 19): half inserts, a quarter deletes, a quarter moves between
-- the two sessions of the client's own user (sessions u and users + u).
\set u :client_id + 1
\set r random(1, 4)
\set s :u + random(0, 1) * :users
\set other :u + :users
\if :r <= 2
INSERT INTO selfology.user_answers_new (session_id, user_id, question_json_id, raw_answer, answer_length)
VALUES (:s, :u, 'q', 'a typical answer of about forty characters', 42);
\elif :r = 3
DELETE FROM selfology.user_answers_new
 WHERE id = (SELECT min(id) FROM selfology.user_answers_new WHERE user_id = :u);
\else
UPDATE selfology.user_answers_new
   SET session_id = CASE WHEN session_id = :u THEN :other::bigint ELSE :u::bigint END
 WHERE id = (SELECT max(id) FROM selfology.user_answers_new WHERE user_id = :u);
\endif
