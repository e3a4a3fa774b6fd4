"""Tests that wait for events, not for time: a tally of writes that can be awaited, and a
wait until a session is blocked on another's lock."""

from __future__ import annotations

import asyncio

import asyncpg


class Tally:
    """How many writes the test's writers made; ``reach`` waits until there are ``n``."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Condition()

    async def add(self, n: int = 1) -> None:
        async with self._changed:
            self.count += n
            self._changed.notify_all()

    async def reach(self, n: int, timeout: float = 60) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.count >= n), timeout)


async def wait_until_blocked_by(observer: asyncpg.Connection, holder: asyncpg.Connection) -> None:
    """Until some session waits for a lock ``holder`` has (for a connection we cannot name,
    such as the one inside a DAO's pool)."""
    pid = holder.get_server_pid()
    for _ in range(500):
        if await observer.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", pid
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("nobody ever blocked on the lock")
