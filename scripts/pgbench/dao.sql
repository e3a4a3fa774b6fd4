-- One answer as OnboardingDAO.save_answer writes it: the session checked active and locked
-- in the same statement (its user_id read from the session).
\set n :lo + :client_id
INSERT INTO selfology.user_answers_new (session_id, user_id, question_json_id, raw_answer, answer_length)
SELECT s.id, s.user_id, 'q', 'a typical answer of about forty characters', 42
  FROM selfology.onboarding_sessions s WHERE s.id = :n AND s.status = 'active'
   FOR NO KEY UPDATE OF s;
