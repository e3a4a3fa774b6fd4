"""Reinstalling the counter triggers of a database that has our schema.

A trigger dropped or edited by hand (``check`` reports it missing or outdated) stops or
changes the counting. ``migrate`` runs the re-runnable counters script again, in one
transaction with a short lock timeout, then recounts what drifted meanwhile.
"""

from __future__ import annotations

import asyncpg

from selfology_counters import health
from selfology_counters.counters import COUNTERS_FILE
from selfology_counters.ddl import retrying, set_local_lock_timeout
from selfology_counters.sqlfiles import SCHEMA, render


async def reinstall_counters(connection: asyncpg.Connection) -> tuple[list[str], int]:
    """Reinstall the counter triggers if any is missing or outdated.

    Returns the triggers that were missing or outdated, and how many counters the recount
    that follows corrected. Does nothing (``([], 0)``) when all are current.
    """
    triggers, _foreign = await health.trigger_status(connection, SCHEMA)
    broken = [f"{t.table}.{t.name}" for t in triggers if not (t.installed and t.current)]
    if not broken:
        return [], 0

    async def install() -> None:
        async with connection.transaction():
            await set_local_lock_timeout(connection)
            await connection.execute(render(COUNTERS_FILE))

    await retrying(install)
    repaired = await health.repair(connection)
    return broken, len(repaired.changes)
