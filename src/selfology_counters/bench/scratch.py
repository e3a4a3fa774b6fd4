"""Scratch schemas: built from the same .sql files the migrations run, dropped afterwards.

By default a scratch schema holds the same tables, functions and triggers as ``selfology``
plus the benchmark's bare table, so what is measured is what is shipped; a caller can install
something else (``compare`` builds one schema per counter strategy). Dropped on the way out,
whatever happened (errors, Ctrl-C, cancellation).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from selfology_counters import objects
from selfology_counters.connect import connect
from selfology_counters.lifecycle import revisions
from selfology_counters.sqlfiles import query

SCRATCH_PREFIX = "selfology_bench_"

Installer = Callable[[str], Sequence[str]]
"""Given a schema name, the SQL texts that build what goes into it, run in order."""


def scratch_name(label: str = "") -> str:
    return SCRATCH_PREFIX + (f"{label}_" if label else "") + secrets.token_hex(6)


def benchmark_install(schema: str) -> list[str]:
    """The shipped design and the benchmark's bare table (what ``benchmark`` measures)."""
    return [
        *revisions.head_schema_sql(schema),
        objects.install_sql(schema=schema),
        query("bench.sql", "create_bare_table", schema),
    ]


@asynccontextmanager
async def scratch_schema(
    dsn: str, install: Installer = benchmark_install, *, label: str = ""
) -> AsyncIterator[str]:
    """Create a scratch schema, run ``install`` into it (one transaction); yield its name; drop
    it. ``label`` (a plain lower-case word) becomes part of the name."""
    schema = scratch_name(label)
    connection = await connect(dsn)
    try:
        async with connection.transaction():
            for sql in install(schema):
                await connection.execute(sql)
    finally:
        await connection.close()
    try:
        yield schema
    finally:
        # Shielded: a cancelled benchmark (Ctrl-C) still waits for its schema to be dropped.
        await asyncio.shield(_drop(dsn, schema))


async def _drop(dsn: str, schema: str) -> None:
    connection = await connect(dsn)
    try:
        await connection.execute(query("bench.sql", "drop_schema", schema))
    finally:
        await connection.close()
