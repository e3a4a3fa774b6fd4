## The functions, triggers and view that keep the counters, one named block per object of
## model.OBJECTS (block name: <kind>_<short>; where the Citus variant's whole body differs,
## that variant is a block of its own, <kind>_<short>_distributed, which the bound context
## selects: sqlfiles.query). Where a piece of a shared body differs, it is a def of the
## variant's file, called through v (variant_plain.sql, variant_citus.sql): no block asks
## which variant it renders. Rendered from the model: every table, column,
## key and object name below comes from model.py. objects.py installs a block, stamps the
## object with the digests the audit compares, and reinstalls what is not current.
##
## Every change to the answers is folded into the counters by one statement-level trigger per
## operation, in the same transaction, with one counter write per affected key and statement.
## Locks are taken in the model's one order (model.COUNTERS: sessions, then user_stats, then
## digital_personality), keys ascending; keys whose net change is zero are left alone.
<%namespace name="truth" file="truth.sql"/>
<%namespace name="v" file="${context['variant']}"/>
<%
    S, U, P = model.SESSIONS, model.USER_STATS, model.PERSONALITY
    answers = f"{schema}.{model.ANSWERS}"
    sessions = f"{schema}.{S.table}"
    stats = f"{schema}.{U.table}"
    personality = f"{schema}.{P.table}"
    fn = {f.short: f"{schema}.{f.name}" for f in model.FUNCTIONS}
    tg = {t.short: t.name for t in model.TRIGGERS}
    mode = f"{schema}.{model.MODE_TABLE}"
    X = model.XID
    K = model.SHARD_KEY
    # The rows of a statement, as (key, +1/-1), for key_deltas: answers already folded only.
    FOLDED = capture(v.folded_in_trigger)
    DELETED = f"SELECT {{k}} AS k, -1 AS d FROM old_answers WHERE {FOLDED}"
    MOVED = (f"SELECT {{k}} AS k, 1 AS d FROM new_answers WHERE {FOLDED}"
             f" UNION ALL SELECT {{k}}, -1 FROM old_answers WHERE {FOLDED}")
    INSERTED = capture(v.counted_inserts)  # the inserted answers the insert trigger counts
    # Citus: the advisory lock a fold holds for its turn (deferred.sql, fold_turn).
    fold_turn = f"'{mode}'::regclass::oid::bigint"
    # One node: the advisory lock a fold takes exclusive, deletes and moves shared, so that
    # they never take a horizon the fold is moving (v.read_horizon). Two keys (the mode
    # table's oid, and 1), apart from Citus's turn and from the bot's one-key locks.
    fold_lock = f"'{mode}'::regclass::oid::integer, 1"
%>
## Every function runs as its owner (SECURITY DEFINER): the application role may write answers
## but no counter column, so the counter writes below must carry the owner's rights. A definer
## function must not resolve a name through its caller's search_path (a function, operator or
## type created in a schema the caller puts first would run with the owner's rights), so the
## path is fixed: pg_catalog, then pg_temp last; every table is schema-qualified, and the
## transition tables (new_answers, old_answers) are found before any schema is searched.
## The SET costs about 1.3 us per call on PostgreSQL 15, less on 18 (docs/COUNTER_ARCHITECTURE.md,
## "Least privilege").
<%def name="runs_as_owner()">SECURITY DEFINER SET search_path = pg_catalog, pg_temp</%def>
## A definer function that writes counters is callable by its owner only (functions are
## executable by PUBLIC when created). Triggers fire whatever the writer's EXECUTE rights.
<%def name="owner_only(short)">
REVOKE ALL ON FUNCTION ${schema}.${model.FUNCTION[short].name}(${model.FUNCTION[short].signature}) FROM PUBLIC;</%def>
## The user_stats upsert for keys gaining answers, written once: a row another transaction
## created meanwhile (committed or not) is caught by ON CONFLICT; filtering with NOT EXISTS
## instead would miss one committed between the two statements and lose its count.
<%def name="add_to_new_user_stats(rows)">
        INSERT INTO ${schema}.${model.USER_STATS.table} AS us
               (${model.USER_STATS.key}, ${model.USER_STATS.column}, first_answer_at, ${model.USER_STATS.touched})
        ${rows}
        ON CONFLICT (${model.USER_STATS.key}) DO UPDATE
           SET ${model.USER_STATS.column} = us.${model.USER_STATS.column} + EXCLUDED.${model.USER_STATS.column},
               first_answer_at = COALESCE(us.first_answer_at, EXCLUDED.first_answer_at),
               ${model.USER_STATS.touched} = EXCLUDED.${model.USER_STATS.touched};</%def>
## The horizon a fold or a switch may move to: every transaction below it has finished, so the
## answers below it are final. Only this database's transactions can write its answers: a
## running transaction known to be another database's (pg_stat_activity, pg_prepared_xacts)
## does not hold it back, so an idle transaction elsewhere on a shared server stops nothing.
## One this role cannot place (another role's session, without pg_read_all_stats) is taken
## to be this database's, as before. backend_xid is 32 bits: matched on the low 32 bits of
## the snapshot's 64-bit ids (running transactions are less than 2^31 apart).
<%def name="local_horizon(snap)">(SELECT COALESCE(min(x.id), pg_snapshot_xmax(${snap})::text::bigint)
       FROM (SELECT t::text::bigint AS id FROM pg_snapshot_xip(${snap}) AS t) x
      WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                         WHERE a.backend_xid::text::bigint = x.id % 4294967296
                           AND a.datid <> (SELECT d.oid FROM pg_database d
                                            WHERE d.datname = current_database()))
        AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts p
                         WHERE p.transaction::text::bigint = x.id % 4294967296
                           AND p.database <> current_database()))</%def>
## A horizon above every transaction id this cluster has given out was not set here: the
## database was restored (pg_dump, or a copy) from a cluster with higher ids, and every answer
## written since looks folded though it never was. Refused, with the way out: in immediate
## mode every answer is folded (repair recounts them all), and the switch back to deferred
## sets the answers' impossible ids to 0 (folded long ago) before it takes a new horizon.
<%def name="horizon_from_another_cluster(horizon, snap)">
        RAISE EXCEPTION 'the deferred-mode horizon % lies beyond this cluster''s transaction ids (next %): this database was restored from another cluster',
              ${horizon}, pg_snapshot_xmax(${snap})
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'run: selfology-counters mode immediate; selfology-counters repair; selfology-counters mode deferred';</%def>
## A subscriber of logical replication receives the answers with its publisher's mode row
## (docs/COUNTER_ARCHITECTURE.md, "Logical replication"): the publisher's fold and switch
## arrive there, so one run here would count the publisher's answers a second time.
<%def name="refuse_on_subscriber(what)">
    IF EXISTS (SELECT 1 FROM pg_subscription_rel WHERE srrelid = '${answers}'::regclass) THEN
        RAISE EXCEPTION 'this database applies ${model.ANSWERS} from a subscription: ${what} on the publisher, whose counters and mode arrive here'
              USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;</%def>
