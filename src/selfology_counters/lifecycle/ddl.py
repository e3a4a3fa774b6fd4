"""Schema changes on a live database: short lock waits, retried, so the bot's writes go first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from selfology_counters.errors import LockWaitExhaustedError
from selfology_counters.sqlfiles import query

LOCK_ATTEMPTS = 100
T = TypeVar("T")


async def run_ddl(connection: asyncpg.Connection, statement: str) -> None:
    """Run one schema change (outside a transaction block) with a short lock_timeout,
    retried until it gets its locks; the session's lock_timeout is reset afterwards."""

    async def once() -> None:
        await connection.execute(query("adopt.sql", "set_lock_timeout"))
        try:
            await connection.execute(statement)
        finally:
            await connection.execute(query("adopt.sql", "reset_lock_timeout"))

    await retrying(once)


async def set_local_lock_timeout(connection: asyncpg.Connection) -> None:
    """The same short lock_timeout, for the rest of the current transaction only."""
    await connection.execute(query("adopt.sql", "set_local_lock_timeout"))


async def retrying(work: Callable[[], Awaitable[T]]) -> T:
    """Retry ``work`` when it gave up waiting for a lock (lock_timeout) or was chosen as a
    deadlock victim: the bot's writes always go first, adoption waits its turn."""
    for attempt in range(LOCK_ATTEMPTS):
        try:
            return await work()
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
            await asyncio.sleep(min(0.05 * 2 ** min(attempt, 5), 1.0))
    raise LockWaitExhaustedError(
        f"could not take a lock in {LOCK_ATTEMPTS} attempts; the database is busy, retry later"
    )
