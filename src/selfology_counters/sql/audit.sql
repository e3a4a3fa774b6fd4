-- What is installed, for the audit of objects.py. Schema and names are bind parameters.

-- name: catalog_search_path --
-- The stamps were computed with this search_path (stamps.sql); so is the audit's md5.
SET LOCAL search_path = pg_catalog

-- name: installed_objects --
-- Our functions and view by name, and every non-internal trigger on the counted tables
-- (ours, and anybody else's: another counter trigger would count twice).
SELECT 'function' AS kind, p.proname AS name, NULL::text AS table_name, NULL::text AS enabled,
       obj_description(p.oid, 'pg_proc') AS stamp, md5(pg_get_functiondef(p.oid)) AS definition
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = $1 AND p.proname = ANY ($2::text[]) AND p.prokind = 'f'
UNION ALL
SELECT 'trigger', t.tgname, c.relname, t.tgenabled::text,
       obj_description(t.oid, 'pg_trigger'), md5(pg_get_triggerdef(t.oid))
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND NOT t.tgisinternal AND c.relname = ANY ($3::text[])
UNION ALL
SELECT 'view', c.relname, NULL, NULL, obj_description(c.oid, 'pg_class'), md5(pg_get_viewdef(c.oid))
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind = 'v' AND c.relname = ANY ($4::text[])

-- name: enable_trigger_sql --
SELECT format('ALTER TABLE %I.%I ENABLE TRIGGER %I', $1::text, $2::text, $3::text)

-- name: disable_trigger_sql --
SELECT format('ALTER TABLE %I.%I DISABLE TRIGGER %I', $1::text, $2::text, $3::text)
