"""A fresh `migrate` and the adoption of the original database end in the same schema: the
same tables, the columns our code reads (and their NOT NULL), the constraints that keep the
counts right, the indexes the truth is counted through, and identical functions, triggers
and view, compared in the two catalogs."""

from __future__ import annotations

import re

import asyncpg

from selfology_counters import lifecycle, model, objects
from tests.test_adopt import original  # noqa: F401  (the fixture)

CATALOG = {
    "columns": """
        SELECT c.relname AS table_name, a.attname AS column_name, a.attnotnull AS not_null
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'selfology' AND c.relname = ANY ($1::text[])
           AND a.attnum > 0 AND NOT a.attisdropped
    """,
    # Constraints by what they enforce, not by name: kind, columns, referenced columns,
    # actions, and a CHECK's expression.
    "constraints": """
        SELECT c.relname AS table_name, k.contype::text AS kind,
               ARRAY(SELECT a.attname FROM unnest(k.conkey) AS x(n)
                       JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.n
                      ORDER BY a.attname)::text[] AS columns,
               f.relname AS references,
               ARRAY(SELECT a.attname FROM unnest(k.confkey) AS x(n)
                       JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.n
                      ORDER BY a.attname)::text[] AS referenced_columns,
               k.confdeltype::text AS on_delete, k.confupdtype::text AS on_update,
               k.convalidated AS validated,
               CASE WHEN k.contype = 'c' THEN pg_get_constraintdef(k.oid) END AS definition
          FROM pg_constraint k
          JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_class f ON f.oid = k.confrelid
         WHERE n.nspname = 'selfology' AND c.relname = ANY ($1::text[])
           AND k.contype IN ('p', 'u', 'f', 'c')
    """,
    # The leading column of every valid index: what a lookup by that column can use.
    "index_leads": """
        SELECT t.relname AS table_name, a.attname AS leading_column
          FROM pg_index i
          JOIN pg_class t ON t.oid = i.indrelid
          JOIN pg_namespace n ON n.oid = t.relnamespace
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
         WHERE n.nspname = 'selfology' AND t.relname = ANY ($1::text[]) AND i.indisvalid
    """,
}
DEFINITIONS = """
    SELECT 'function' AS kind, p.proname AS name, pg_get_functiondef(p.oid) AS definition
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'selfology' AND p.prokind = 'f'
    UNION ALL
    SELECT 'trigger', t.tgname, pg_get_triggerdef(t.oid)
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'selfology' AND NOT t.tgisinternal
    UNION ALL
    SELECT 'view', c.relname, pg_get_viewdef(c.oid)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'selfology' AND c.relkind = 'v'
"""
TABLES = list(model.COUNTED_TABLES)
# A cast the deparser shows on one side only: to bigint where the original's ids are integer,
# and (answer_counter_health, the original's view) to the original's own column types.
CAST = "(?:bigint|integer|timestamp without time zone)"
TYPE_CAST = re.compile(rf"\(((?:\w+\.)?(\w+))\)::{CAST}(?: AS \2\b)?|(?<=\))::{CAST}")
INPUT_CHECKS_NOT_ADOPTED = {
    ("onboarding_sessions", "c", ("user_id",)),
    ("onboarding_sessions", "c", ("status",)),
    ("user_answers_new", "c", ("question_json_id",)),
    ("user_answers_new", "c", ("answer_length",)),
    ("user_stats", "c", ("user_id",)),
    ("digital_personality", "c", ("user_id",)),
}
COUNTING_COLUMNS = {"user_id"} | {
    name for c in model.COUNTERS for name in (c.key, c.source, c.column)
}


async def catalog(dsn: str) -> dict[str, set[tuple[object, ...]]]:
    connection = await asyncpg.connect(dsn)
    try:
        found = {
            name: {_hashable(row) for row in await connection.fetch(sql, TABLES)}
            for name, sql in CATALOG.items()
        }
        async with connection.transaction():
            await connection.execute("SET LOCAL search_path = pg_catalog")
            found["objects"] = {_hashable(r) for r in await connection.fetch(DEFINITIONS)}
        assert (await objects.audit(connection)).healthy
        return found
    finally:
        await connection.close()


def _without_bigint_casts(obj: tuple[object, ...]) -> tuple[object, ...]:
    kind, name, definition = obj
    if kind != "view":
        return obj
    return kind, name, TYPE_CAST.sub(lambda m: m.group(1) or "", str(definition))


def _unique_as_one(constraints: set[tuple[object, ...]]) -> set[tuple[object, ...]]:
    return {(c[0], "u" if c[1] == "p" else c[1], *c[2:]) for c in constraints}


def _hashable(row: asyncpg.Record) -> tuple[object, ...]:
    return tuple(tuple(v) if isinstance(v, list) else v for v in row.values())


async def test_a_fresh_migrate_and_an_adopted_original_end_alike(
    second_empty_db: str,
    original: str,  # noqa: F811
) -> None:
    await lifecycle.apply(second_empty_db)
    adopted_by = await lifecycle.apply(original)  # migrate on the original: adopts it
    assert adopted_by.adoption is not None
    fresh, adopted = await catalog(second_empty_db), await catalog(original)

    # The original has columns of its own (the bot's analysis_status, personality traits);
    # every column we create is there. The columns counting depends on (keys, sources,
    # counters, user_id) are NOT NULL in both; adoption leaves the NULLs the original allows
    # in its other columns (timestamps, answer_length) alone rather than rewrite the bot's data.
    assert {c[:2] for c in fresh["columns"]} <= {c[:2] for c in adopted["columns"]}
    assert {c for c in fresh["columns"] if c[1] in COUNTING_COLUMNS} <= adopted["columns"]
    # Every constraint counting relies on is enforced there too (a primary key and a unique
    # constraint enforce the same; the original keys digital_personality by id and keeps
    # user_id UNIQUE). What adoption does not add are the fresh schema's input checks, which
    # the bot's existing rows may not meet: exactly these, and nothing else.
    missing = _unique_as_one(fresh["constraints"]) - _unique_as_one(adopted["constraints"])
    assert {(c[0], c[1], c[2]) for c in missing} == INPUT_CHECKS_NOT_ADOPTED
    # Every lookup the truth and the triggers make by a leading column has an index.
    assert fresh["index_leads"] <= adopted["index_leads"]
    # The same functions, triggers and view, to the character, and nothing else of the
    # original's counting left behind. The one difference: the original's ids are integer
    # (adoption does not rewrite a live table to widen them), so the view's deparsed text
    # shows casts to bigint where ours has none: compared without them.
    assert {_without_bigint_casts(o) for o in fresh["objects"]} == {
        _without_bigint_casts(o) for o in adopted["objects"]
    }