## The per-session and per-user counts of the answers that ``where`` selects (times ``sign``),
## into sorted arrays for apply: one scan of the answers (GROUPING SETS), for the fold and a
## switch of mode.
<%def name="deltas_of_answers(where, sign)">
    WITH g AS MATERIALIZED (
        SELECT ${model.SESSIONS.source} AS s, ${model.USER_STATS.source} AS u,
               ${sign} * count(*)::integer AS d
          FROM ${schema}.${model.ANSWERS} WHERE ${where}
         GROUP BY GROUPING SETS ((${model.SESSIONS.source}), (${model.USER_STATS.source})))
    SELECT (SELECT array_agg(s ORDER BY s) FROM g WHERE s IS NOT NULL),
           (SELECT array_agg(d ORDER BY s) FROM g WHERE s IS NOT NULL),
           (SELECT array_agg(u ORDER BY u) FROM g WHERE u IS NOT NULL),
           (SELECT array_agg(d ORDER BY u) FROM g WHERE u IS NOT NULL)
      INTO s_ids, s_deltas, u_ids, u_deltas;</%def>
## A statement's net change per key (``rows``: one (k, d) per answer, ``{k}`` the column), into
## the sorted arrays apply takes (<prefix>_ids, <prefix>_deltas); keys that net zero are left
## out, so they are neither written nor locked.
<%def name="key_deltas(prefix, column, rows, having=' HAVING sum(d) <> 0')">
    SELECT array_agg(k ORDER BY k), array_agg(d ORDER BY k) INTO ${prefix}_ids, ${prefix}_deltas
      FROM (SELECT k, sum(d)::integer AS d FROM (${rows.format(k=column)}) r
             GROUP BY k${having}) x;</%def>
## The single-key path, for a positive delta: UPDATE first (the row exists for every answer
## but a user's first, and a plain UPDATE is cheaper than a speculative insertion), INSERT
## when it found nothing.
<%def name="add_to_user_stats_one(user, n)">
        UPDATE ${schema}.${model.USER_STATS.table}
           SET ${model.USER_STATS.column} = ${model.USER_STATS.column} + ${n},
               first_answer_at = COALESCE(first_answer_at, ${v.now_()}),
               ${model.USER_STATS.touched} = now()
         WHERE ${model.USER_STATS.key} = ${user};
        IF NOT FOUND THEN
${add_to_new_user_stats(f"VALUES ({user}, {n}, now(), now())")}
        END IF;</%def>

-- name: function_apply --
-- Applies per-key deltas. The arrays are sorted by key, with no zero delta. The single-key
-- case needs no explicit lock ordering; several keys are locked in ascending order first, so
-- that two statements touching the same keys can never deadlock on the counters.
${v.apply_users_note()}\
CREATE OR REPLACE FUNCTION ${fn['apply']}(
    session_ids bigint[], session_deltas integer[], user_ids bigint[], user_deltas integer[]
) RETURNS void LANGUAGE plpgsql ${runs_as_owner()} AS $$
DECLARE
    updated_ids bigint[];${v.declare_now()}${v.declare_owners()}
BEGIN
${v.drop_zero_user_deltas()}\
    IF cardinality(session_ids) = 1 THEN
        UPDATE ${sessions}
           SET ${S.column} = GREATEST(${S.column} + session_deltas[1], 0)
         WHERE ${S.key} = session_ids[1]${v.same_shard(None, "ANY (owners)")};
    ELSIF cardinality(session_ids) > 1 THEN
        PERFORM 1 FROM ${sessions}
          WHERE ${S.key} = ANY (session_ids)${v.same_shard(None, "ANY (owners)")} ORDER BY ${S.key} FOR NO KEY UPDATE;
        UPDATE ${sessions} s
           SET ${S.column} = GREATEST(s.${S.column} + d.delta, 0)
          FROM unnest(session_ids, session_deltas) AS d(key, delta)
         WHERE s.${S.key} = d.key${v.same_shard("s", "ANY (owners)")};
    END IF;

    IF cardinality(user_ids) = 1 THEN
        IF user_deltas[1] > 0 THEN
${add_to_user_stats_one("user_ids[1]", "user_deltas[1]")}
        ELSE
            UPDATE ${stats}
               SET ${U.column} = GREATEST(${U.column} + user_deltas[1], 0),
                   ${U.touched} = now()
             WHERE ${U.key} = user_ids[1];
        END IF;
        UPDATE ${personality}
           SET ${P.column} = GREATEST(${P.column} + user_deltas[1], 0),
               ${P.touched} = now()
         WHERE ${P.key} = user_ids[1];
    ELSIF cardinality(user_ids) > 1 THEN
        PERFORM 1 FROM ${stats}
          WHERE ${U.key} = ANY (user_ids) ORDER BY ${U.key} FOR NO KEY UPDATE;
        WITH updated AS (
            UPDATE ${stats} us
               SET ${U.column} = GREATEST(us.${U.column} + d.delta, 0),
                   first_answer_at = CASE WHEN d.delta > 0
                                          THEN COALESCE(us.first_answer_at, ${v.now_()})
                                          ELSE us.first_answer_at END,
                   ${U.touched} = now()
              FROM unnest(user_ids, user_deltas) AS d(key, delta)
             WHERE us.${U.key} = d.key${v.same_shard("us", "ANY (user_ids)")}
            RETURNING us.${U.key})
        SELECT array_agg(${U.key}) INTO updated_ids FROM updated;
        -- Users gaining their first row: exactly those the UPDATE did not reach.
