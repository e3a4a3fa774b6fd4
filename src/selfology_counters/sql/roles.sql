## Least privilege (roles.py): an owner of the schema and of every object of ours, an
## application role that writes answers and sessions but no counter, and a read-only role.
## What each may do is derived here from the model, so that no counter column, and not the
## answers' xid (deferred mode's log order), is ever writable by anyone but the owner, whose
## SECURITY DEFINER functions (objects.sql) keep the counters.
##
## Role and schema names are bind parameters ($1 the schema, then the roles), made into
## identifiers by format('%I') only. Each query returns the statement that would make the
## catalog as wanted, so the same queries serve `roles --check` (report) and `roles` (apply).
<%!
    def names(items):
        """A text[] literal of plain identifiers (the model's, checked by model.py)."""
        return "ARRAY[" + ", ".join(f"'{item}'" for item in items) + "]::text[]"
%>
<%
    # The application role's writes, per table: (privilege, the columns it may not write;
    # None for a table-level privilege). A counter row its answers create (user_stats) is
    # the triggers' alone: no writes at all. TRUNCATE is nobody's but the owner's. The bot's
    # own code writes two counters (the session's "+ 1", the personality's read-modify-write):
    # allowed, so that its statements do not fail, and undone by the keep triggers
    # (objects.sql), so that no counter changes; a new personality row starts at the true
    # count whatever it says (init_personality), a new session's count is not the bot's.
    writes = {model.ANSWERS: [("INSERT", [model.XID]), ("UPDATE", [model.XID]), ("DELETE", None)]}
    for c in model.COUNTERS:
        if not c.created_by_answers:
            kept_on_insert = [] if c is model.PERSONALITY else [c.column]
            writes[c.table] = [("INSERT", kept_on_insert), ("UPDATE", []), ("DELETE", None)]
    readers = [c.reader for c in model.COUNTERS]
    # The original's repair functions the bot's cron script calls (migration 008's names):
    # they only ever make counters exact, so the application role may run them.
    repairs = [f.name for f in model.FUNCTIONS if f.public and f.short not in readers]
%>
## Our relations, sequences (those our tables own: identity and serial columns) and functions.
<%def name="ours()"><%
    relations = [*model.COUNTED_TABLES, model.MODE_TABLE, version_table,
                 *(v.name for v in model.VIEWS)]
    functions = [f.name for f in model.FUNCTIONS]
%>
ours AS (
    SELECT c.oid, c.relname, c.relkind, c.relowner, c.relacl, format('%I.%I', n.nspname, c.relname) AS ident
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = ANY (${names(relations)})),
our_sequences AS (
    SELECT s.oid, t.relname AS table_name, s.relowner, s.relacl,
           format('%I.%I', n.nspname, s.relname) AS ident
      FROM ours t
      JOIN pg_catalog.pg_depend d ON d.refobjid = t.oid AND d.classid = 'pg_catalog.pg_class'::regclass
                                 AND d.deptype IN ('a', 'i')
      JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
      JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace),
our_functions AS (
    SELECT p.oid, p.proname, p.proowner, p.proacl,
           format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)) AS ident
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = $1 AND p.proname = ANY (${names(functions)})),
## The rest of the schema: the bot's other tables (questions, analyses, its outbox, ...) and
## every sequence that is not one of our tables': the application role does there what the
## bot's code does, the read-only role reads. Their owners stay the operator's business.
other_relations AS (
    SELECT c.oid, c.relname, c.relkind, c.relowner, c.relacl, format('%I.%I', n.nspname, c.relname) AS ident
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm')
       AND c.relname <> ALL (${names(relations)}) AND NOT c.relispartition),
other_sequences AS (
    SELECT c.oid, c.relname, c.relowner, c.relacl, format('%I.%I', n.nspname, c.relname) AS ident
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind = 'S' AND c.oid NOT IN (SELECT oid FROM our_sequences))</%def>

-- name: current_role_name --
SELECT current_user::text

-- name: role_exists --
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)

-- name: role_attributes --
-- $1 a role, $2 the owner. What makes a role more than it should be:
-- a superuser or BYPASSRLS role ignores every privilege below, CREATEROLE can grant itself
-- any role, and a member of the owner acts as the owner.
SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
       EXISTS (SELECT 1 FROM pg_catalog.pg_roles o
                WHERE o.rolname = $2 AND o.oid <> r.oid
                  AND pg_catalog.pg_has_role(r.oid, o.oid, 'MEMBER')) AS member_of_owner,
       EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles o ON o.oid = m.roleid
                WHERE m.member = r.oid AND o.rolname = $2) AS direct_member_of_owner
  FROM pg_catalog.pg_roles r
 WHERE r.rolname = $1

