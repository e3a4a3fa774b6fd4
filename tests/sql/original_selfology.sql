-- The original Selfology database as its own Alembic history left it (see NOTES.md): integer
-- ids, no user_id in the answers, migration 007's row trigger with its advisory try-lock, the
-- original consistency view, and the bot's alembic_version row. Used by the adoption tests.

CREATE SCHEMA selfology;

CREATE TABLE selfology.onboarding_sessions (
    id serial PRIMARY KEY,
    user_id integer NOT NULL,
    status varchar(20) NOT NULL DEFAULT 'active',
    questions_answered integer DEFAULT 0,
    started_at timestamp DEFAULT now(),
    completed_at timestamp
);
-- 007: "index on onboarding_sessions(id, user_id)"
CREATE INDEX idx_onboarding_sessions_id_user ON selfology.onboarding_sessions (id, user_id);

CREATE TABLE selfology.user_answers_new (
    id serial PRIMARY KEY,
    session_id integer NOT NULL REFERENCES selfology.onboarding_sessions (id),
    question_json_id varchar(50) NOT NULL,
    raw_answer text NOT NULL,
    answer_length integer,
    answered_at timestamp DEFAULT now(),
    analysis_status varchar(20) DEFAULT 'pending'   -- a column of the bot's we never use
);
CREATE INDEX idx_user_answers_session ON selfology.user_answers_new (session_id);

CREATE TABLE selfology.user_stats (
    user_id integer PRIMARY KEY,
    total_answers_lifetime integer DEFAULT 0 CHECK (total_answers_lifetime >= 0),
    first_answer_at timestamp,
    updated_at timestamp DEFAULT now()
);

CREATE TABLE selfology.digital_personality (
    id serial PRIMARY KEY,
    user_id integer UNIQUE NOT NULL,
    total_answers_analyzed integer DEFAULT 0 CHECK (total_answers_analyzed >= 0),
    traits jsonb DEFAULT '{}',
    last_updated timestamp DEFAULT now()
);

-- Migration 007, as written: silently skips every counter when the try-lock is taken.
CREATE FUNCTION selfology.update_all_answer_counters() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_user_id integer;
BEGIN
    SELECT user_id INTO v_user_id FROM selfology.onboarding_sessions WHERE id = NEW.session_id;
    IF pg_try_advisory_xact_lock(v_user_id) THEN
        INSERT INTO selfology.user_stats (user_id, total_answers_lifetime, first_answer_at, updated_at)
        VALUES (v_user_id, 1, now(), now())
        ON CONFLICT (user_id) DO UPDATE
           SET total_answers_lifetime = selfology.user_stats.total_answers_lifetime + 1,
               updated_at = now();
        UPDATE selfology.onboarding_sessions SET questions_answered = questions_answered + 1
         WHERE id = NEW.session_id;
        UPDATE selfology.digital_personality SET total_answers_analyzed = total_answers_analyzed + 1,
               last_updated = now()
         WHERE user_id = v_user_id;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER update_all_answer_counters_trigger
    AFTER INSERT ON selfology.user_answers_new
    FOR EACH ROW EXECUTE FUNCTION selfology.update_all_answer_counters();

CREATE VIEW selfology.counter_consistency_check AS
SELECT us.user_id,
       us.total_answers_lifetime AS stats_count,
       (SELECT count(*) FROM selfology.user_answers_new a
          JOIN selfology.onboarding_sessions s ON s.id = a.session_id
         WHERE s.user_id = us.user_id) AS actual_count,
       dp.total_answers_analyzed AS personality_count,
       CASE WHEN us.total_answers_lifetime = (SELECT count(*) FROM selfology.user_answers_new a
                 JOIN selfology.onboarding_sessions s ON s.id = a.session_id
                WHERE s.user_id = us.user_id)
            THEN 'CONSISTENT' ELSE 'INCONSISTENT' END AS status
  FROM selfology.user_stats us
  LEFT JOIN selfology.digital_personality dp ON dp.user_id = us.user_id;

CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO public.alembic_version VALUES ('007');