${add_to_new_user_stats(f'''SELECT d.key, d.delta, now(), now()
          FROM unnest(user_ids, user_deltas) AS d(key, delta)
         WHERE d.delta > 0
           AND NOT EXISTS (SELECT 1 FROM unnest(updated_ids) AS x(key) WHERE x.key = d.key)
         ORDER BY d.key''')}
        PERFORM 1 FROM ${personality}
          WHERE ${P.key} = ANY (user_ids) ORDER BY ${P.key} FOR NO KEY UPDATE;
        UPDATE ${personality} dp
           SET ${P.column} = GREATEST(dp.${P.column} + d.delta, 0),
               ${P.touched} = now()
          FROM unnest(user_ids, user_deltas) AS d(key, delta)
         WHERE dp.${P.key} = d.key${v.same_shard("dp", "ANY (user_ids)")};
    END IF;
END;
$$;
${owner_only("apply")}

-- name: function_on_insert --
-- AFTER INSERT, once per statement: every new answer counts +1 for its session and its user.
CREATE OR REPLACE FUNCTION ${fn['on_insert']}() RETURNS trigger
LANGUAGE plpgsql ${runs_as_owner()} AS $$
DECLARE
    n integer; s_lo bigint; s_hi bigint; u_lo bigint; u_hi bigint;
    s_ids bigint[]; s_deltas integer[]; u_ids bigint[]; u_deltas integer[];${v.declare_now()}
BEGIN
    SELECT count(*), min(${S.source}), max(${S.source}), min(${U.source}), max(${U.source})
      INTO n, s_lo, s_hi, u_lo, u_hi FROM ${INSERTED};
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF s_lo = s_hi AND u_lo = u_hi THEN
        -- One session of one user: every answer the DAO or the bot writes. Inlined (the
        -- single-key path of apply, for a positive delta) because the nested call cost about
        -- 15 us per INSERT, measured with pgbench.
        UPDATE ${sessions}
           SET ${S.column} = ${S.column} + n
         WHERE ${S.key} = s_lo${v.same_shard(None, "u_lo")};
${add_to_user_stats_one("u_lo", "n")}
        UPDATE ${personality}
           SET ${P.column} = ${P.column} + n, ${P.touched} = now()
         WHERE ${P.key} = u_lo;
        RETURN NULL;
    END IF;
${key_deltas("s", S.source, "SELECT {k} AS k, 1 AS d FROM " + INSERTED)}
${key_deltas("u", U.source, "SELECT {k} AS k, 1 AS d FROM " + INSERTED)}
    PERFORM ${fn['apply']}(s_ids, s_deltas, u_ids, u_deltas);
    RETURN NULL;
END;
$$;
${owner_only("on_insert")}

-- name: function_on_delete --
-- AFTER DELETE, once per statement (also for the cascade of a deleted session): -1 each.
CREATE OR REPLACE FUNCTION ${fn['on_delete']}() RETURNS trigger
LANGUAGE plpgsql ${runs_as_owner()} AS $$
DECLARE
    h bigint; s_ids bigint[]; s_deltas integer[]; u_ids bigint[]; u_deltas integer[];
BEGIN
${v.read_horizon(fold_lock)}
${key_deltas("s", S.source, DELETED)}
    IF s_ids IS NULL THEN
        RETURN NULL;
    END IF;
${key_deltas("u", U.source, DELETED)}
    PERFORM ${fn['apply']}(s_ids, s_deltas, u_ids, u_deltas);
    RETURN NULL;
END;
$$;
${owner_only("on_delete")}

-- name: function_on_update --
-- AFTER UPDATE, once per statement: an answer that changed session or user moves its count.
-- Transition tables cannot be combined with a column list, so this fires for every UPDATE;
-- an UPDATE that moves nothing (the bot's analysis_status, an edited raw_answer) leaves the
-- rows' (session, user, log position) as they were, so every delta is zero: it returns before
-- reading the horizon, which in deferred mode would take the mode row FOR SHARE and keep the
-- fold waiting behind a stream of such updates.
CREATE OR REPLACE FUNCTION ${fn['on_update']}() RETURNS trigger
LANGUAGE plpgsql ${runs_as_owner()} AS $$
DECLARE
    h bigint; s_ids bigint[]; s_deltas integer[]; u_ids bigint[]; u_deltas integer[];
BEGIN
<% counted = f"{S.source}, {U.source}, {X}{capture(v.pending_flag_column)}" %>
    IF NOT EXISTS (SELECT ${counted} FROM new_answers
                   EXCEPT ALL SELECT ${counted} FROM old_answers) THEN
        RETURN NULL;
    END IF;
${v.read_horizon(fold_lock)}
${key_deltas("s", S.source, MOVED)}
${key_deltas("u", U.source, MOVED, having=capture(v.user_deltas_kept))}
    IF ${v.nothing_moved()} THEN
        RETURN NULL;
    END IF;
    PERFORM ${fn['apply']}(
        COALESCE(s_ids, '{}'), COALESCE(s_deltas, '{}'),
        COALESCE(u_ids, '{}'), COALESCE(u_deltas, '{}'));
    RETURN NULL;
END;
$$;
${owner_only("on_update")}

## The part of function_on_truncate that both variants share.
<%def name="on_truncate_head()">-- AFTER TRUNCATE: no answers are left, so every counter is zero. TRUNCATE holds an ACCESS
-- EXCLUSIVE lock on the answers, so no answer trigger holds counter locks at the same time.
CREATE OR REPLACE FUNCTION ${fn['on_truncate']}() RETURNS trigger
LANGUAGE plpgsql ${runs_as_owner()} AS $$
BEGIN</%def>
-- name: function_on_truncate --
${on_truncate_head()}
    -- TRUNCATE removes every answer whatever the snapshot, but under REPEATABLE READ the
    -- UPDATEs below would only reach counter rows that snapshot sees; rows created since
    -- would keep their counts. Refuse rather than leave them wrong.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'TRUNCATE of ${model.ANSWERS} needs READ COMMITTED (this transaction is %)',
              current_setting('transaction_isolation')
              USING ERRCODE = 'feature_not_supported';
    END IF;
    UPDATE ${sessions} SET ${S.column} = 0 WHERE ${S.column} <> 0;
    UPDATE ${stats} SET ${U.column} = 0, ${U.touched} = now()
     WHERE ${U.column} <> 0;
    UPDATE ${personality} SET ${P.column} = 0, ${P.touched} = now()
     WHERE ${P.column} <> 0;
    RETURN NULL;
END;
$$;
${owner_only("on_truncate")}

## The distributed (Citus) variant, selected by the bound context (objects.source_sql).
-- name: function_on_truncate_distributed --
${on_truncate_head()}
    -- Distributed: the trigger fires on every shard as well, where resetting the counters of
    -- all users would be a query across shards, which Citus refuses inside a shard's trigger.
    RAISE EXCEPTION 'TRUNCATE of ${model.ANSWERS} is refused on Citus: the counters could not be reset with it'
          USING ERRCODE = 'feature_not_supported',
                HINT = 'DELETE the answers instead: the counters follow';
    RETURN NULL;
END;
$$;
${owner_only("on_truncate")}

-- name: function_fill_answer --
-- BEFORE INSERT/UPDATE of an answer: fill in what the bot's INSERT omits (user_id from the
-- session, answer_length from the text), and follow a session change to the session's user.
-- Only runs when its WHEN clause says there is something to fill, so the DAO, which supplies
-- both columns, never pays for it.
CREATE OR REPLACE FUNCTION ${fn['fill_answer']}() RETURNS trigger
LANGUAGE plpgsql ${runs_as_owner()} AS $$
BEGIN
    IF NEW.user_id IS NULL OR (TG_OP = 'UPDATE' AND NEW.session_id IS DISTINCT FROM OLD.session_id
                                AND NEW.user_id IS NOT DISTINCT FROM OLD.user_id) THEN
        -- FOR KEY SHARE: if the session is moving to another user right now, wait for that
        -- and read the new user, or the foreign key check would see a stale pair and fail.