-- name: can_set_replication_role --
-- PostgreSQL 15+: SET on a superuser-only parameter can be granted; the application role
-- must not turn the counter triggers off for its own writes.
SELECT pg_catalog.has_parameter_privilege($1::text, 'session_replication_role', 'SET')

-- name: create_role_sql --
SELECT format('CREATE ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', $1::text)

-- name: restrict_role_sql --
SELECT format('ALTER ROLE %I WITH NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', $1::text)

-- name: leave_owner_sql --
-- $1 the owner, $2 its member
SELECT format('REVOKE %I FROM %I', $1::text, $2::text)

-- name: revoke_set_replication_role_sql --
SELECT format('REVOKE SET ON PARAMETER session_replication_role FROM %I', $1::text)

-- name: password_sql --
-- $2 is a SCRAM-SHA-256 verifier computed by the client: the password itself never reaches
-- the server, its log or pg_stat_activity.
SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)

-- name: wrong_owners --
-- $1 schema, $2 the owner: the schema and every object of ours owned by someone else, with
-- the statement that hands it over (a table's sequences follow it).
WITH ${ours()}
SELECT what, owner, format('ALTER %s %s OWNER TO %I', kind, ident, $2::text) AS statement
  FROM (SELECT 'SCHEMA' AS kind, quote_ident(n.nspname) AS ident, 'schema ' || n.nspname AS what,
               n.nspowner AS owner_oid
          FROM pg_catalog.pg_namespace n WHERE n.nspname = $1
        UNION ALL
        SELECT CASE WHEN relkind = 'v' THEN 'VIEW' ELSE 'TABLE' END, ident,
               CASE WHEN relkind = 'v' THEN 'view ' ELSE 'table ' END || ident, relowner
          FROM ours
        UNION ALL
        SELECT 'FUNCTION', ident, 'function ' || ident, proowner FROM our_functions) o
  JOIN LATERAL (SELECT rolname AS owner FROM pg_catalog.pg_roles WHERE oid = o.owner_oid) r ON true
 WHERE owner <> $2
 ORDER BY what

-- name: wanted_privileges --
-- $1 schema, $2 the application role, $3 the read-only role: every privilege they should
-- hold on our objects, with the GRANT that gives it. Both read every relation of ours and
-- call the exact readers; the application role also writes what `writes` above says.
WITH ${ours()},
grantees AS (SELECT unnest(ARRAY[$2, $3]::text[]) AS grantee),
wanted (grantee, privilege, kind, object, col) AS (
    SELECT grantee, 'USAGE', 'SCHEMA', quote_ident($1), '' FROM grantees
    UNION ALL
    SELECT grantee, 'SELECT', 'TABLE', ident, '' FROM ours, grantees
    UNION ALL
    SELECT grantee, 'EXECUTE', 'FUNCTION', ident, '' FROM our_functions, grantees
     WHERE proname = ANY (${names(readers)})
    UNION ALL
    SELECT $2, 'EXECUTE', 'FUNCTION', ident, '' FROM our_functions WHERE proname = ANY (${names(repairs)})
    UNION ALL
    SELECT grantee, 'SELECT', 'TABLE', ident, '' FROM other_relations, grantees
    UNION ALL
    SELECT $2, p, 'TABLE', ident, '' FROM other_relations, unnest(ARRAY['INSERT', 'UPDATE', 'DELETE']) p
     WHERE relkind IN ('r', 'p')
    UNION ALL
    SELECT grantee, 'SELECT', 'SEQUENCE', ident, '' FROM other_sequences, grantees
    UNION ALL
    SELECT $2, 'USAGE', 'SEQUENCE', ident, '' FROM other_sequences
    UNION ALL
    SELECT $2, 'USAGE', 'SEQUENCE', ident, '' FROM our_sequences
     WHERE table_name = ANY (${names(writes)})
% for table, privileges in writes.items():
%   for privilege, kept in privileges:
    UNION ALL
%     if kept is None:
    SELECT $2, '${privilege}', 'TABLE', ident, '' FROM ours WHERE relname = '${table}'
%     else:
    SELECT $2, '${privilege}', 'TABLE', o.ident, a.attname::text
      FROM ours o JOIN pg_catalog.pg_attribute a ON a.attrelid = o.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE o.relname = '${table}' AND a.attname <> ALL (${names(kept)})
%     endif
%   endfor
% endfor
)
SELECT grantee, privilege, kind, object, col,
       CASE WHEN col = '' THEN format('GRANT %s ON %s %s TO %I', privilege, kind, object, grantee)
            ELSE format('GRANT %s (%I) ON %s %s TO %I', privilege, col, kind, object, grantee)
       END AS statement
  FROM wanted
 ORDER BY object, col, grantee, privilege

-- name: held_privileges --
-- $1 schema, $2 the application role, $3 the read-only role: every privilege they, and
-- PUBLIC, hold on our objects now (a NULL ACL is the default one: functions are executable
-- by PUBLIC), with the REVOKE that takes it away. Other roles are the operator's business.
-- PUBLIC may keep EXECUTE on the exact readers and USAGE on the sequences that count undone
-- counter writes (objects.sql installs them so).
WITH ${ours()},
acl (kind, object, col, item) AS (
    SELECT 'SCHEMA', quote_ident(n.nspname), '', pg_catalog.aclexplode(COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner)))
      FROM pg_catalog.pg_namespace n WHERE n.nspname = $1
    UNION ALL
    SELECT 'TABLE', ident, '', pg_catalog.aclexplode(COALESCE(relacl, pg_catalog.acldefault('r', relowner))) FROM ours
    UNION ALL
    SELECT 'TABLE', o.ident, a.attname::text, pg_catalog.aclexplode(a.attacl)
      FROM ours o JOIN pg_catalog.pg_attribute a ON a.attrelid = o.oid AND a.attnum > 0
     WHERE a.attacl IS NOT NULL
    UNION ALL
    SELECT 'SEQUENCE', ident, '', pg_catalog.aclexplode(COALESCE(relacl, pg_catalog.acldefault('s', relowner))) FROM our_sequences
    UNION ALL
    SELECT 'FUNCTION', ident, '', pg_catalog.aclexplode(COALESCE(proacl, pg_catalog.acldefault('f', proowner))) FROM our_functions
    UNION ALL
    SELECT 'TABLE', ident, '', pg_catalog.aclexplode(COALESCE(relacl, pg_catalog.acldefault('r', relowner))) FROM other_relations
    UNION ALL
    SELECT 'TABLE', o.ident, a.attname::text, pg_catalog.aclexplode(a.attacl)
      FROM other_relations o JOIN pg_catalog.pg_attribute a ON a.attrelid = o.oid AND a.attnum > 0
     WHERE a.attacl IS NOT NULL
    UNION ALL
    SELECT 'SEQUENCE', ident, '', pg_catalog.aclexplode(COALESCE(relacl, pg_catalog.acldefault('s', relowner))) FROM other_sequences
),
held AS (
    SELECT CASE WHEN (item).grantee = 0 THEN 'PUBLIC' ELSE r.rolname::text END AS grantee,
           (item).privilege_type AS privilege, kind, object, col
      FROM acl LEFT JOIN pg_catalog.pg_roles r ON r.oid = (item).grantee
     WHERE (item).grantee = 0 OR r.rolname IN ($2, $3))
