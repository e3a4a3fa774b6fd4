-- Counter functions and triggers, version 1. See docs/COUNTER_ARCHITECTURE.md.
--
-- The three counters and what they count:
--   onboarding_sessions.questions_answered     answers with that session_id
--   user_stats.total_answers_lifetime           answers with that user_id
--   digital_personality.total_answers_analyzed  answers with that user_id (row kept only if it exists)
--
-- Every change to user_answers_new is folded into the counters by one statement-level trigger
-- per operation, in the same transaction, with one counter write per affected key and
-- statement. Locks are always taken in one order: onboarding_sessions, then user_stats, then
-- digital_personality, keys ascending. Keys whose net change is zero are left alone.
-- @schema@ is replaced by a quoted schema name (see sqlfiles.render).
-- Re-runnable: `migrate` runs it again to reinstall a trigger that was dropped or edited.

-- Applies per-key deltas. The arrays are sorted by key, with no zero delta. The single-key
-- case (one answer, or one session of one user) is the hot path and needs no explicit lock
-- ordering; several keys are locked in ascending order first, so that two statements touching
-- the same keys can never deadlock on the counters.
CREATE OR REPLACE FUNCTION @schema@.selfology_counters_apply_v1(
    session_ids bigint[], session_deltas integer[], user_ids bigint[], user_deltas integer[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    updated_ids bigint[];
BEGIN
    IF cardinality(session_ids) = 1 THEN
        UPDATE @schema@.onboarding_sessions
           SET questions_answered = GREATEST(questions_answered + session_deltas[1], 0)
         WHERE id = session_ids[1];
    ELSIF cardinality(session_ids) > 1 THEN
        PERFORM 1 FROM @schema@.onboarding_sessions
          WHERE id = ANY (session_ids) ORDER BY id FOR NO KEY UPDATE;
        UPDATE @schema@.onboarding_sessions s
           SET questions_answered = GREATEST(s.questions_answered + d.delta, 0)
          FROM unnest(session_ids, session_deltas) AS d(id, delta)
         WHERE s.id = d.id;
    END IF;

    IF cardinality(user_ids) = 1 THEN
        IF user_deltas[1] > 0 THEN
            -- UPDATE first: the row exists for every answer but a user's first, and a plain
            -- UPDATE is cheaper than a speculative insertion. The INSERT below catches the
            -- first answer, and a row another transaction creates meanwhile (ON CONFLICT).
            UPDATE @schema@.user_stats
               SET total_answers_lifetime = total_answers_lifetime + user_deltas[1],
                   first_answer_at = COALESCE(first_answer_at, now()),
                   updated_at = now()
             WHERE user_id = user_ids[1];
            IF NOT FOUND THEN
                INSERT INTO @schema@.user_stats AS us
                       (user_id, total_answers_lifetime, first_answer_at, updated_at)
                VALUES (user_ids[1], user_deltas[1], now(), now())
                ON CONFLICT (user_id) DO UPDATE
                   SET total_answers_lifetime = us.total_answers_lifetime + EXCLUDED.total_answers_lifetime,
                       first_answer_at = COALESCE(us.first_answer_at, EXCLUDED.first_answer_at),
                       updated_at = EXCLUDED.updated_at;
            END IF;
        ELSE
            UPDATE @schema@.user_stats
               SET total_answers_lifetime = GREATEST(total_answers_lifetime + user_deltas[1], 0),
                   updated_at = now()
             WHERE user_id = user_ids[1];
        END IF;
        UPDATE @schema@.digital_personality
           SET total_answers_analyzed = GREATEST(total_answers_analyzed + user_deltas[1], 0),
               last_updated = now()
         WHERE user_id = user_ids[1];
    ELSIF cardinality(user_ids) > 1 THEN
        PERFORM 1 FROM @schema@.user_stats
          WHERE user_id = ANY (user_ids) ORDER BY user_id FOR NO KEY UPDATE;
        WITH updated AS (
            UPDATE @schema@.user_stats us
               SET total_answers_lifetime = GREATEST(us.total_answers_lifetime + d.delta, 0),
                   first_answer_at = CASE WHEN d.delta > 0
                                          THEN COALESCE(us.first_answer_at, now())
                                          ELSE us.first_answer_at END,
                   updated_at = now()
              FROM unnest(user_ids, user_deltas) AS d(user_id, delta)
             WHERE us.user_id = d.user_id
            RETURNING us.user_id)
        SELECT array_agg(user_id) INTO updated_ids FROM updated;
        -- Users gaining their first row: exactly those the UPDATE did not reach. A row that
        -- another transaction created meanwhile (committed or not) is caught by ON CONFLICT;
        -- filtering with NOT EXISTS instead would miss one committed between the two
        -- statements and lose its count.
        INSERT INTO @schema@.user_stats AS us
               (user_id, total_answers_lifetime, first_answer_at, updated_at)
        SELECT d.user_id, d.delta, now(), now()
          FROM unnest(user_ids, user_deltas) AS d(user_id, delta)
         WHERE d.delta > 0
           AND NOT EXISTS (SELECT 1 FROM unnest(updated_ids) AS x(user_id) WHERE x.user_id = d.user_id)
         ORDER BY d.user_id
        ON CONFLICT (user_id) DO UPDATE
           SET total_answers_lifetime = us.total_answers_lifetime + EXCLUDED.total_answers_lifetime,
               first_answer_at = COALESCE(us.first_answer_at, EXCLUDED.first_answer_at),
               updated_at = EXCLUDED.updated_at;
        PERFORM 1 FROM @schema@.digital_personality
          WHERE user_id = ANY (user_ids) ORDER BY user_id FOR NO KEY UPDATE;
        UPDATE @schema@.digital_personality dp
           SET total_answers_analyzed = GREATEST(dp.total_answers_analyzed + d.delta, 0),
               last_updated = now()
          FROM unnest(user_ids, user_deltas) AS d(user_id, delta)
         WHERE dp.user_id = d.user_id;
    END IF;
END;
$$;

-- AFTER INSERT, once per statement: every new answer counts +1 for its session and its user.
CREATE OR REPLACE FUNCTION @schema@.selfology_counters_on_insert_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n integer; s_lo bigint; s_hi bigint; u_lo bigint; u_hi bigint;
    s_ids bigint[]; s_deltas integer[]; u_ids bigint[]; u_deltas integer[];
BEGIN
    SELECT count(*), min(session_id), max(session_id), min(user_id), max(user_id)
      INTO n, s_lo, s_hi, u_lo, u_hi FROM new_answers;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF s_lo = s_hi THEN
        -- One session, hence one user: every answer the DAO or the bot writes. Inlined (the
        -- same statements as the single-key path of apply_v1, for a positive delta) because
        -- the nested call cost about 15 us per INSERT, measured with pgbench.
        UPDATE @schema@.onboarding_sessions
           SET questions_answered = questions_answered + n
         WHERE id = s_lo;
        UPDATE @schema@.user_stats
           SET total_answers_lifetime = total_answers_lifetime + n,
               first_answer_at = COALESCE(first_answer_at, now()),
               updated_at = now()
         WHERE user_id = u_lo;
        IF NOT FOUND THEN
            INSERT INTO @schema@.user_stats AS us
                   (user_id, total_answers_lifetime, first_answer_at, updated_at)
            VALUES (u_lo, n, now(), now())
            ON CONFLICT (user_id) DO UPDATE
               SET total_answers_lifetime = us.total_answers_lifetime + EXCLUDED.total_answers_lifetime,
                   first_answer_at = COALESCE(us.first_answer_at, EXCLUDED.first_answer_at),
                   updated_at = EXCLUDED.updated_at;
        END IF;
        UPDATE @schema@.digital_personality
           SET total_answers_analyzed = total_answers_analyzed + n, last_updated = now()
         WHERE user_id = u_lo;
        RETURN NULL;
    END IF;
    SELECT array_agg(k ORDER BY k), array_agg(d ORDER BY k) INTO s_ids, s_deltas
      FROM (SELECT session_id AS k, count(*)::integer AS d FROM new_answers GROUP BY 1) x;
    SELECT array_agg(k ORDER BY k), array_agg(d ORDER BY k) INTO u_ids, u_deltas
      FROM (SELECT user_id AS k, count(*)::integer AS d FROM new_answers GROUP BY 1) x;
    PERFORM @schema@.selfology_counters_apply_v1(s_ids, s_deltas, u_ids, u_deltas);
    RETURN NULL;
END;
$$;

-- AFTER DELETE, once per statement (also for the cascade of a deleted session): -1 each.
CREATE OR REPLACE FUNCTION @schema@.selfology_counters_on_delete_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    s_ids bigint[]; s_deltas integer[]; u_ids bigint[]; u_deltas integer[];
BEGIN
    SELECT array_agg(k ORDER BY k), array_agg(d ORDER BY k) INTO s_ids, s_deltas
      FROM (SELECT session_id AS k, -count(*)::integer AS d FROM old_answers GROUP BY 1) x;
    IF s_ids IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(k ORDER BY k), array_agg(d ORDER BY k) INTO u_ids, u_deltas
      FROM (SELECT user_id AS k, -count(*)::integer AS d FROM old_answers GROUP BY 1) x;
    PERFORM @schema@.selfology_counters_apply_v1(s_ids, s_deltas, u_ids, u_deltas);
    RETURN NULL;
END;
$$;

-- AFTER UPDATE, once per statement: an answer that changed session or user moves its count.
-- Transition tables cannot be combined with a column list, so this fires for every UPDATE;
-- an UPDATE that moves nothing finds no non-zero delta and writes (and locks) nothing.
CREATE OR REPLACE FUNCTION @schema@.selfology_counters_on_update_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    s_ids bigint[]; s_deltas integer[]; u_ids bigint[]; u_deltas integer[];
BEGIN
    SELECT array_agg(k ORDER BY k), array_agg(d ORDER BY k) INTO s_ids, s_deltas
      FROM (SELECT k, sum(d)::integer AS d
              FROM (SELECT session_id AS k, 1 AS d FROM new_answers
                    UNION ALL
                    SELECT session_id, -1 FROM old_answers) moved
             GROUP BY k HAVING sum(d) <> 0) x;
    SELECT array_agg(k ORDER BY k), array_agg(d ORDER BY k) INTO u_ids, u_deltas
      FROM (SELECT k, sum(d)::integer AS d
              FROM (SELECT user_id AS k, 1 AS d FROM new_answers
                    UNION ALL
                    SELECT user_id, -1 FROM old_answers) moved
             GROUP BY k HAVING sum(d) <> 0) x;
    IF s_ids IS NULL AND u_ids IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM @schema@.selfology_counters_apply_v1(
        COALESCE(s_ids, '{}'), COALESCE(s_deltas, '{}'),
        COALESCE(u_ids, '{}'), COALESCE(u_deltas, '{}'));
    RETURN NULL;
END;
$$;

-- AFTER TRUNCATE: no answers are left, so every counter is zero. TRUNCATE holds an ACCESS
-- EXCLUSIVE lock on the answers, so no answer trigger holds counter locks at the same time.
CREATE OR REPLACE FUNCTION @schema@.selfology_counters_on_truncate_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- TRUNCATE removes every answer whatever the snapshot, but under REPEATABLE READ the
    -- UPDATEs below would only reach counter rows that snapshot sees; rows created since
    -- would keep their counts. Refuse rather than leave them wrong.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'TRUNCATE of user_answers_new needs READ COMMITTED (this transaction is %)',
              current_setting('transaction_isolation')
              USING ERRCODE = 'feature_not_supported';
    END IF;
    UPDATE @schema@.onboarding_sessions SET questions_answered = 0 WHERE questions_answered <> 0;
    UPDATE @schema@.user_stats SET total_answers_lifetime = 0, updated_at = now()
     WHERE total_answers_lifetime <> 0;
    UPDATE @schema@.digital_personality SET total_answers_analyzed = 0, last_updated = now()
     WHERE total_answers_analyzed <> 0;
    RETURN NULL;
END;
$$;

-- BEFORE INSERT/UPDATE of an answer: fill in what the bot's INSERT omits (user_id from the
-- session, answer_length from the text), and follow a session change to the session's user.
-- Only runs when its WHEN clause says there is something to fill, so the DAO, which supplies
-- both columns, never pays for it.
CREATE OR REPLACE FUNCTION @schema@.selfology_counters_fill_answer_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_id IS NULL OR (TG_OP = 'UPDATE' AND NEW.session_id IS DISTINCT FROM OLD.session_id
                                AND NEW.user_id IS NOT DISTINCT FROM OLD.user_id) THEN
        -- FOR KEY SHARE: if the session is moving to another user right now, wait for that
        -- and read the new user, or the foreign key check would see a stale pair and fail.
        SELECT s.user_id INTO NEW.user_id
          FROM @schema@.onboarding_sessions s WHERE s.id = NEW.session_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'onboarding session % does not exist', NEW.session_id
                  USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    IF NEW.answer_length IS NULL OR (TG_OP = 'UPDATE' AND NEW.raw_answer IS DISTINCT FROM OLD.raw_answer
                                      AND NEW.answer_length IS NOT DISTINCT FROM OLD.answer_length) THEN
        NEW.answer_length := char_length(NEW.raw_answer);
    END IF;
    RETURN NEW;
END;
$$;

-- BEFORE INSERT (or change of user) of a digital_personality row: start at the user's true
-- count. The user_stats row is locked first (created at zero if the user has no answers yet),
-- which serialises this count with every answer trigger of the same user: an answer committed
-- before is counted here, an answer committed after increments the new row.
CREATE OR REPLACE FUNCTION @schema@.selfology_counters_init_personality_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO @schema@.user_stats AS us (user_id, total_answers_lifetime)
    VALUES (NEW.user_id, 0)
    ON CONFLICT (user_id) DO UPDATE SET updated_at = us.updated_at;
    SELECT count(*) INTO NEW.total_answers_analyzed
      FROM @schema@.user_answers_new WHERE user_id = NEW.user_id;
    NEW.last_updated := now();
    RETURN NEW;
END;
$$;

-- A session's id is the key its answers and counter point at; changing it would carry the
-- count to the new id twice (once on the row, once through the cascaded answers).
CREATE OR REPLACE FUNCTION @schema@.selfology_counters_freeze_session_id_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'onboarding_sessions.id cannot change (% -> %)', OLD.id, NEW.id
          USING ERRCODE = 'restrict_violation';
END;
$$;

DROP TRIGGER IF EXISTS selfology_counters_fill_insert_v1 ON @schema@.user_answers_new;
CREATE TRIGGER selfology_counters_fill_insert_v1
    BEFORE INSERT ON @schema@.user_answers_new
    FOR EACH ROW WHEN (NEW.user_id IS NULL OR NEW.answer_length IS NULL)
    EXECUTE FUNCTION @schema@.selfology_counters_fill_answer_v1();

DROP TRIGGER IF EXISTS selfology_counters_fill_update_v1 ON @schema@.user_answers_new;
CREATE TRIGGER selfology_counters_fill_update_v1
    BEFORE UPDATE ON @schema@.user_answers_new
    FOR EACH ROW WHEN (
        (NEW.session_id IS DISTINCT FROM OLD.session_id AND NEW.user_id IS NOT DISTINCT FROM OLD.user_id)
        OR (NEW.raw_answer IS DISTINCT FROM OLD.raw_answer
            AND NEW.answer_length IS NOT DISTINCT FROM OLD.answer_length))
    EXECUTE FUNCTION @schema@.selfology_counters_fill_answer_v1();

DROP TRIGGER IF EXISTS selfology_counters_insert_v1 ON @schema@.user_answers_new;
CREATE TRIGGER selfology_counters_insert_v1
    AFTER INSERT ON @schema@.user_answers_new
    REFERENCING NEW TABLE AS new_answers
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@.selfology_counters_on_insert_v1();

DROP TRIGGER IF EXISTS selfology_counters_delete_v1 ON @schema@.user_answers_new;
CREATE TRIGGER selfology_counters_delete_v1
    AFTER DELETE ON @schema@.user_answers_new
    REFERENCING OLD TABLE AS old_answers
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@.selfology_counters_on_delete_v1();

DROP TRIGGER IF EXISTS selfology_counters_update_v1 ON @schema@.user_answers_new;
CREATE TRIGGER selfology_counters_update_v1
    AFTER UPDATE ON @schema@.user_answers_new
    REFERENCING OLD TABLE AS old_answers NEW TABLE AS new_answers
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@.selfology_counters_on_update_v1();

DROP TRIGGER IF EXISTS selfology_counters_truncate_v1 ON @schema@.user_answers_new;
CREATE TRIGGER selfology_counters_truncate_v1
    AFTER TRUNCATE ON @schema@.user_answers_new
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@.selfology_counters_on_truncate_v1();

DROP TRIGGER IF EXISTS selfology_counters_init_personality_v1 ON @schema@.digital_personality;
CREATE TRIGGER selfology_counters_init_personality_v1
    BEFORE INSERT OR UPDATE OF user_id ON @schema@.digital_personality
    FOR EACH ROW EXECUTE FUNCTION @schema@.selfology_counters_init_personality_v1();

DROP TRIGGER IF EXISTS selfology_counters_freeze_session_id_v1 ON @schema@.onboarding_sessions;
CREATE TRIGGER selfology_counters_freeze_session_id_v1
    BEFORE UPDATE OF id ON @schema@.onboarding_sessions
    FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
    EXECUTE FUNCTION @schema@.selfology_counters_freeze_session_id_v1();

-- Stamp every object with the digest of this file, so that `stats` and `check` can tell an
-- installed object that matches the code from one that was edited by hand or is outdated.
COMMENT ON FUNCTION @schema@.selfology_counters_apply_v1(bigint[], integer[], bigint[], integer[])
    IS '@digest@';
COMMENT ON FUNCTION @schema@.selfology_counters_on_insert_v1() IS '@digest@';
COMMENT ON FUNCTION @schema@.selfology_counters_on_delete_v1() IS '@digest@';
COMMENT ON FUNCTION @schema@.selfology_counters_on_update_v1() IS '@digest@';
COMMENT ON FUNCTION @schema@.selfology_counters_on_truncate_v1() IS '@digest@';
COMMENT ON FUNCTION @schema@.selfology_counters_fill_answer_v1() IS '@digest@';
COMMENT ON FUNCTION @schema@.selfology_counters_init_personality_v1() IS '@digest@';
COMMENT ON FUNCTION @schema@.selfology_counters_freeze_session_id_v1() IS '@digest@';
COMMENT ON TRIGGER selfology_counters_fill_insert_v1 ON @schema@.user_answers_new IS '@digest@';
COMMENT ON TRIGGER selfology_counters_fill_update_v1 ON @schema@.user_answers_new IS '@digest@';
COMMENT ON TRIGGER selfology_counters_insert_v1 ON @schema@.user_answers_new IS '@digest@';
COMMENT ON TRIGGER selfology_counters_delete_v1 ON @schema@.user_answers_new IS '@digest@';
COMMENT ON TRIGGER selfology_counters_update_v1 ON @schema@.user_answers_new IS '@digest@';
COMMENT ON TRIGGER selfology_counters_truncate_v1 ON @schema@.user_answers_new IS '@digest@';
COMMENT ON TRIGGER selfology_counters_init_personality_v1 ON @schema@.digital_personality
    IS '@digest@';
COMMENT ON TRIGGER selfology_counters_freeze_session_id_v1 ON @schema@.onboarding_sessions
    IS '@digest@';
