-- The counter trigger of the original bot's migration 007, rebuilt from its description for
-- `selfology-counters compare` only (installed into a scratch schema beside schema_v1.sql,
-- never into `selfology`). DO NOT USE: it loses counts, and that is what it is here to show.
--
-- As written in the original: AFTER INSERT, FOR EACH ROW; look up the user of the answer's
-- session; take a transaction-scoped advisory lock keyed on that user WITHOUT waiting
-- (pg_try_advisory_xact_lock); if the lock was free, increment all three counters; if another
-- transaction holds it (a concurrent answer of the same user), skip every increment silently.
-- The original's comment on that branch: "the counter will be updated by the next answer".
-- It will not: nothing ever adds the skipped answer back.
-- ${schema} is replaced by a quoted schema name (see sqlfiles.render).

CREATE FUNCTION ${schema}.update_all_answer_counters() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    answer_user_id bigint;
BEGIN
    SELECT s.user_id INTO answer_user_id
      FROM ${schema}.onboarding_sessions s WHERE s.id = NEW.session_id;

    IF pg_try_advisory_xact_lock(answer_user_id) THEN
        INSERT INTO ${schema}.user_stats AS us
               (user_id, total_answers_lifetime, first_answer_at, updated_at)
        VALUES (answer_user_id, 1, NEW.answered_at, now())
        ON CONFLICT (user_id) DO UPDATE
           SET total_answers_lifetime = us.total_answers_lifetime + 1,
               updated_at = now();

        UPDATE ${schema}.onboarding_sessions
           SET questions_answered = questions_answered + 1
         WHERE id = NEW.session_id;

        UPDATE ${schema}.digital_personality
           SET total_answers_analyzed = total_answers_analyzed + 1,
               last_updated = now()
         WHERE user_id = answer_user_id;
    END IF;
    -- else: the lock is held by another transaction of this user; nothing is counted.

    RETURN NEW;
END;
$$;

CREATE TRIGGER update_all_answer_counters_trigger
    AFTER INSERT ON ${schema}.user_answers_new
    FOR EACH ROW EXECUTE FUNCTION ${schema}.update_all_answer_counters();