${v.answer_follows_session()}
    END IF;
    IF NEW.answer_length IS NULL OR (TG_OP = 'UPDATE' AND NEW.raw_answer IS DISTINCT FROM OLD.raw_answer
                                      AND NEW.answer_length IS NOT DISTINCT FROM OLD.answer_length) THEN
        NEW.answer_length := char_length(NEW.raw_answer);
    END IF;
    RETURN NEW;
END;
$$;
${owner_only("fill_answer")}

-- name: function_init_personality --
-- BEFORE INSERT (or change of user) of a digital_personality row: start at the user's true
-- count (in deferred mode: the part of it that is folded). The user_stats row is locked first (created at zero if the user has no answers yet),
-- which serialises this count with every answer trigger of the same user: an answer committed
-- before is counted here, an answer committed after increments the new row.
CREATE OR REPLACE FUNCTION ${fn['init_personality']}() RETURNS trigger
LANGUAGE plpgsql ${runs_as_owner()} AS $$
BEGIN
${v.refuse_stale_mode()}\
    INSERT INTO ${stats} AS us (${U.key}, ${U.column})
    VALUES (NEW.${P.key}, 0)
    ON CONFLICT (${U.key}) DO UPDATE SET ${U.touched} = us.${U.touched};
    -- The answers the stored counters hold: below the horizon (all of them in immediate
    -- mode). A fold serialises with this through the same user_stats row.
    SELECT count(*) INTO NEW.${P.column}
      FROM ${answers} WHERE ${P.source} = NEW.${P.key} AND ${v.is_folded()};
    NEW.${P.touched} := now();
    RETURN NEW;
END;
$$;
${owner_only("init_personality")}

-- name: function_freeze_session_id --
-- A session's id is the key its answers and counter point at; changing it would carry the
-- count to the new id twice (once on the row, once through the cascaded answers).
CREATE OR REPLACE FUNCTION ${fn['freeze_session_id']}() RETURNS trigger
LANGUAGE plpgsql ${runs_as_owner()} AS $$
BEGIN
    RAISE EXCEPTION '${S.table}.${S.key} cannot change (% -> %)', OLD.${S.key}, NEW.${S.key}
          USING ERRCODE = 'restrict_violation';
END;
$$;
${owner_only("freeze_session_id")}

-- name: function_guard_user_stats --
-- A user_stats row is the counter of a user's answers: deleted while answers are left, the
-- next answer would recreate it at that answer's count, not the true one. Refused; delete the
-- answers (or the sessions) first. (TRUNCATE user_stats is not guarded: `check` reports the
-- missing rows and `repair` recreates them at the true count.)
CREATE OR REPLACE FUNCTION ${fn['guard_user_stats']}() RETURNS trigger
LANGUAGE plpgsql ${runs_as_owner()} AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ${answers} a WHERE a.${U.source} = OLD.${U.key}) THEN
        RAISE EXCEPTION '${U.table} row of user % is the counter of answers that still exist',
              OLD.${U.key}
              USING ERRCODE = 'restrict_violation',
                    HINT = 'delete the user''s answers or sessions first';
    END IF;
    RETURN OLD;
END;
$$;
${owner_only("guard_user_stats")}

% for c in model.COUNTERS:
-- name: function_keep_${c.short} --
-- BEFORE UPDATE of ${c.name} by a statement outside any trigger: a write that
-- is not ours (the bot's own "+ 1", a read-modify-write, a hand UPDATE) keeps the stored
-- value, so the counter stays the truth whatever the application writes. Our triggers'
-- writes never get here (the trigger's WHEN: pg_trigger_depth() = 0); ours outside a trigger
-- (repair, the fold, a switch of mode, the original's repair functions) mark their
-- transaction with ${model.COUNTING_MARK}, honoured only when the statement runs with rights
-- that may act as the table's owner (our SECURITY DEFINER functions do; the application
-- role does not), so the application role cannot forge it. Hence SECURITY INVOKER: it must
-- see the writer's role. An undone write is counted in a sequence (no row lock: no writer
-- waits for another; PUBLIC may count) that check, stats and watch report; with
-- ${model.COUNTER_WRITES_SETTING} = 'refuse' it fails instead. The sequence's comment is
-- when counting began.
DO $keep$
BEGIN
    IF to_regclass('${schema}.${c.overridden_sequence}') IS NULL THEN
        CREATE SEQUENCE ${schema}.${c.overridden_sequence};
        GRANT USAGE ON SEQUENCE ${schema}.${c.overridden_sequence} TO PUBLIC;
        EXECUTE format('COMMENT ON SEQUENCE ${schema}.${c.overridden_sequence} IS %L', now()::text);
    END IF;
${v.overridden_per_node(c)}\
END;
$keep$;
CREATE OR REPLACE FUNCTION ${fn[f"keep_{c.short}"]}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_setting('${model.COUNTING_MARK}', true) = 'on'
       AND pg_has_role(current_user, (SELECT t.relowner FROM pg_class t WHERE t.oid = TG_RELID), 'MEMBER') THEN
        RETURN NEW;
    END IF;
    -- A replica applying its origin's rows (logical replication's apply worker, with this
    -- trigger ENABLE ALWAYS) writes the value its origin counted.
    IF current_setting('session_replication_role') = 'replica' THEN
        RETURN NEW;
    END IF;
    IF current_setting('${model.COUNTER_WRITES_SETTING}', true) = 'refuse' THEN
        RAISE EXCEPTION '${c.name} is kept by selfology-counters; this statement may not write it (% -> %)',
              OLD.${c.column}, NEW.${c.column}
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'remove the write from the application: the counter follows the answers by itself';
    END IF;
    PERFORM nextval('${schema}.${c.overridden_sequence}');
    NEW.${c.column} := OLD.${c.column};
    RETURN NEW;
