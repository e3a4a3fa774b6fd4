"""The counter model is the one place its facts live: the templates that install and check the
counters name no counter table or column themselves, the lock order of every rendered writer
follows the model, the catalog has what the model says, and every versioned object name
written in the docs, examples and tests is one the model defines."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

from selfology_counters import model, objects
from selfology_counters.sqlfiles import load, query

ROOT = Path(__file__).resolve().parent.parent
# Templates that spell counter tables and columns themselves, and why: what they write is
# fixed text, not the model's current facts.
SPELLED_ON_PURPOSE = {
    "schema_v1.sql": "revision 0001's tables, released: their DDL is history",
    "drop_schema_v1.sql": "revision 0001's downgrade, released",
    "adopt.sql": "the original system's layout as the bot's migrations left it",
    "compare.sql": "the seed's counter strategies, written as its document shows them",
    "strategy_007.sql": "the original's migration 007, measured as it was",
    "strategy_matview.sql": "a strategy of the seed's document",
    "strategy_pg_ivm.sql": "pg_ivm's IMMVs, written as a user of pg_ivm would",
}
RENDERED_FROM_MODEL = sorted(
    path.name
    for path in (ROOT / "src" / "selfology_counters" / "sql").glob("*.sql")
    if path.name not in SPELLED_ON_PURPOSE
)
COUNTER_FACTS = {model.ANSWERS} | {name for c in model.COUNTERS for name in (c.table, c.column)}
VERSIONED_NAME = re.compile(r"\b" + model.PREFIX + r"\w+?_v\d+\b")


@pytest.mark.parametrize("filename", RENDERED_FROM_MODEL)
def test_templates_take_every_counter_table_and_column_from_the_model(filename: str) -> None:
    code = [
        line.split("--")[0]
        for line in load(filename).splitlines()
        if not line.lstrip().startswith(("--", "#"))  # SQL, Mako and Python comments
    ]
    typed = {fact for fact in COUNTER_FACTS for line in code if re.search(rf"\b{fact}\b", line)}
    assert typed == set(), f"{filename} names {typed} itself instead of taking it from model.py"


def first_write(sql: str, counter: model.Counter) -> int:
    """Where ``sql`` first locks or writes ``counter``'s table."""
    pattern = rf"(UPDATE|FROM|INTO)\s+\"selfology\"\.{counter.table}\b"
    found = re.search(pattern, sql)
    assert found, f"{counter.table} not written"
    return found.start()


@pytest.mark.parametrize("function", ["apply", "on_insert"])
def test_rendered_triggers_lock_in_the_model_order(function: str) -> None:
    sql = objects.source_sql(model.FUNCTION[function])
    positions = [first_write(sql, counter) for counter in model.COUNTERS]
    assert positions == sorted(positions)


def test_repair_statements_exist_for_every_counter_and_only_those_create_rows() -> None:
    for counter in model.COUNTERS:
        assert counter.table in query("health.sql", f"lock_{counter.short}")
        assert counter.column in query("health.sql", f"recount_{counter.short}")
        if counter.created_by_answers:
            assert counter.table in query("health.sql", f"create_missing_{counter.short}")
        else:
            with pytest.raises(KeyError):
                query("health.sql", f"create_missing_{counter.short}")


async def test_the_catalog_has_what_the_model_says(conn: asyncpg.Connection) -> None:
    columns = {
        (r["table_name"], r["column_name"]): r["data_type"]
        for r in await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'selfology'"
        )
    }
    for counter in model.COUNTERS:
        assert columns[(counter.table, counter.column)] == "integer"
        assert (counter.table, counter.key) in columns
        assert (model.ANSWERS, counter.source) in columns
        if counter.touched:
            assert columns[(counter.table, counter.touched)].startswith("timestamp")
    installed = await conn.fetch(
        "SELECT proname AS name FROM pg_proc WHERE proname LIKE 'selfology\\_counters\\_%'"
        " UNION ALL SELECT tgname FROM pg_trigger WHERE tgname LIKE 'selfology\\_counters\\_%'"
    )
    assert sorted(r["name"] for r in installed) == sorted(
        o.name for o in (*model.FUNCTIONS, *model.TRIGGERS) if not o.public
    )


def test_every_object_name_written_outside_the_model_is_the_models() -> None:
    known = {o.name for o in model.OBJECTS}
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("examples/*.py")]
    files += [p for p in ROOT.glob("tests/*.py") if p.name != "test_model.py"]
    unknown = {
        (path.name, name)
        for path in files
        for name in VERSIONED_NAME.findall(path.read_text(encoding="utf-8"))
        if name not in known
    }
    assert unknown == set()


# What release 0.1 installed under each name. The rule (docs/COUNTER_ARCHITECTURE.md): a
# released body may change in place (the audit sees the new source digest and `migrate`
# reinstalls it), but what callers and CREATE OR REPLACE depend on may not: a function's
# argument types and a view's leading columns. Changing those needs a new version suffix, so
# that old and new live side by side during a rolling deploy; this test fails until then.
RELEASED_SIGNATURES = {
    "selfology_counters_apply_v1": "bigint[], integer[], bigint[], integer[]",
    **{
        f"selfology_counters_{short}_v1": ""
        for short in (
            "on_insert",
            "on_delete",
            "on_update",
            "on_truncate",
            "fill_answer",
            "init_personality",
            "freeze_session_id",
        )
    },
}
RELEASED_VIEW_COLUMNS = {
    "counter_consistency_check": [
        ("counter", "text"),
        ("key", "bigint"),
        ("user_id", "bigint"),
        ("stored", "bigint"),
        ("actual", "bigint"),
        ("drift", "bigint"),
        ("status", "text"),
    ],
}


def test_a_released_name_keeps_its_signature() -> None:
    for function in model.FUNCTIONS:
        if function.name in RELEASED_SIGNATURES:
            assert function.signature == RELEASED_SIGNATURES[function.name], function.name


async def test_a_released_view_keeps_its_columns(conn: asyncpg.Connection) -> None:
    for name, released in RELEASED_VIEW_COLUMNS.items():
        columns = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'selfology' AND table_name = $1 ORDER BY ordinal_position",
            name,
        )
        assert [tuple(c) for c in columns][: len(released)] == released
