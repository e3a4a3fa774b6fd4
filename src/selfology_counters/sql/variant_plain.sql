## One PostgreSQL: this variant's pieces. variant_citus.sql defines the same defs for Citus,
## where model.SHARD_KEY distributes every table; sqlfiles.render chooses the file, and a
## template calls them through its namespace (<%namespace name="v" file="${context['variant']}"/>),
## so that no template asks which variant it renders. Each def is named for what it means; on
## one PostgreSQL most of them are the plain statement, or nothing. Why Citus needs each piece
## is said at its def in variant_citus.sql. Defs named _like_this are this file's own helpers.
<%def name="_of(a)">${f"{a}." if a else ""}</%def>
<%def name="_horizon()">(SELECT horizon FROM ${schema}.${model.MODE_TABLE})</%def>
<%def name="_snapshot_may_be_stale()">current_setting('transaction_isolation') <> 'read committed'</%def>
## A condition that keeps a statement on the shard of ``user`` (a value, or ANY (array)),
## appended to a WHERE on the rows of ``alias`` (none: the table's own columns): none here.
<%def name="same_shard(alias, user)"></%def>
## Whether answer ``a`` (an alias; none: the answers' own columns) is pending, or folded: at or
## above the horizon, or below it (deferred mode; in immediate mode the horizon is past every
## transaction id, so nothing is pending).
<%def name="is_pending(a=None)">${_of(a)}${model.XID} >= ${_horizon()}</%def>
<%def name="is_folded(a=None)">${_of(a)}${model.XID} < ${_horizon()}</%def>
##
## objects.sql: the counter functions.
##
## now() for a CASE or COALESCE, and the declaration that reads it first: now() itself here.
<%def name="now_()">now()</%def>
<%def name="declare_now()"></%def>
## Our counter writes outside a trigger, for the keep triggers (function_keep_*). The mark
## lasts to the end of the transaction, past the function's return (a function's SET clause
## restores only the settings it names); it is honoured only for the tables' owner, so what
## it lets through afterwards is that role's own writes, never the application's.
<%def name="mark_counting()">    PERFORM set_config('${model.COUNTING_MARK}', 'on', true);</%def>
## The horizon for a DELETE or UPDATE of answers, into h: only answers below it are in the
## stored counters, so only those are taken out of them (a pending answer simply stops being
## pending). In deferred mode the row is read FOR SHARE: a fold moving the horizon finishes
## first, or waits for this transaction, so no answer is both folded and deleted unseen. In
## immediate mode no fold runs, and a switch of mode waits for this statement's table lock.
## Under REPEATABLE READ or SERIALIZABLE the plain read sees the mode of the transaction's
## snapshot, which a switch since may have changed: the row is then read FOR SHARE too, which
## fails with a serialization error when the mode row changed after the snapshot (a
## transaction that cannot be counted right is refused, never counted wrong). Under READ
## COMMITTED in deferred mode the fold's turn (``fold_lock``, objects.sql) is taken shared
## and the horizon read again after it: a fold waiting for the turn queues the next deletes
## behind it, where share locks on the mode row let a stream of deletes starve it.
<%def name="read_horizon(fold_lock)">
    SELECT horizon INTO h FROM ${schema}.${model.MODE_TABLE};
    IF ${_snapshot_may_be_stale()} THEN
        SELECT horizon INTO h FROM ${schema}.${model.MODE_TABLE} FOR SHARE;
    ELSIF h <> ${model.HORIZON_IMMEDIATE} THEN
        PERFORM pg_advisory_xact_lock_shared(${fold_lock});
        SELECT horizon INTO h FROM ${schema}.${model.MODE_TABLE};
    END IF;</%def>
## An answer of a trigger's transition table that the stored counters hold: below the horizon
## read_horizon read into h.
<%def name="folded_in_trigger()">${model.XID} < h</%def>
## The inserted answers the insert trigger counts: all of them.
<%def name="counted_inserts()">new_answers</%def>
## apply: the comment on its user_ids (nothing to add), its declarations, and the zero deltas
## it drops (none: its callers leave them out).
<%def name="apply_users_note()"></%def>
<%def name="declare_owners()"></%def>
<%def name="drop_zero_user_deltas()"></%def>
## on_update: the columns whose change moves a count (any other update returns at once), the
## users whose deltas apply is given (those whose count changes), and when nothing moved.
<%def name="pending_flag_column()"></%def>
<%def name="user_deltas_kept()"> HAVING sum(d) <> 0</%def>
<%def name="nothing_moved()">s_ids IS NULL AND u_ids IS NULL</%def>
## fill_answer: an answer moved to another session (or inserted without its user) takes the
## session's user.
<%def name="answer_follows_session()">        SELECT s.${model.SHARD_KEY} INTO NEW.${model.USER_STATS.source}
          FROM ${schema}.${model.SESSIONS.table} s WHERE s.${model.SESSIONS.key} = NEW.${model.SESSIONS.source} FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'onboarding session % does not exist', NEW.${model.SESSIONS.source}
                  USING ERRCODE = 'foreign_key_violation';
        END IF;</%def>
## init_personality: as read_horizon, a count under a snapshot older than the mode row is
## refused if the mode changed since (the FOR SHARE read fails).
<%def name="refuse_stale_mode()">    IF ${_snapshot_may_be_stale()} THEN  -- as read_horizon_row: refused if the mode changed
        PERFORM 1 FROM ${schema}.${model.MODE_TABLE} FOR SHARE;
    END IF;
</%def>
## recalculate_answer_count: the mode row held, so no fold moves the horizon meanwhile.
<%def name="hold_horizon()">    PERFORM 1 FROM ${schema}.${model.MODE_TABLE} FOR SHARE;  -- no fold moves the horizon meanwhile
</%def>
## function_keep_*: where its sequence of undone writes is counted: this one node.
<%def name="overridden_per_node(c)"></%def>
##
## health.sql: check and repair.
##
## integrity: answers whose user is not their session's (the foreign key keeps them equal
## unless it is disabled, deferred or dropped).
<%def name="answers_with_another_user(users)"><% U = model.USER_STATS.source %>       (SELECT count(*) FROM ${schema}.${model.ANSWERS} a
          JOIN ${schema}.${model.SESSIONS.table} s ON s.${model.SESSIONS.key} = a.${model.SESSIONS.source}
         WHERE ${f"(a.{U} = ANY ({users}) OR s.{U} = ANY ({users})) AND " if users else ""}a.${U} <> s.${U})
           AS answers_with_another_user</%def>
##
## bench.sql and the tables.
##
## What the answers' foreign key to their session does when the session's key changes: the
## answers follow it.
<%def name="session_fk_on_update()"> ON UPDATE CASCADE</%def>
