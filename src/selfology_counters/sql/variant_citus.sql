## Citus: this variant's pieces, where model.SHARD_KEY distributes every table (distributed.py)
## and the counter mode table is a reference table. variant_plain.sql defines the same defs for
## one PostgreSQL; sqlfiles.render chooses the file, and a template calls them through its
## namespace (<%namespace name="v" file="${context['variant']}"/>), so that no template asks
## which variant it renders. Each def says why Citus needs it. Defs named _like_this are this
## file's own helpers.
<%def name="_of(a)">${f"{a}." if a else ""}</%def>
## A condition that keeps a statement on the shard of ``user`` (a value, or ANY (array)),
## appended to a WHERE on the rows of ``alias`` (none: the table's own columns). A trigger
## fires on a shard, and each counter write in it must name the shard key, so that Citus
## routes it to the co-located shard on the same node; a write it cannot route is refused
## ("cannot execute a distributed query from a query on a shard"). A read or a lock that names
## it goes to one shard (one snapshot) instead of all of them.
<%def name="same_shard(alias, user)"> AND ${_of(alias)}${model.SHARD_KEY} = ${user}</%def>
## Whether answer ``a`` (an alias; none: the answers' own columns) is pending, or folded: its
## flag, model.PENDING. No order of transactions holds across nodes, so there is no horizon:
## a fold clears the flag, shard by shard (deferred.sql).
<%def name="is_pending(a=None)">${_of(a)}${model.PENDING}</%def>
<%def name="is_folded(a=None)">NOT ${_of(a)}${model.PENDING}</%def>
##
## objects.sql: the counter functions.
##
## now() for a CASE or COALESCE: Citus refuses a non-immutable function there (it could not
## evaluate it once for the shard), so the function reads it into now_ first.
<%def name="now_()">now_</%def>
<%def name="declare_now()"> now_ timestamptz := now();</%def>
## Our counter writes outside a trigger, for the keep triggers (variant_plain.sql says what
## the mark is). The keep triggers fire on the shards, in the workers' sessions, where
## set_config in the coordinator's is not seen; Citus sends a SET LOCAL to every node this
## transaction writes on, now and later, when told to (citus.propagate_set_commands), but
## only from a transaction block or a DO block: not from a function called by a statement
## outside a transaction block (`SELECT recalculate_answer_count(5)`), hence the DO.
<%def name="mark_counting()">    DO $mark$
    BEGIN
        SET LOCAL citus.propagate_set_commands = 'local';
        SET LOCAL ${model.COUNTING_MARK} = 'on';
    END;
    $mark$;</%def>
## No horizon for a DELETE or UPDATE of answers to read: an answer's flag says whether it is
## folded, and the row lock on it serialises this statement with a fold that clears it
## (whichever comes second sees the other's row version).
<%def name="read_horizon(fold_lock)"></%def>
## An answer of a trigger's transition table that the stored counters hold: not pending. A
## fold is an UPDATE that clears the flag, so the update trigger counts the folded answers
## (objects.sql, MOVED): +1 where the new row is folded and the old was not.
<%def name="folded_in_trigger()">NOT ${model.PENDING}</%def>
## The inserted answers the insert trigger counts: the ones not marked pending (the column's
## default marks them in deferred mode, set_mode; an answer inserted pending on purpose is the
## fold's to count).
<%def name="counted_inserts()">new_answers WHERE NOT ${model.PENDING}</%def>
## apply: its user_ids hold every user of the statement's rows, zero deltas included (the
## note, rendered into the function's comment, says why), kept as owners; the zeros dropped.
<%def name="apply_users_note()">-- Distributed: user_ids holds every user of the statement's rows, zero deltas included (a
-- move between two sessions of one user nets zero for the user): the sessions' updates name
-- them, which routes them to this shard; the zeros are dropped before the users' updates.
</%def>
<%def name="declare_owners()"> owners bigint[] := user_ids;</%def>
<%def name="drop_zero_user_deltas()">    SELECT array_agg(d.key ORDER BY d.key), array_agg(d.delta ORDER BY d.key)
      INTO user_ids, user_deltas
      FROM unnest(user_ids, user_deltas) AS d(key, delta) WHERE d.delta <> 0;
</%def>
## on_update: a fold clears the pending flag, and that moves a count (folded_in_trigger); the
## users' deltas keep the zeros, since apply needs every user of the rows (apply_users_note);
## and no answer changes user on Citus, so no session moved means nothing to apply.
<%def name="pending_flag_column()">, ${model.PENDING}</%def>
<%def name="user_deltas_kept()"></%def>
<%def name="nothing_moved()">s_ids IS NULL</%def>
## fill_answer: an answer moved to another session stays with its user (its comment says why).
<%def name="answer_follows_session()">        -- Distributed: an answer keeps its user (the shard key), so its new session must
        -- be one of that user's. (An INSERT without user_id never gets here: Citus refuses
        -- it first, since it cannot tell which shard the row goes to.)
        PERFORM 1 FROM ${schema}.${model.SESSIONS.table} s
          WHERE s.${model.SESSIONS.key} = NEW.${model.SESSIONS.source} AND s.${model.SHARD_KEY} = OLD.${model.SHARD_KEY} FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'answer % cannot move to session %: on Citus an answer stays with its user %, and that session is not one of theirs',
                  OLD.id, NEW.${model.SESSIONS.source}, OLD.${model.SHARD_KEY}
                  USING ERRCODE = 'feature_not_supported';
        END IF;</%def>
## init_personality and recalculate_answer_count: nothing to hold. There is no horizon, whose
## read could be stale or moved by a fold meanwhile: whether an answer is folded is its own
## flag (is_folded).
<%def name="refuse_stale_mode()"></%def>
<%def name="hold_horizon()"></%def>
## function_keep_*: the undone writes counted on every node (its comment says why).
<%def name="overridden_per_node(c)">    -- Distributed (Citus): the trigger fires on the shards, so the sequence must exist on
    -- every node. A view over it makes it a dependency of an object Citus distributes: Citus
    -- creates both on every node, and on every node added later; each node counts the undone
    -- writes of its shards, and check adds the nodes' views up (audit.sql). A worker's copy
    -- starts at its own value (Citus gives each node a range), hence the count from the start.
    CREATE OR REPLACE VIEW ${schema}.${c.overridden_on_node} AS
    SELECT CASE WHEN s.is_called THEN s.last_value - q.seqstart + 1 ELSE 0 END AS writes
      FROM ${schema}.${c.overridden_sequence} s, pg_catalog.pg_sequence q
     WHERE q.seqrelid = '${schema}.${c.overridden_sequence}'::regclass;
</%def>
##
## health.sql: check and repair.
##
## integrity: a session is found by its id and its user, the shard key (same_shard); an answer
## whose user is not its session's then shows as an answer without a session (no session of
## that id on its user's shard), and this column stays 0.
<%def name="answers_with_another_user(users)">       0::bigint AS answers_with_another_user</%def>
##
## bench.sql and the tables.
##
## What the answers' foreign key to their session does when the session's key changes:
## nothing. Citus refuses ON UPDATE CASCADE on the shard key, which the key includes there (a
## session cannot move to another user; distributed.sql, keys).
<%def name="session_fk_on_update()"></%def>
