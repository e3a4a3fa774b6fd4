## Stamps: each installed object carries, as its comment, the digest of the block it was
## installed from (source=, from objects.py) and the md5 of its definition as PostgreSQL
## reports it (definition=), computed right after it was created. The audit recomputes the
## second: an object edited by hand (CREATE OR REPLACE keeps the comment) no longer matches.
## The definitions are read with search_path = pg_catalog, so every name in them is
## schema-qualified whatever the session's search_path; the audit reads them the same way.
<%def name="with_catalog_path(body)">DO $stamp$
DECLARE
    saved text := current_setting('search_path');
BEGIN
    PERFORM set_config('search_path', 'pg_catalog', true);
    ${body}
    PERFORM set_config('search_path', saved, true);
END;
$stamp$;</%def>

-- name: function --
${with_catalog_path(f"""EXECUTE format('COMMENT ON FUNCTION %s IS %L', '{schema}.{obj.name}({obj.signature})'::regprocedure,
        '{source}' || ' definition=' || md5(pg_get_functiondef('{schema}.{obj.name}({obj.signature})'::regprocedure)));""")}

-- name: trigger --
${with_catalog_path(f"""EXECUTE format('COMMENT ON TRIGGER %I ON %s IS %L', '{obj.name}', '{schema}.{obj.table}'::regclass,
        '{source}' || ' definition=' || (SELECT md5(pg_get_triggerdef(t.oid)) FROM pg_trigger t
                                           WHERE t.tgrelid = '{schema}.{obj.table}'::regclass AND t.tgname = '{obj.name}'));""")}

-- name: view --
${with_catalog_path(f"""EXECUTE format('COMMENT ON VIEW %s IS %L', '{schema}.{obj.name}'::regclass,
        '{source}' || ' definition=' || md5(pg_get_viewdef('{schema}.{obj.name}'::regclass)));""")}
