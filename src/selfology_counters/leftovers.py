"""Scratch schemas that a killed ``benchmark`` or ``compare`` left behind.

``check`` and ``stats`` report them; the next benchmark drops them (bench/scratch.py, which
makes and marks them). Kept apart from the benchmark so that the operator's runtime never
imports it.
"""

from __future__ import annotations

import asyncpg

from selfology_counters.sqlfiles import query


async def leftover_scratch_schemas(connection: asyncpg.Connection) -> list[str]:
    """Scratch schemas that no running benchmark or compare holds: left by a killed run."""
    rows = await connection.fetch(query("bench.sql", "scratch_schemas"))
    return [r["schema"] for r in rows if not r["in_use"]]
