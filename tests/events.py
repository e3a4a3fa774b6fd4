"""Tests that wait for events, not for time: a tally of writes that can be awaited, writers
whose writes can be waited for from another thread, and a wait until a session is blocked
on another's lock."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Awaitable, Callable

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


async def wait_until_blocked_by(observer: asyncpg.Connection, holder: asyncpg.Connection) -> str:
    """Until some session waits for a lock ``holder`` has (for a connection we cannot name,
    such as the adoption's own); returns the statement it waits in (pg_stat_activity)."""
    pid = holder.get_server_pid()
    for _ in range(500):
        blocked = await observer.fetchval(
            "SELECT query FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) LIMIT 1",
            pid,
        )
        if blocked is not None:
            return str(blocked)
        await asyncio.sleep(0.01)
    raise AssertionError("nobody ever blocked on the lock")


Write = Callable[[asyncpg.Pool, random.Random], Awaitable[str | None]]


class WritersInAThread:
    """Writers on an event loop of their own, in a thread of their own. The code under test
    reports progress through a synchronous callback; in that callback a test can wait until
    the writers made N more writes (``wait_for``) without stopping them, so that "N writes
    happened while it ran" holds by construction, not by the machine's speed.

    ``write`` makes one write and returns its kind (a label counted in ``counts``), or None.
    """

    def __init__(self, dsn: str, write: Write, writers: int = 5) -> None:
        self.dsn, self.write, self.writers = dsn, write, writers
        self.counts: dict[str, int] = {}
        self.failures: list[BaseException] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def count(self, kind: str | None = None) -> int:
        with self._changed:
            return sum(self.counts.values()) if kind is None else self.counts.get(kind, 0)

    def wait_for(self, n: int, kind: str | None = None, timeout: float = 60) -> int:
        """Block until there are ``n`` writes (of ``kind``); returns the count."""
        with self._changed:
            reached = self._changed.wait_for(
                lambda: self.failures or self._count_locked(kind) >= n, timeout
            )
            assert reached and not self.failures, (self.counts, self.failures)
            return self._count_locked(kind)

    def _count_locked(self, kind: str | None) -> int:
        return sum(self.counts.values()) if kind is None else self.counts.get(kind, 0)

    def __enter__(self) -> WritersInAThread:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the writers did not stop"
        assert self.failures == [], self.failures

    async def _main(self) -> None:
        pool = await asyncpg.create_pool(self.dsn, min_size=self.writers, max_size=self.writers)
        try:
            await asyncio.gather(*(self._writer(pool, seed) for seed in range(self.writers)))
        finally:
            await pool.close()

    async def _writer(self, pool: asyncpg.Pool, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not self._stop.is_set():
                kind = await self.write(pool, rng)
                if kind is not None:
                    with self._changed:
                        self.counts[kind] = self.counts.get(kind, 0) + 1
                        self._changed.notify_all()
                await asyncio.sleep(0)  # let the other writers of this loop take turns
        except BaseException as exc:  # any failed write fails the test
            with self._changed:
                self.failures.append(exc)
                self._changed.notify_all()
