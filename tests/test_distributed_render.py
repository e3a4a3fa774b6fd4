"""The distributed (Citus) variant, as rendered: checked without a Citus server.

Inside a trigger on a shard, Citus runs a counter write only if it names the shard key (it
then stays on the co-located shard); without it Citus refuses the write, or (an UPDATE ...
FROM unnest() in Citus 13.2.2) crashes the worker at COMMIT PREPARED. tests/test_citus.py
runs the variant on a real cluster; this keeps every edit of the templates to the rule.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from selfology_counters import model, objects, sqlfiles
from selfology_counters.sqlfiles import load

TEMPLATES = sorted(p.name for p in (Path(sqlfiles.__file__).parent / "sql").glob("*.sql"))

COUNTER_TABLES = {c.table for c in model.COUNTERS}
# Each statement of a function body that writes or row-locks a counter table.
WRITES = re.compile(
    r"\b(?:UPDATE|PERFORM 1 FROM|INSERT INTO)\s+\"selfology\"\.(\w+)\b[^;]*;", re.IGNORECASE
)


def counter_writes(sql: str) -> list[str]:
    return [m.group(0) for m in WRITES.finditer(sql) if m.group(1) in COUNTER_TABLES]


@pytest.mark.parametrize("function", model.FUNCTIONS, ids=lambda f: f.short)
def test_every_counter_write_of_the_distributed_variant_names_the_shard_key(
    function: model.DbObject,
) -> None:
    sql = objects.source_sql(function, distributed=True)
    for statement in counter_writes(sql):
        if statement.upper().startswith("INSERT"):
            columns = statement[statement.index("(") : statement.index(")")]
            assert model.SHARD_KEY in columns, (function.short, statement)  # Citus routes by it
            continue
        where = statement[statement.upper().index("WHERE") :]
        # Compared with a value (a variable, a parameter, ANY of an array), not only joined to
        # unnest()'s column: Citus must see which shard before it runs the statement.
        values = re.findall(rf"\b{model.SHARD_KEY}\s*=\s*(ANY\s*\(|[^\s;)]+)", where)
        assert [v for v in values if not re.fullmatch(r"\w+\.key", v)], (function.short, statement)


def test_the_distributed_variant_reads_now_once_and_the_plain_one_does_not() -> None:
    apply = model.FUNCTION["apply"]
    distributed = objects.source_sql(apply, distributed=True)
    plain = objects.source_sql(apply)
    assert "COALESCE(first_answer_at, now())" in plain
    assert "COALESCE(first_answer_at, now_)" in distributed
    assert "now_" not in plain
    assert model.SHARD_KEY + " = ANY (owners)" in distributed and "owners" not in plain


def test_the_plain_and_distributed_variants_are_audited_apart() -> None:
    """A database whose variant does not match (distributed since, or back on one server)
    sees its objects as installed from another release's definition, and migrate reinstalls
    them."""
    for obj in model.OBJECTS:
        plain = objects.source_digest(obj)
        distributed = objects.source_digest(obj, distributed=True)
        if obj.kind == "function" and obj.short in {"apply", "on_insert", "on_update"}:
            assert plain != distributed, obj.name


@pytest.mark.parametrize("filename", TEMPLATES)
def test_no_template_asks_which_variant_it_renders(filename: str) -> None:
    """The variant is chosen once, by the context: a piece that differs is a def of the
    variant's file (``v``), a body that differs whole a ``<name>_distributed`` block."""
    code = [
        line.split("--")[0]
        for line in load(filename).splitlines()
        if not line.lstrip().startswith(("--", "#"))  # SQL, Mako and Python comments
    ]
    asks = [line for line in code if re.search(r"\bdistributed\b", line)]
    assert asks == [], f"{filename} tests the variant itself; call a def of v instead"


def defs(filename: str) -> set[str]:
    """The defs of ``sql/<filename>`` that other templates call (its own start with _)."""
    return set(re.findall(r'<%def name="([a-z]\w*\([^)]*\))">', load(filename)))


def test_both_variants_define_the_same_pieces() -> None:
    plain, citus = (defs(sqlfiles.VARIANTS[d]) for d in (False, True))
    assert plain and plain == citus