END;
$$;
${owner_only(f"keep_{c.short}")}

% endfor
## The original's repair functions and health view (its migration 008), which the bot's cron
## script (scripts/sync_answer_counters.py --check, --fix-critical, --validate-all,
## --recalculate, --monitor) calls: their names, signatures and column types are the
## original's, so the script runs unchanged; their bodies repair like `repair`, over the
## one truth (truth.sql), locking in the model's order, safe while the bot writes.
-- name: function_recalculate_answer_count --
-- One user's counters, all of them (sessions, user_stats, digital_personality), recounted
-- under their row locks in the model's order, in this transaction; returns the user's exact
-- answer count. (The original recounted user_stats only, with no lock.)
CREATE OR REPLACE FUNCTION ${schema}.recalculate_answer_count(p_user_id integer) RETURNS integer
LANGUAGE plpgsql ${runs_as_owner()} AS $$
BEGIN
    -- Under REPEATABLE READ the recount below would not see answers committed since the
    -- snapshot, and would write a stale count.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'recalculate_answer_count needs READ COMMITTED (this transaction is %)',
              current_setting('transaction_isolation')
              USING ERRCODE = 'feature_not_supported';
    END IF;
${v.mark_counting()}
${v.hold_horizon()}\
% for c in model.COUNTERS:
%   if c.created_by_answers:
    IF EXISTS (SELECT 1 FROM ${answers} a WHERE a.${c.source} = p_user_id) THEN
        INSERT INTO ${schema}.${c.table} (${c.key}, ${c.column}) VALUES (p_user_id, 0)
        ON CONFLICT (${c.key}) DO NOTHING;
    END IF;
%   endif
    PERFORM 1 FROM ${schema}.${c.table} t WHERE t.${K} = p_user_id ORDER BY t.${c.key} FOR NO KEY UPDATE;
% endfor
    -- Each statement its own snapshot: every answer committed before the locks is seen.
% for c in model.COUNTERS:
    UPDATE ${schema}.${c.table} t
       SET ${c.column} = ${truth.folded_of(c, "t")}${f", {c.touched} = now()" if c.touched else ""}
     WHERE t.${K} = p_user_id AND t.${c.column} IS DISTINCT FROM ${truth.folded_of(c, "t")};
% endfor
    RETURN ${truth.exact_of(U, "p_user_id")};
END;
$$;
${owner_only("recalculate_answer_count")}

-- name: function_validate_all_answer_counters --
-- Every user with a counter that differs from the truth (the consistency view), repaired
-- one by one with recalculate_answer_count; one row per user: the user's total as it was
-- (exact read: stored + pending), the true total, their difference, corrected.
CREATE OR REPLACE FUNCTION ${schema}.validate_all_answer_counters()
RETURNS TABLE (user_id integer, stored_count integer, actual_count integer, drift integer,
               corrected boolean)
LANGUAGE plpgsql ${runs_as_owner()} AS $$
#variable_conflict use_column
DECLARE
    u bigint;
BEGIN
    FOR u IN SELECT DISTINCT v.user_id FROM ${schema}.${model.VIEW['counter_consistency_check'].name} v
              WHERE v.status <> 'CONSISTENT' AND v.user_id IS NOT NULL ORDER BY 1 LOOP
        user_id := u;
        stored_count := ${truth.exact_of(U, "u")};
        actual_count := ${schema}.recalculate_answer_count(u::integer);
        drift := stored_count - actual_count;
        corrected := true;
        RETURN NEXT;
    END LOOP;
END;
$$;
${owner_only("validate_all_answer_counters")}

-- name: function_auto_fix_critical_drift --
-- The users answer_counter_health calls CRITICAL, repaired (recalculate_answer_count); one
-- row per user: the total before and after. (The original failed on every call: it
-- returned a bigint where it declared an integer.)
CREATE OR REPLACE FUNCTION ${schema}.auto_fix_critical_drift()
RETURNS TABLE (user_id integer, old_count integer, new_count integer, fixed_at timestamp)
LANGUAGE plpgsql ${runs_as_owner()} AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    FOR r IN SELECT h.user_id, h.stored_count FROM ${schema}.${model.VIEW['answer_counter_health'].name} h
              WHERE h.health_status = 'CRITICAL' ORDER BY h.user_id LOOP
        user_id := r.user_id;
        old_count := r.stored_count;
        new_count := ${schema}.recalculate_answer_count(r.user_id);
        fixed_at := now();
        RETURN NEXT;
    END LOOP;
END;
$$;
${owner_only("auto_fix_critical_drift")}

## The part of function_fold that both variants share.
<%def name="fold_head()">-- Deferred mode's fold, one transaction: moves the horizon to the oldest transaction still
-- running (every transaction below it has finished, so the answers below it are final), adds
-- the answers between the old and the new horizon to the stored counters in the model's lock
-- order, and records the new horizon. Readers see the answers either pending or folded, never
-- both, never neither. Returns nothing when another worker (or a switch of mode) holds the
-- mode row: workers take turns, they never fold the same answers twice.
CREATE OR REPLACE FUNCTION ${fn['fold']}()
RETURNS TABLE (folded bigint, oldest_answered_at timestamptz, new_horizon bigint)
LANGUAGE plpgsql ${runs_as_owner()} AS $$
DECLARE
    m record; h_new bigint; snap pg_snapshot;
    s_ids bigint[]; s_deltas integer[]; u_ids bigint[]; u_deltas integer[];
BEGIN
    SELECT * INTO m FROM ${mode} FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;</%def>
