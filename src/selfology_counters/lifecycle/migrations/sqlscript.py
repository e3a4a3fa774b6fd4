"""What a revision runs, inside the current Alembic migration's transaction."""

from __future__ import annotations

from collections.abc import Iterable

from alembic import op

from selfology_counters import objects
from selfology_counters.model import DbObject
from selfology_counters.sqlfiles import SCHEMA, query, render


def _run_script(script: str) -> None:
    # The driver connection (psycopg) runs a multi-statement script in one call when no
    # parameters are given; it shares the transaction Alembic opened for this revision.
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute(script)


def run_sql_file(filename: str, schema: str = SCHEMA) -> None:
    _run_script(render(filename, schema))


def run_named(filename: str, name: str, schema: str = SCHEMA) -> None:
    """One named block of a packaged ``.sql`` file."""
    _run_script(query(filename, name, schema))


def drop_objects(wanted: Iterable[DbObject]) -> None:
    _run_script(objects.drop_sql(wanted))


def refuse_original_schema(schema: str = SCHEMA) -> None:
    """Stop with a clear message instead of "relation already exists" when the original
    Selfology tables are there: they are adopted by `selfology-counters migrate`, not created."""
    found = (
        op.get_bind()
        .exec_driver_sql(query("catalog.sql", "answers_table_literal", schema))
        .scalar()
    )
    if found:
        raise RuntimeError(
            "this database already holds the original Selfology tables; "
            "run 'selfology-counters migrate' to adopt them (see docs/ADOPTING.md)"
        )
