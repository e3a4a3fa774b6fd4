"""Scratch schemas: built from the same .sql files the migrations run, dropped afterwards.

By default a scratch schema holds the same tables, functions and triggers as ``selfology``
plus the benchmark's bare table, so what is measured is what is shipped; a caller can install
something else (``compare`` builds one schema per counter strategy). Dropped on the way out,
whatever happened (errors, Ctrl-C, cancellation).

A run that is killed (SIGKILL, a lost machine) cannot drop its schema. So a run marks the
schema as its own with a session-level advisory lock held on a connection that lives as long
as the schema (see ``hold_scratch`` in sql/bench.sql); a schema whose lock nobody holds is
left over. ``stats`` and ``check`` report those, and the next ``benchmark`` drops them.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from selfology_counters import objects
from selfology_counters.connect import connect
from selfology_counters.distributed import ddl_preamble
from selfology_counters.leftovers import leftover_scratch_schemas
from selfology_counters.lifecycle import revisions
from selfology_counters.sqlfiles import query

SCRATCH_PREFIX = "selfology_bench_"
_SCRATCH_NAME = re.compile(r"^selfology_bench_(?:[a-z0-9_]+_)?[0-9a-f]{12}$")

Installer = Callable[[str], Sequence[str]]
"""Given a schema name, the SQL texts that build what goes into it, run in order."""


def scratch_name(label: str = "") -> str:
    return SCRATCH_PREFIX + (f"{label}_" if label else "") + secrets.token_hex(6)


def benchmark_install(schema: str, *, distributed: bool = False) -> list[str]:
    """The shipped design and the benchmark's bare table (what ``benchmark`` measures);
    ``distributed``: on a Citus coordinator, distributed as ``migrate`` does it, the bare
    table co-located with the others."""
    if not distributed:
        return [
            *revisions.head_schema_sql(schema),
            objects.install_sql(schema=schema),
            query("bench.sql", "create_bare_table", schema),
        ]
    return [
        *revisions.head_schema_sql(schema),
        *ddl_preamble(schema),
        query("distributed.sql", "keys", schema),
        query("bench.sql", "create_bare_table", schema, distributed=True),
        query("distributed.sql", "distribute", schema, also=("bare_answers",)),
        *objects.install_statements(schema=schema, distributed=True),
    ]


@asynccontextmanager
async def scratch_schema(
    dsn: str, install: Installer = benchmark_install, *, label: str = ""
) -> AsyncIterator[str]:
    """Create a scratch schema, run ``install`` into it (one transaction); yield its name; drop
    it. ``label`` (a plain lower-case word) becomes part of the name."""
    schema = scratch_name(label)
    owner = await connect(dsn)  # holds the ownership lock until the schema is dropped
    try:
        await owner.execute(query("bench.sql", "hold_scratch"), schema)
        async with owner.transaction():
            for sql in install(schema):
                await owner.execute(sql)
        try:
            yield schema
        finally:
            # Shielded: a cancelled benchmark (Ctrl-C) still waits for its schema to be dropped.
            await asyncio.shield(_drop(dsn, schema))
    finally:
        await asyncio.shield(owner.close())


async def drop_leftovers(dsn: str) -> list[str]:
    """Drop the scratch schemas no run holds (each claimed first, so a run that starts
    meanwhile keeps its own); returns their names."""
    connection = await connect(dsn)
    dropped = []
    try:
        for schema in await leftover_scratch_schemas(connection):
            if not _SCRATCH_NAME.match(schema):
                continue  # not a name we make; leave it to a human
            async with connection.transaction():
                if await connection.fetchval(query("bench.sql", "claim_scratch"), schema):
                    await connection.execute(query("bench.sql", "drop_schema", schema))
                    dropped.append(schema)
    finally:
        await connection.close()
    return dropped


async def _drop(dsn: str, schema: str) -> None:
    connection = await connect(dsn)
    try:
        await connection.execute(query("bench.sql", "drop_schema", schema))
    finally:
        await connection.close()
