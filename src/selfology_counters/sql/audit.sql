-- What is installed, for the audit of objects.py. Schema and names are bind parameters.

-- name: catalog_search_path --
-- The stamps were computed with this search_path (stamps.sql); so is the audit's md5.
SET LOCAL search_path = pg_catalog

-- name: installed_objects --
-- Our functions and view by name, and every non-internal trigger on the counted tables
-- (ours, and anybody else's: another counter trigger would count twice); each definition's
-- md5 (the stamps') and text (probe.py's, when a stamp cannot say).
SELECT 'function' AS kind, p.proname AS name, NULL::text AS table_name, NULL::text AS enabled,
       obj_description(p.oid, 'pg_proc') AS stamp, md5(pg_get_functiondef(p.oid)) AS definition,
       pg_get_functiondef(p.oid) AS definition_text
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = $1 AND p.proname = ANY ($2::text[]) AND p.prokind = 'f'
UNION ALL
SELECT 'trigger', t.tgname, c.relname, t.tgenabled::text,
       obj_description(t.oid, 'pg_trigger'), md5(pg_get_triggerdef(t.oid)), pg_get_triggerdef(t.oid)
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND NOT t.tgisinternal AND c.relname = ANY ($3::text[])
   -- Another trigger matters only if it can change what we count: any on the answers, or
   -- one whose function names a counter column; an operator acknowledges a known one with
   -- COMMENT ON TRIGGER ... IS 'selfology-counters: acknowledged'. The original system's
   -- counter triggers ($5) are never acknowledged: each counts a second time next to ours.
   AND (t.tgname LIKE 'selfology\_counters\_%'
        OR t.tgname = ANY ($5::text[])
        OR (coalesce(obj_description(t.oid, 'pg_trigger'), '') <> 'selfology-counters: acknowledged'
            AND (c.relname = '${model.ANSWERS}'
                 OR (SELECT p.prosrc FROM pg_proc p WHERE p.oid = t.tgfoid)
                    ~ '${"|".join(c.column for c in model.COUNTERS)}')))
UNION ALL
SELECT 'view', c.relname, NULL, NULL, obj_description(c.oid, 'pg_class'), md5(pg_get_viewdef(c.oid)),
       pg_get_viewdef(c.oid)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind = 'v' AND c.relname = ANY ($4::text[])

-- name: disabled_constraint_triggers --
-- A foreign key whose internal triggers are disabled (ALTER TABLE ... DISABLE TRIGGER ALL)
-- no longer keeps each answer's user equal to its session's.
SELECT c.relname AS table_name, t.tgname AS name, k.conname AS constraint_name
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_constraint k ON k.oid = t.tgconstraint
 WHERE n.nspname = $1 AND t.tgisinternal AND t.tgenabled = 'D' AND c.relname = ANY ($2::text[])
 ORDER BY 1, 2

-- name: replica_settings --
-- session_replication_role = replica set for this database or a role: every write of such a
-- session fires no ordinary trigger, so nothing is counted.
SELECT CASE WHEN s.setrole = 0 THEN 'database ' || current_database()
            ELSE 'role ' || r.rolname END AS applies_to
  FROM pg_db_role_setting s
  LEFT JOIN pg_roles r ON r.oid = s.setrole
 WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
   AND EXISTS (SELECT 1 FROM unnest(s.setconfig) AS c WHERE c = 'session_replication_role=replica')
 ORDER BY 1

-- name: subscriptions --
-- Logical replication applies as session_replication_role = replica: into our tables, it
-- fires row triggers only, so our statement triggers never count what it applies, not even
-- ENABLE ALWAYS ones: a subscriber must receive the counters too (docs/COUNTER_ARCHITECTURE.md).
SELECT s.subname AS subscription, c.relname AS table_name
  FROM pg_subscription_rel sr
  JOIN pg_subscription s ON s.oid = sr.srsubid
  JOIN pg_class c ON c.oid = sr.srrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = ANY ($2::text[])
 ORDER BY 1, 2

-- name: enable_internal_trigger_sql --
-- A foreign key's internal trigger: its name is the catalog's, not the model's, so it is
-- quoted by the server.
SELECT format('ALTER TABLE %I.%I ENABLE TRIGGER %I', $1::text, $2::text, $3::text)

-- name: partitioned_tables --
-- A partitioned counted table and how many partitions hold its rows. Our statement triggers
-- sit on the partitioned table and fire only for statements that name it: a write naming a
-- partition, and ATTACH, DETACH or DROP PARTITION, change the answers uncounted.
SELECT c.relname AS table_name,
       (SELECT count(*) FROM pg_partition_tree(c.oid::regclass) WHERE isleaf) AS partitions
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = ANY ($2::text[]) AND c.relkind = 'p'
 ORDER BY 1

<%def name="overridden_writes_head()">-- $1 schema. Per counter, the writes to its column that were not ours and were undone (the
-- keep triggers, objects.sql, count them in a sequence) and since when (the sequence's
-- comment, set when it was created). last_value is NULL until the first such write.</%def>
-- name: overridden_writes --
${overridden_writes_head()}
% for c in model.COUNTERS:
${"" if loop.first else "UNION ALL"}
SELECT '${c.name}' AS counter, COALESCE(q.last_value, 0) AS writes,
       obj_description(s.oid, 'pg_class') AS since
  FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
  LEFT JOIN pg_sequences q ON q.schemaname = n.nspname AND q.sequencename = s.relname
 WHERE n.nspname = $1 AND s.relname = '${c.overridden_sequence}'
% endfor

-- name: overridden_writes_distributed --
${overridden_writes_head()}
-- Distributed (Citus): the keep triggers fire on the shards and count on the node that holds
-- them (objects.sql, function_keep_*); every node's count, added up. A node that cannot be
-- asked adds nothing. `since`: the coordinator's sequence.
% for c in model.COUNTERS:
${"" if loop.first else "UNION ALL"}
SELECT '${c.name}' AS counter,
       COALESCE((SELECT sum(r.result::bigint)
                   FROM run_command_on_all_nodes(
                            format('SELECT writes FROM %I.%I', $1::text, '${c.overridden_on_node}')) r
                  WHERE r.success), 0)::bigint AS writes,
       obj_description(s.oid, 'pg_class') AS since
  FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
 WHERE n.nspname = $1 AND s.relname = '${c.overridden_sequence}'
% endfor

-- name: stale_copies --
-- $1 schema. A column named after a counter on a counted table that is not that counter's
-- (the original's migration 003 copied the user's total into every session row as
-- onboarding_sessions.total_answers_lifetime): nothing keeps it since adoption.
SELECT c.relname AS table_name, a.attname AS column_name
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
   AND c.relname IN (${", ".join(f"'{t}'" for t in model.COUNTED_TABLES)})
   AND a.attname IN (${", ".join(f"'{c.column}'" for c in model.COUNTERS)})
   AND (c.relname, a.attname) NOT IN (${", ".join(f"('{c.table}', '{c.column}')" for c in model.COUNTERS)})
 ORDER BY 1, 2

-- name: xid_default --
-- $1 schema. The default of the answers' transaction-id column as PostgreSQL reports it
-- (NULL: none): deferred mode's order of answers. Another default (0, say) makes every new
-- answer look folded, so deferred mode would never count it.
SELECT pg_get_expr(d.adbin, d.adrelid) AS expression
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = $1 AND c.relname = '${model.ANSWERS}' AND a.attname = '${model.XID}'
   AND NOT a.attisdropped

-- name: foreign_horizon --
-- $1 schema. In deferred mode, a horizon above every transaction id this cluster has given out
-- (a restore from another cluster, objects.sql): the next id, and the horizon.
SELECT m.horizon, pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_id
  FROM ${schema}.${model.MODE_TABLE} m
 WHERE m.mode = '${model.DEFERRED}' AND m.horizon > pg_snapshot_xmax(pg_current_snapshot())::text::bigint