-- name: function_fold --
${fold_head()}
${refuse_on_subscriber("fold (selfology-counters worker)")}
    IF m.mode <> '${model.DEFERRED}' THEN
        RETURN QUERY SELECT 0::bigint, NULL::timestamptz, m.horizon;
        RETURN;
    END IF;
    -- Waits for the deletes and moves that read the horizon (read_horizon_row) to commit;
    -- the ones that come meanwhile queue behind this (bounded by the caller's lock_timeout).
    PERFORM pg_advisory_xact_lock(${fold_lock});
${v.mark_counting()}
    snap := pg_current_snapshot();
    IF m.horizon > pg_snapshot_xmax(snap)::text::bigint THEN
${horizon_from_another_cluster("m.horizon", "snap")}
    END IF;
    h_new := GREATEST(${local_horizon("snap")}, m.horizon);
    SELECT min(answered_at) INTO oldest_answered_at
      FROM ${answers} WHERE ${X} >= m.horizon AND ${X} < h_new;
${deltas_of_answers(f"{X} >= m.horizon AND {X} < h_new", "1")}
    folded := COALESCE((SELECT sum(d) FROM unnest(s_deltas) AS d), 0);
    IF folded > 0 THEN
        PERFORM ${fn['apply']}(s_ids, s_deltas, u_ids, u_deltas);
    END IF;
    -- The last fold's time says the worker makes progress: it moves when answers were folded
    -- or none is left, not on a fold that a running transaction held back (which would make
    -- a stuck fold look alive, counter_worker_last_fold_timestamp_seconds).
    UPDATE ${mode}
       SET horizon = h_new, last_fold_rows = folded,
           last_fold_at = CASE WHEN folded > 0 OR NOT EXISTS (SELECT 1 FROM ${answers} WHERE ${X} >= h_new)
                               THEN now() ELSE m.last_fold_at END;
    new_horizon := h_new;
    RETURN NEXT;
END;
$$;
${owner_only("fold")}

## The distributed (Citus) variant, selected by the bound context (objects.source_sql).
-- name: function_fold_distributed --
${fold_head()}
    -- Distributed (Citus): a fold is one transaction per shard, so it cannot be this one
    -- function call; the client folds shard by shard (deferred.fold_once, deferred.sql).
    RAISE EXCEPTION 'on Citus the fold runs shard by shard from the client: selfology-counters worker'
          USING ERRCODE = 'feature_not_supported';
END;
$$;
${owner_only("fold")}

## The part of function_set_mode that both variants share.
<%def name="set_mode_head()">-- Switches the counter mode, live. The answers are locked first, as writers take them: the
-- lock waits for every transaction that wrote answers and holds new writers back until this
-- one commits (milliseconds), so no answer is written while the counters change hands; then
-- the mode row, so no fold runs meanwhile. To deferred: the answers at or above the new
-- horizon are counted already, so they are taken out of the stored counters (they become
-- pending) and the insert trigger is turned off. To immediate: everything pending is folded
-- and the insert trigger turned back on. Nothing is lost or counted twice at the switch.
CREATE OR REPLACE FUNCTION ${fn['set_mode']}(wanted text) RETURNS text
LANGUAGE plpgsql ${runs_as_owner()} AS $$
DECLARE
    m record; h bigint; lo bigint; sign integer; enable text; snap pg_snapshot;
    s_ids bigint[]; s_deltas integer[]; u_ids bigint[]; u_deltas integer[];
BEGIN
    IF wanted IS NULL OR wanted NOT IN (${", ".join(f"'{m}'" for m in model.MODES)}) THEN
        RAISE EXCEPTION 'unknown counter mode %', wanted USING ERRCODE = 'invalid_parameter_value';
    END IF;</%def>
-- name: function_set_mode --
${set_mode_head()}
${refuse_on_subscriber("switch the counter mode (selfology-counters mode)")}
    LOCK TABLE ${answers} IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO m FROM ${mode} FOR UPDATE;
    IF m.mode = wanted THEN
        RETURN wanted;
    END IF;
${v.mark_counting()}
    IF wanted = '${model.DEFERRED}' THEN
        snap := pg_current_snapshot();
        -- Ids from another cluster (a restore): in immediate mode every answer is folded, so
        -- they become 0, and the horizon below cannot mistake them for pending answers.
        UPDATE ${answers} SET ${X} = 0 WHERE ${X} >= pg_snapshot_xmax(snap)::text::bigint;
        h := ${local_horizon("snap")};
        lo := h;
        sign := -1;
        EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', '${answers}', '${tg['insert']}');
    ELSE
        h := ${model.HORIZON_IMMEDIATE};
        lo := m.horizon;
        sign := 1;
        -- As the delete trigger is: ENABLE ALWAYS on a subscriber whose apply worker's
        -- writes our triggers count (docs/COUNTER_ARCHITECTURE.md), else ENABLE.
        SELECT CASE WHEN t.tgenabled = 'A' THEN 'ENABLE ALWAYS' ELSE 'ENABLE' END INTO enable
          FROM pg_trigger t
         WHERE t.tgrelid = '${answers}'::regclass AND t.tgname = '${tg['delete']}';
        EXECUTE format('ALTER TABLE %s %s TRIGGER %I', '${answers}', COALESCE(enable, 'ENABLE'),
                       '${tg['insert']}');
    END IF;
${deltas_of_answers(f"{X} >= lo", "sign")}
    IF s_ids IS NOT NULL THEN
        PERFORM ${fn['apply']}(s_ids, s_deltas, u_ids, u_deltas);
    END IF;
    UPDATE ${mode} SET mode = wanted, horizon = h, switched_at = now();
    RETURN wanted;
END;
$$;
${owner_only("set_mode")}

## The distributed (Citus) variant, selected by the bound context (objects.source_sql).
-- name: function_set_mode_distributed --
${set_mode_head()}
    -- Distributed (Citus): Citus allows DDL after other distributed work in a transaction on
    -- one connection per node; for this transaction only.
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    -- No horizon to move. The fold's turn first: a fold holds it while its shards wait for
    -- writers' session locks, and those writers may wait for the lock below, so a fold must
    -- end before that lock is taken (and none starts meanwhile). Then the answers: Citus takes
    -- the lock on every node's copy of the table, where every write to it takes its own, so
    -- no insert is mid-statement while the pending column's default changes: a new answer is
    -- either marked pending (deferred) or not (immediate). The insert trigger stays on in
    -- both modes and counts the answers inserted not pending: all of them in immediate mode,
    -- and in deferred mode one that a writer marked folded itself (pending = false), which
    -- no fold would ever count. A default, not a trigger, marks it: a shard moved to another
    -- node is copied with its values, so a folded answer stays folded there.
    -- Nothing else happens under that lock: what was pending before a switch to immediate
    -- is folded after it, shard by shard (deferred.set_mode does), and read exactly meanwhile.
    PERFORM pg_advisory_xact_lock(${fold_turn});
    SELECT * INTO m FROM ${mode} FOR UPDATE;
    IF m.mode = wanted THEN
        RETURN wanted;
    END IF;
    LOCK TABLE ${answers} IN SHARE ROW EXCLUSIVE MODE;
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %L', '${answers}',
                   '${model.PENDING}', wanted = '${model.DEFERRED}');
    UPDATE ${mode} SET mode = wanted, switched_at = now();
    RETURN wanted;
