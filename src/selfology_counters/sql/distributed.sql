-- Citus: recognising a coordinator, and distributing the tables by model.SHARD_KEY
-- (distributed.py). Nothing here runs on plain PostgreSQL.
<%
    S, U, P = model.SESSIONS, model.USER_STATS, model.PERSONALITY
    K = model.SHARD_KEY
    answers = f"{schema}.{model.ANSWERS}"
    sessions = f"{schema}.{S.table}"
%>
-- name: citus_installed --
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')

-- name: answers_distributed --
-- Asked only where Citus is installed: pg_dist_partition is its catalog.
SELECT EXISTS (SELECT 1 FROM pg_dist_partition
                WHERE logicalrelid = to_regclass(quote_ident($1) || '.${model.ANSWERS}'))

-- name: unsafe_triggers --
-- Citus refuses to distribute a table with triggers, and trigger DDL on a distributed table,
-- unless told that the triggers are safe: ours only touch rows of the shard they fire on
-- (every counter write names the shard key). For this transaction only.
SET LOCAL citus.enable_unsafe_triggers = on

-- name: sequential --
-- Distributing tables and then (re)creating functions in the same transaction: Citus
-- refuses function DDL after a parallel operation on a distributed table, so the whole
-- transaction uses one connection per node.
SET LOCAL citus.multi_shard_modify_mode = 'sequential'

-- name: pending --
-- Deferred mode's marker on Citus (model.PENDING: no xid order holds across nodes): false
-- for every answer there is (all counted), and indexes on the pending answers alone, which
-- an exact read and the fold look up and which stay as small as the backlog. Idempotent:
-- run before distributing, and by migrate on a database distributed before it existed.
ALTER TABLE ${answers} ADD COLUMN IF NOT EXISTS ${model.PENDING} boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS user_answers_new_pending_user_idx
    ON ${answers} (${K}) WHERE ${model.PENDING};
CREATE INDEX IF NOT EXISTS user_answers_new_pending_session_idx
    ON ${answers} (${S.source}) WHERE ${model.PENDING};

-- name: keys --
-- Before distributing (distributed.distribute, one transaction, our triggers dropped first;
-- they are reinstalled right after, in their distributed variant): the unique keys include
-- the shard key, as Citus requires, and the answers' foreign key loses ON UPDATE CASCADE,
-- which Citus refuses on the shard key (a session cannot move to another user there).
ALTER TABLE ${answers} DROP CONSTRAINT user_answers_new_session_fk;
ALTER TABLE ${answers} DROP CONSTRAINT user_answers_new_pkey, ADD PRIMARY KEY (id, ${K});
ALTER TABLE ${sessions} DROP CONSTRAINT ${S.table}_pkey, ADD PRIMARY KEY (${S.key}, ${K});
ALTER TABLE ${answers} ADD CONSTRAINT user_answers_new_session_fk
    FOREIGN KEY (${S.source}, ${K}) REFERENCES ${sessions} (${S.key}, ${K}) ON DELETE CASCADE;

-- name: distribute --
-- The four tables distributed, co-located (``also``: more tables that follow the sessions,
-- the benchmark's bare one), and the mode row a reference table (a copy on every node,
-- which the triggers on the shards read).
<% tables = (U.table, P.table, model.ANSWERS, *context.get("also", ())) %>
SELECT create_reference_table('${schema}.${model.MODE_TABLE}');
SELECT create_distributed_table('${sessions}', '${K}');
% for table in tables:
SELECT create_distributed_table('${schema}.${table}', '${K}', colocate_with => '${sessions}');
% endfor
-- The rows were copied into the shards; the coordinator's own copy is dead weight.
% for table in (model.MODE_TABLE, S.table, *tables):
SELECT truncate_local_data_after_distributing_table('${schema}.${table}');
% endfor
