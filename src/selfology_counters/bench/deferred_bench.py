"""What ``benchmark --mode deferred`` adds: the worker's fold rate, how long answers waited to
be folded under concurrent writers, and the exact read against a ``SELECT 1`` round trip
while writers write and the worker folds."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from selfology_counters import deferred
from selfology_counters.bench.harness import LatencySummary, Progress, percentile, rounds
from selfology_counters.connect import connect
from selfology_counters.distributed import is_distributed
from selfology_counters.sqlfiles import query

READ_LOAD_WRITERS = 100  # the load: as many writers as the concurrency tests
READ_USER = 3


@dataclass(frozen=True)
class DeferredFigures:
    folds: int  # by the worker while the concurrent writers wrote
    oldest_age_p99_s: float | None  # the oldest answer each of those folds found, p99
    oldest_age_max_s: float | None
    fold_rows: int  # one fold of the bulk inserts' answers
    fold_seconds: float
    writers: int  # inserting, from another process, while the reads were timed
    exact_read: LatencySummary  # OnboardingDAO's read (the reader's expression, prepared)
    reader_call: LatencySummary  # SELECT answers_of_user($1), the public function
    stored_read: LatencySummary  # the stored column alone: one row of one table, not exact
    select_one: LatencySummary  # SELECT 1 on the same connection, interleaved

    @property
    def fold_rows_per_second(self) -> float:
        return self.fold_rows / self.fold_seconds if self.fold_seconds else 0.0

    @property
    def read_ratio(self) -> float:
        """The DAO's exact read against SELECT 1, averages (time: lower is better)."""
        return self.exact_read.avg_ms / self.select_one.avg_ms

    @property
    def read_ratio_p50(self) -> float:
        return self.exact_read.p50_ms / self.select_one.p50_ms

    @property
    def stored_read_ratio_p50(self) -> float:
        """The raw column read against SELECT 1: what reading any one row of a table costs at
        this load, so the floor under every exact read (which reads two tables and an index)."""
        return self.stored_read.p50_ms / self.select_one.p50_ms


@contextlib.asynccontextmanager
async def folding(dsn: str, schema: str) -> AsyncIterator[deferred.Worker]:
    """A worker folding the scratch schema for the duration of the block."""
    worker = deferred.Worker(dsn, interval_s=0.05, schema=schema)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task


async def fold_rate(connection: asyncpg.Connection, schema: str) -> tuple[int, float]:
    """One fold of everything pending: (answers folded, seconds)."""
    result = await deferred.fold_once(connection, schema)
    return result.folded, result.seconds


async def reads_under_load(
    dsn: str, schema: str, count: int, writers: int, report: Progress
) -> dict[str, LatencySummary]:
    """The DAO's exact read, the reader function, the stored column alone (the raw read, not
    exact in deferred mode) and SELECT 1, interleaved on one connection,
    while ``writers`` connections insert answers and a worker folds. The writers run in a
    process of their own, so that their client work does not slow this process's reads (and
    make every read look alike): what is left is the server's load, as in production."""
    setup = await connect(dsn)
    try:
        create = query("bench.sql", "create_session", schema)
        sessions = [await setup.fetchval(create, READ_USER + w) for w in range(writers)]
        on_citus = await is_distributed(setup, schema)
    finally:
        await setup.close()
    reader = await connect(dsn)
    statements = {
        "exact_read": query("dao.sql", "user_total_answers", schema, distributed=on_citus),
        "reader_call": query("bench.sql", "user_total", schema),
        "stored_read": query("bench.sql", "user_total_stored", schema),
    }
    # Citus: the inserts name the session's user, the shard key (dao.sql).
    owners = [READ_USER + w for w in range(writers)] if on_citus else None
    context = multiprocessing.get_context("spawn")
    stop, started = context.Event(), context.Event()
    load = context.Process(
        target=_write_until_stopped,
        args=(dsn, schema, sessions, owners, stop, started),
        daemon=True,
    )
    load.start()
    try:
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 60)
        async with folding(dsn, schema):
            samples = await rounds(
                {
                    "exact_read": lambda _i: reader.fetchval(statements["exact_read"], READ_USER),
                    "reader_call": lambda _i: reader.fetchval(statements["reader_call"], READ_USER),
                    "stored_read": lambda _i: reader.fetchval(statements["stored_read"], READ_USER),
                    "select_one": lambda _i: reader.fetchval("SELECT 1"),
                },
                count,
                report,
                "reads",
                warmup=50,
            )
    finally:
        stop.set()
        await asyncio.get_running_loop().run_in_executor(None, load.join, 60)
        if load.is_alive():
            load.kill()
        await reader.close()
    return {name: LatencySummary.of(taken) for name, taken in samples.items()}


def _write_until_stopped(
    dsn: str, schema: str, sessions: list[int], owners: list[int] | None, stop: Any, started: Any
) -> None:
    """The writers' process: one connection per session, inserting until ``stop`` is set
    (``owners``: each session's user, on Citus)."""

    async def main() -> None:
        connections = [await connect(dsn) for _ in sessions]
        insert = query("dao.sql", "insert_answer", schema, distributed=owners is not None)
        done = asyncio.Event()

        async def write(connection: asyncpg.Connection, index: int) -> None:
            session, owner = sessions[index], () if owners is None else (owners[index],)
            k = 0
            while not done.is_set():
                await connection.fetchval(insert, session, f"r{k}", "answer", 6, *owner)
                k += 1

        tasks = [asyncio.create_task(write(c, i)) for i, c in enumerate(connections)]
        started.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        done.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            for connection in connections:
                await connection.close()

    asyncio.run(main())


def oldest_ages(worker: deferred.Worker) -> tuple[float | None, float | None]:
    ages = sorted(worker.summary.oldest_ages_s)
    if not ages:
        return None, None
    return percentile(ages, 99), ages[-1]