SELECT grantee, privilege, kind, object, col,
       CASE WHEN col = '' THEN format('REVOKE %s ON %s %s FROM %s', privilege, kind, object,
                                      CASE WHEN grantee = 'PUBLIC' THEN grantee ELSE quote_ident(grantee) END)
            ELSE format('REVOKE %s (%I) ON %s %s FROM %s', privilege, col, kind, object,
                        CASE WHEN grantee = 'PUBLIC' THEN grantee ELSE quote_ident(grantee) END)
       END AS statement
  FROM held
 WHERE NOT (grantee = 'PUBLIC' AND kind = 'FUNCTION' AND privilege = 'EXECUTE'
            AND object IN (SELECT ident FROM our_functions WHERE proname = ANY (${names(readers)})))
   AND NOT (grantee = 'PUBLIC' AND kind = 'SEQUENCE' AND privilege = 'USAGE'
            AND object IN (SELECT ident FROM other_sequences
                            WHERE relname = ANY (${names(c.overridden_sequence for c in model.COUNTERS)})))
 ORDER BY object, col, grantee, privilege

-- name: lock_counted_tables_sql --
-- Handing a table to the owner locks it (ACCESS EXCLUSIVE). All four at once, before any
-- change, in the writers' order (the answers first: the DAO's INSERT ... SELECT locks them,
-- then the session): taken one by one as the changes came, a writer holding the answers and
-- waiting for its session's table made every attempt time out while the bot kept writing.
SELECT format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE',
              string_agg(format('%I.%I', $1::text, t), ', ' ORDER BY o))
  FROM unnest(${names(model.COUNTED_TABLES)}) WITH ORDINALITY AS x(t, o)
