-- This release's objects as this server renders them (probe.py): built in the session's
-- temporary schema over empty copies of our tables, read back, always rolled back. Needs
-- only the TEMP privilege every role has by default; takes no lock a writer waits for.

-- name: copy_tables --
-- Empty copies (columns and types: all a definition names) in pg_temp, under the same names.
% for table in (*model.COUNTED_TABLES, model.MODE_TABLE):
CREATE TEMP TABLE ${table} (LIKE ${schema}.${table});
% endfor

-- name: temp_schema --
SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()

-- name: shadowing_search_path --
-- $1 our schema. pg_temp listed last: our tables shadow their copies, so the copies' names
-- are written qualified (pg_temp.), like our own under search_path = pg_catalog.
SELECT set_config('search_path', format('pg_catalog, %I, pg_temp', $1::text), true)

-- name: view_roundtrip_function --
-- A view's definition as PostgreSQL writes it back once it has read its own text (what a
-- pg_dump and restore does: an alias it adds, such as "AS text" in a UNION branch, changes
-- the text, not what the view returns). Reading it again changes nothing more.
CREATE FUNCTION pg_temp.selfology_counters_view_roundtrip(definition text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    DROP VIEW IF EXISTS pg_temp.selfology_counters_roundtrip;
    EXECUTE 'CREATE TEMP VIEW selfology_counters_roundtrip AS ' || definition;
    RETURN pg_get_viewdef('pg_temp.selfology_counters_roundtrip'::regclass);
END;
$$

-- name: view_roundtrip --
SELECT pg_temp.selfology_counters_view_roundtrip($1::text)
