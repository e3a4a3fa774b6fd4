-- One answer, the same INSERT into the bare table (same columns, indexes and foreign key, no counter). Each
-- client writes into a session of its own (lo + client_id), of user 1 (hot=1) or of its own.
\set n :lo + :client_id
\set u 1 + (1 - :hot) * :client_id
INSERT INTO selfology.bare_answers (session_id, user_id, question_json_id, raw_answer, answer_length)
VALUES (:n, :u, 'q', 'a typical answer of about forty characters', 42);