END;
$$;
${owner_only("set_mode")}

## The part of function_<reader> that both variants share.
<%def name="reader_head(c)">-- The exact ${c.name} in either mode, in one snapshot: stored + pending. PL/pgSQL, not SQL:
-- a SQL function with sub-selects is not inlined and is planned again on every call (about
-- 0.5 ms); PL/pgSQL keeps the plan for the session. It stays executable by PUBLIC: it writes
-- nothing, and reading it needs USAGE on the schema, which `selfology-counters roles` grants.</%def>
% for c in model.COUNTERS:
-- name: function_${c.reader} --
${reader_head(c)}
CREATE OR REPLACE FUNCTION ${schema}.${c.reader}(${c.source} bigint) RETURNS bigint
LANGUAGE plpgsql STABLE ${runs_as_owner()} AS $$
BEGIN
    RETURN ${truth.exact_of(c, "$1")};
END;
$$;

## The distributed (Citus) variant, selected by the bound context (objects.source_sql).
-- name: function_${c.reader}_distributed --
${reader_head(c)}
-- Distributed (Citus): called in a query on a distributed table (`SELECT
-- answers_of_user(user_id) FROM user_stats WHERE user_id = 5`), the call runs inside the
-- query on the shard, on a worker, where Citus refuses a nested distributed query unless
-- allowed. Allowed for this function's own statements only: a key's reads name its user,
-- the shard key, so they go to the co-located shard on the same node, which Citus reads in
-- the same backend and transaction (local execution). Called with another row's user (on
-- another node), a read would go out on a connection of its own, outside this transaction.
CREATE OR REPLACE FUNCTION ${schema}.${c.reader}(${c.source} bigint) RETURNS bigint
LANGUAGE plpgsql STABLE ${runs_as_owner()} SET citus.allow_nested_distributed_execution = on AS $$
% if c.source != K:
-- Distributed: the session's user first (it never changes on Citus), so that the read
-- names the shard key and Citus sends it to that one shard, in one snapshot.
DECLARE
    owner bigint := (SELECT s.${K} FROM ${sessions} s WHERE s.${S.key} = $1);
BEGIN
    RETURN ${truth.exact_of(c, "$1", "owner")};
% else:
BEGIN
    RETURN ${truth.exact_of(c, "$1")};
% endif
END;
$$;
% if c.source == K:
-- Distributed: a call from the coordinator (`SELECT answers_of_user(5)`) is sent whole to
-- the node that holds the user's shards (Citus delegates it: one round trip, not one per
-- statement of the function).
SELECT create_distributed_function('${schema}.${c.reader}(bigint)', '$1',
                                   colocate_with := '${schema}.${c.table}');
% endif

% endfor
-- name: trigger_fill_insert --
DROP TRIGGER IF EXISTS ${tg['fill_insert']} ON ${answers};
CREATE TRIGGER ${tg['fill_insert']}
    BEFORE INSERT ON ${answers}
    FOR EACH ROW WHEN (NEW.user_id IS NULL OR NEW.answer_length IS NULL)
    EXECUTE FUNCTION ${fn['fill_answer']}();

-- name: trigger_fill_update --
DROP TRIGGER IF EXISTS ${tg['fill_update']} ON ${answers};
CREATE TRIGGER ${tg['fill_update']}
    BEFORE UPDATE ON ${answers}
    FOR EACH ROW WHEN (
        (NEW.session_id IS DISTINCT FROM OLD.session_id AND NEW.user_id IS NOT DISTINCT FROM OLD.user_id)
        OR (NEW.raw_answer IS DISTINCT FROM OLD.raw_answer
            AND NEW.answer_length IS NOT DISTINCT FROM OLD.answer_length))
    EXECUTE FUNCTION ${fn['fill_answer']}();

-- name: trigger_insert --
DROP TRIGGER IF EXISTS ${tg['insert']} ON ${answers};
CREATE TRIGGER ${tg['insert']}
    AFTER INSERT ON ${answers}
    REFERENCING NEW TABLE AS new_answers
    FOR EACH STATEMENT EXECUTE FUNCTION ${fn['on_insert']}();

-- name: trigger_delete --
DROP TRIGGER IF EXISTS ${tg['delete']} ON ${answers};
CREATE TRIGGER ${tg['delete']}
    AFTER DELETE ON ${answers}
    REFERENCING OLD TABLE AS old_answers
    FOR EACH STATEMENT EXECUTE FUNCTION ${fn['on_delete']}();

-- name: trigger_update --
DROP TRIGGER IF EXISTS ${tg['update']} ON ${answers};
CREATE TRIGGER ${tg['update']}
    AFTER UPDATE ON ${answers}
    REFERENCING OLD TABLE AS old_answers NEW TABLE AS new_answers
    FOR EACH STATEMENT EXECUTE FUNCTION ${fn['on_update']}();

-- name: trigger_truncate --
DROP TRIGGER IF EXISTS ${tg['truncate']} ON ${answers};
CREATE TRIGGER ${tg['truncate']}
    AFTER TRUNCATE ON ${answers}
    FOR EACH STATEMENT EXECUTE FUNCTION ${fn['on_truncate']}();

-- name: trigger_init_personality --
DROP TRIGGER IF EXISTS ${tg['init_personality']} ON ${personality};
CREATE TRIGGER ${tg['init_personality']}
    BEFORE INSERT OR UPDATE OF ${P.key} ON ${personality}
    FOR EACH ROW EXECUTE FUNCTION ${fn['init_personality']}();

-- name: trigger_freeze_session_id --
DROP TRIGGER IF EXISTS ${tg['freeze_session_id']} ON ${sessions};
CREATE TRIGGER ${tg['freeze_session_id']}
    BEFORE UPDATE OF ${S.key} ON ${sessions}
    FOR EACH ROW WHEN (NEW.${S.key} IS DISTINCT FROM OLD.${S.key})
    EXECUTE FUNCTION ${fn['freeze_session_id']}();

