"""A scratch schema holding the same tables, functions and triggers as ``selfology``.

Built from the same .sql files the migrations run, so what is measured is what is shipped.
Dropped on the way out, whatever happened (errors, Ctrl-C, cancellation).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from selfology_counters.connect import connect
from selfology_counters.sqlfiles import query, render

SCRATCH_PREFIX = "selfology_bench_"
INSTALL_FILES = ("schema_v1.sql", "counters_v1.sql", "consistency_view_v1.sql")


def scratch_name() -> str:
    return SCRATCH_PREFIX + secrets.token_hex(6)


@asynccontextmanager
async def scratch_schema(dsn: str) -> AsyncIterator[str]:
    """Create a scratch schema with the counter design installed; yield its name; drop it."""
    schema = scratch_name()
    connection = await connect(dsn)
    try:
        async with connection.transaction():
            for filename in INSTALL_FILES:
                await connection.execute(render(filename, schema))
            await connection.execute(query("bench.sql", "create_bare_table", schema))
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
