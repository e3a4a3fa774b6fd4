"""Runs a packaged ``.sql`` script inside the current Alembic migration's transaction."""

from __future__ import annotations

from alembic import op

from selfology_counters.sqlfiles import SCHEMA, render


def run_sql_file(filename: str, schema: str = SCHEMA) -> None:
    # The driver connection (psycopg) runs a multi-statement script in one call when no
    # parameters are given; it shares the transaction Alembic opened for this revision.
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute(render(filename, schema))