-- name: trigger_guard_user_stats --
DROP TRIGGER IF EXISTS ${tg['guard_user_stats']} ON ${stats};
CREATE TRIGGER ${tg['guard_user_stats']}
    BEFORE DELETE ON ${stats}
    FOR EACH ROW EXECUTE FUNCTION ${fn['guard_user_stats']}();

% for c in model.COUNTERS:
-- name: trigger_keep_${c.short} --
## A change of the row's key is not a write of the count: init_personality recounts it.
DROP TRIGGER IF EXISTS ${tg[f"keep_{c.short}"]} ON ${schema}.${c.table};
CREATE TRIGGER ${tg[f"keep_{c.short}"]}
    BEFORE UPDATE OF ${c.column} ON ${schema}.${c.table}
    FOR EACH ROW WHEN (NEW.${c.column} IS DISTINCT FROM OLD.${c.column}
                       AND NEW.${c.key} IS NOT DISTINCT FROM OLD.${c.key}
                       AND pg_trigger_depth() = 0)
    EXECUTE FUNCTION ${fn[f"keep_{c.short}"]}();

% endfor
-- name: view_answer_counter_health --
-- The original's health view (migration 008), its columns and types: one row per user_stats
-- row; stored_count is the exact read (stored + pending in deferred mode), actual_count the
-- user's answers (NULL for none), SYNCED when equal, ACCEPTABLE within one, else CRITICAL.
CREATE OR REPLACE VIEW ${schema}.${model.VIEW['answer_counter_health'].name} AS
SELECT h.user_id::integer AS user_id, h.stored::integer AS stored_count,
       NULLIF(h.actual, 0)::bigint AS actual_count, (h.stored - h.actual)::bigint AS drift,
       CASE WHEN h.stored = h.actual THEN 'SYNCED'
            WHEN abs(h.stored - h.actual) <= 1 THEN 'ACCEPTABLE'
            ELSE 'CRITICAL' END AS health_status,
       h.last_sync::timestamp AS last_sync
  FROM (SELECT us.${U.key} AS user_id,
               us.${U.column} + ${truth.pending_of(U, f"us.{U.key}", f"us.{K}")} AS stored,
               ${truth.answers_of(U, "us")} AS actual,
               us.${U.touched} AS last_sync
          FROM ${stats} us) h
 ORDER BY abs(h.stored - h.actual) DESC;

## The parts of view_counter_consistency_check that both variants share: its head, and the
## rows it reads (one per counter and key, and per key with answers but no row).
<%def name="consistency_head()">-- Every counter next to the truth, one row per counter and key, covering what the original
-- view missed (sessions, keys with answers but no row where the first answer creates it).
-- `check` reads it; people who prefer SQL can too:
--   SELECT * FROM selfology.counter_consistency_check WHERE status <> 'CONSISTENT';
-- The truth is counted per key through the answers' indexes, so a filter on user_id (check
-- --user) reads only that user's rows. `pending`: answers not folded yet (deferred mode);
-- stored + pending is what must equal the truth.
CREATE OR REPLACE VIEW ${schema}.${model.VIEW['counter_consistency_check'].name} AS
SELECT c.counter, c.key, c.user_id, c.stored, c.actual,
       c.stored + c.pending - c.actual AS drift,
       CASE WHEN NOT c.row_exists THEN 'MISSING_ROW'
            WHEN c.stored IS NULL THEN 'NULL_VALUE'  -- possible in an adopted schema
            WHEN c.stored < 0 THEN 'NEGATIVE'
            WHEN c.stored + c.pending <> c.actual THEN 'INCONSISTENT'
            ELSE 'CONSISTENT' END AS status,
       c.pending,
       -- The original view's columns (migration 007), for queries written against it: the
       -- row's user's counters (exact in either mode; NULL without a row) and answers.</%def>
<%def name="consistency_rows()">  FROM (
% for c in model.COUNTERS:
    ${"" if loop.first else "UNION ALL"}
    SELECT '${c.name}'::text AS counter, t.${c.key}::bigint AS key, t.user_id::bigint AS user_id,
           t.${c.column}::bigint AS stored, ${truth.answers_of(c, "t")} AS actual,
           ${truth.pending_of(c, f"t.{c.key}", f"t.{K}")} AS pending, true AS row_exists
      FROM ${schema}.${c.table} t
% endfor
% for c in model.COUNTERS:
%   if c.created_by_answers:
    UNION ALL
    SELECT '${c.name}', a.${c.source}::bigint, a.user_id::bigint, NULL::bigint, count(*), 0, false
      FROM ${answers} a
     WHERE ${v.is_folded("a")}
       AND NOT EXISTS (SELECT 1 FROM ${schema}.${c.table} t WHERE t.${c.key} = a.${c.source})
     GROUP BY a.${c.source}, a.user_id
%   endif
% endfor
) c</%def>
-- name: view_counter_consistency_check --
${consistency_head()}
       (SELECT us.${U.column} FROM ${stats} us WHERE us.${U.key} = c.user_id)::bigint
           + ${truth.pending_of(U, "c.user_id")} AS user_stats_count,
       ${truth.answers_of(U, "c")} AS actual_answer_count,
       (SELECT dp.${P.column} FROM ${personality} dp WHERE dp.${P.key} = c.user_id)::bigint
           + ${truth.pending_of(P, "c.user_id")} AS personality_count
${consistency_rows()};

## The distributed (Citus) variant, selected by the bound context (objects.source_sql).
-- name: view_counter_consistency_check_distributed --
${consistency_head()}
       -- Distributed: joined on the shard key (Citus refuses a sub-select that refers to
       -- the union below), so that every part runs on the user's shard.
       us.${U.column}::bigint + COALESCE(n.pending, 0) AS user_stats_count,
       COALESCE(n.answers, 0) AS actual_answer_count,
       dp.${P.column}::bigint + COALESCE(n.pending, 0) AS personality_count
${consistency_rows()}
  LEFT JOIN ${stats} us ON us.${U.key} = c.user_id
  LEFT JOIN ${personality} dp ON dp.${P.key} = c.user_id
  LEFT JOIN (SELECT a.${U.source}, count(*) AS answers,
                    count(*) FILTER (WHERE a.${model.PENDING}) AS pending
               FROM ${answers} a GROUP BY a.${U.source}) n ON n.${U.source} = c.user_id;
