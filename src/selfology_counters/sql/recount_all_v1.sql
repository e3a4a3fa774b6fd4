-- Sets every counter to the exact count of answers. Run by the migration that installs the
-- counter triggers, in the same transaction, so no write slips between the count and the
-- triggers. Writes only the rows whose value is wrong.

UPDATE @schema@.onboarding_sessions s
   SET questions_answered = c.n
  FROM (SELECT s2.id, count(a.id)::integer AS n
          FROM @schema@.onboarding_sessions s2
          LEFT JOIN @schema@.user_answers_new a ON a.session_id = s2.id
         GROUP BY s2.id) c
 WHERE s.id = c.id AND s.questions_answered <> c.n;

INSERT INTO @schema@.user_stats AS us (user_id, total_answers_lifetime, first_answer_at, updated_at)
SELECT user_id, count(*)::integer, min(answered_at), now()
  FROM @schema@.user_answers_new GROUP BY user_id
ON CONFLICT (user_id) DO UPDATE
   SET total_answers_lifetime = EXCLUDED.total_answers_lifetime,
       first_answer_at = COALESCE(us.first_answer_at, EXCLUDED.first_answer_at),
       updated_at = EXCLUDED.updated_at
 WHERE us.total_answers_lifetime <> EXCLUDED.total_answers_lifetime;

UPDATE @schema@.user_stats us
   SET total_answers_lifetime = 0, updated_at = now()
 WHERE us.total_answers_lifetime <> 0
   AND NOT EXISTS (SELECT 1 FROM @schema@.user_answers_new a WHERE a.user_id = us.user_id);

UPDATE @schema@.digital_personality dp
   SET total_answers_analyzed = c.n, last_updated = now()
  FROM (SELECT d.user_id, count(a.id)::integer AS n
          FROM @schema@.digital_personality d
          LEFT JOIN @schema@.user_answers_new a ON a.user_id = d.user_id
         GROUP BY d.user_id) c
 WHERE dp.user_id = c.user_id AND dp.total_answers_analyzed <> c.n;
