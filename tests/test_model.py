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
RENDERED_FROM_MODEL = ("objects.sql", "truth.sql", "health.sql", "drop_objects.sql", "stamps.sql")
COUNTER_FACTS = {model.ANSWERS} | {name for c in model.COUNTERS for name in (c.table, c.column)}
VERSIONED_NAME = re.compile(r"\b" + model.PREFIX + r"\w+?_v\d+\b")


@pytest.mark.parametrize("filename", RENDERED_FROM_MODEL)
def test_templates_take_every_counter_table_and_column_from_the_model(filename: str) -> None:
    code = [
        line.split("--")[0]
        for line in load(filename).splitlines()
        if not line.lstrip().startswith(("--", "##"))
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
        o.name for o in (*model.FUNCTIONS, *model.TRIGGERS)
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
