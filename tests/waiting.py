"""Waiting for an event in the server instead of sleeping for a guessed time."""

from __future__ import annotations

import asyncio

import asyncpg


async def wait_until_blocked(
    observer: asyncpg.Connection, blocked: asyncpg.Connection | int
) -> None:
    """Until ``blocked`` (a connection, or a server pid: one inside a pool) waits for a lock,
    as seen from ``observer``'s connection."""
    pid = blocked if isinstance(blocked, int) else blocked.get_server_pid()
    for _ in range(500):
        state = await observer.fetchval(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
        )
        if state == "Lock":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the other connection never blocked on the lock")
