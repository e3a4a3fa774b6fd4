"""Schema changes on a live database: short lock waits, retried, so the bot's writes go first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from selfology_counters.errors import LockWaitExhaustedError
from selfology_counters.sqlfiles import query

LOCK_ATTEMPTS = 100


async def set_lock_timeout(connection: asyncpg.Connection) -> None:
    """A lock_timeout below deadlock_timeout for this session's DDL (see adopt.sql)."""
    await connection.execute(query("adopt.sql", "set_lock_timeout"))


async def retrying(work: Callable[[], Awaitable[object]]) -> None:
    """Retry ``work`` when it gave up waiting for a lock (lock_timeout) or was chosen as a
    deadlock victim: the bot's writes always go first, adoption waits its turn."""
    for attempt in range(LOCK_ATTEMPTS):
        try:
            await work()
            return
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
            await asyncio.sleep(min(0.05 * 2 ** min(attempt, 5), 1.0))
    raise LockWaitExhaustedError(
        f"could not take a lock in {LOCK_ATTEMPTS} attempts; the database is busy, retry later"
    )
