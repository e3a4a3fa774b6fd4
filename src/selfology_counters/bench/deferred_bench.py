"""What ``benchmark --mode deferred`` adds: the worker's fold rate, how long answers waited to
be folded under concurrent writers, and the exact read against a ``SELECT 1`` round trip
while writers write and the worker folds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from selfology_counters import deferred
from selfology_counters.bench.harness import LatencySummary, Progress, percentile, rounds
from selfology_counters.connect import connect
from selfology_counters.sqlfiles import query

READ_LOAD_WRITERS = 20  # writers inserting while the reads are timed
READ_USER = 3


@dataclass(frozen=True)
class DeferredFigures:
    folds: int  # by the worker while the concurrent writers wrote
    oldest_age_p99_s: float | None  # the oldest answer each of those folds found, p99
    oldest_age_max_s: float | None
    fold_rows: int  # one fold of the bulk inserts' answers
    fold_seconds: float
    exact_read: LatencySummary  # answers_of_user, with writers writing and the worker folding
    select_one: LatencySummary  # SELECT 1 on the same connection, interleaved

    @property
    def fold_rows_per_second(self) -> float:
        return self.fold_rows / self.fold_seconds if self.fold_seconds else 0.0

    @property
    def read_ratio(self) -> float:
        return self.exact_read.avg_ms / self.select_one.avg_ms


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
    dsn: str, schema: str, count: int, report: Progress
) -> tuple[LatencySummary, LatencySummary]:
    """The exact read and SELECT 1, interleaved, while writers insert and a worker folds."""
    setup = await connect(dsn)
    try:
        create = query("bench.sql", "create_session", schema)
        sessions = [await setup.fetchval(create, READ_USER + w) for w in range(READ_LOAD_WRITERS)]
    finally:
        await setup.close()
    stop = asyncio.Event()
    writers = [asyncio.create_task(_write_until(dsn, schema, s, stop)) for s in sessions]
    reader = await connect(dsn)
    read_sql = query("bench.sql", "user_total", schema)
    try:
        async with folding(dsn, schema):
            samples = await rounds(
                {"exact_read": lambda _i: reader.fetchval(read_sql, READ_USER),
                 "select_one": lambda _i: reader.fetchval("SELECT 1")},
                count, report, "reads", warmup=50,
            )  # fmt: skip
    finally:
        stop.set()
        await asyncio.gather(*writers)
        await reader.close()
    return LatencySummary.of(samples["exact_read"]), LatencySummary.of(samples["select_one"])


async def _write_until(dsn: str, schema: str, session: int, stop: asyncio.Event) -> None:
    connection = await connect(dsn)
    insert = query("dao.sql", "insert_answer", schema)
    try:
        k = 0
        while not stop.is_set():
            await connection.fetchval(insert, session, f"r{k}", "answer", 6)
            k += 1
    finally:
        await connection.close()


def oldest_ages(worker: deferred.Worker) -> tuple[float | None, float | None]:
    ages = sorted(worker.summary.oldest_ages_s)
    if not ages:
        return None, None
    return percentile(ages, 99), ages[-1]
