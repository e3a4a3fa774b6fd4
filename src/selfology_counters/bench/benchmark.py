"""`benchmark N`: the shipped counter design against a bare INSERT, in one run, on one server.

Everything happens in a scratch schema (see scratch.py), dropped afterwards. Single-row
inserts are interleaved (the series' order rotates every round) so machine noise hits every
series alike; each ratio is against the bare INSERT measured in the same run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from selfology_counters import health
from selfology_counters.bench.scratch import scratch_schema
from selfology_counters.bench.timing import LatencySummary, median
from selfology_counters.connect import connect, create_pool
from selfology_counters.dao import OnboardingDAO
from selfology_counters.errors import SelfologyCountersError
from selfology_counters.sqlfiles import query

WARMUP = 50
BULK_REPEATS = 3
PER_WRITER = 10  # inserts per concurrent writer

Progress = Callable[[str, int], None]  # (phase, units done)


@dataclass(frozen=True)
class ConcurrencyResult:
    writers: int
    users: int
    inserts: int
    seconds: float
    inserts_per_second: float
    lost_counts: int
    errors: int


@dataclass(frozen=True)
class BulkResult:
    rows: int
    bare_seconds: float
    counted_seconds: float
    bare_rows_per_second: float
    counted_rows_per_second: float
    ratio: float  # counted rows/s divided by bare rows/s (1.0 = free)


@dataclass
class BenchmarkResult:
    server_version: str
    synchronous_commit: str
    inserts: int
    series: dict[str, LatencySummary] = field(default_factory=dict)
    concurrency: list[ConcurrencyResult] = field(default_factory=list)
    bulk: BulkResult | None = None
    consistent: bool = False
    issues: int = 0

    def ratio(self, name: str) -> float:
        return self.series[name].avg_ms / self.series["bare"].avg_ms

    @property
    def lost_counts(self) -> int:
        return sum(c.lost_counts for c in self.concurrency)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        others = [name for name in self.series if name != "bare"]
        data["ratios"] = {name: self.ratio(name) for name in others}
        bare_p50 = self.series["bare"].p50_ms
        data["ratios_p50"] = {name: self.series[name].p50_ms / bare_p50 for name in others}
        return data


SERIES = {
    "bare": "bare INSERT, no triggers (floor)",
    "dao": "OnboardingDAO.save_answer (counter triggers)",
    "bot_insert": "bot's INSERT, user_id filled by the database",
}


async def run_benchmark(
    dsn: str,
    inserts: int,
    *,
    concurrency: int = 0,
    bulk_rows: int = 0,
    progress: Progress | None = None,
) -> BenchmarkResult:
    """Measure; verify the counters; drop the scratch schema (also on error or Ctrl-C)."""
    if inserts < 1:
        raise ValueError("the number of inserts must be at least 1")
    report = progress or (lambda _phase, _n: None)
    async with scratch_schema(dsn) as schema:
        connection = await connect(dsn)
        try:
            settings = await connection.fetchrow(query("health.sql", "settings", schema))
        finally:
            await connection.close()
        result = BenchmarkResult(settings["version"], settings["synchronous_commit"], inserts)
        result.series = await _sequential(dsn, schema, inserts, report)
        if concurrency:
            result.concurrency = [
                await _concurrent(dsn, schema, concurrency, users=1, report=report),
                await _concurrent(dsn, schema, concurrency, users=concurrency, report=report),
            ]
        if bulk_rows:
            result.bulk = await _bulk(dsn, schema, bulk_rows, report)
        connection = await connect(dsn)
        try:
            checked = await health.check(connection, schema=schema)
        finally:
            await connection.close()
        result.consistent = checked.consistent
        result.issues = len(checked.issues)
        return result


async def _sequential(
    dsn: str, schema: str, inserts: int, report: Progress
) -> dict[str, LatencySummary]:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        dao = OnboardingDAO(pool, schema=schema)
        session = await dao.start_session(1)
        bare_sql, bot_sql = (
            query("bench.sql", "bare_insert", schema),
            query("bench.sql", "bot_insert", schema),
        )
        text = "a typical answer of about forty characters"
        operations: dict[str, Callable[[int], Awaitable[object]]] = {
            "bare": lambda i: pool.fetchval(bare_sql, session, 1, f"q{i}", text, len(text)),
            "dao": lambda i: dao.save_answer(session, f"q{i}", text),
            "bot_insert": lambda i: pool.fetchval(bot_sql, session, f"q{i}", text),
        }
        samples: dict[str, list[float]] = {name: [] for name in operations}
        names = list(operations)
        for i in range(-WARMUP, inserts):
            rotation = names[i % len(names) :] + names[: i % len(names)]
            for name in rotation:
                started = time.perf_counter()
                await operations[name](i)
                if i >= 0:
                    samples[name].append(time.perf_counter() - started)
            if i >= 0:
                report("sequential", 1)
        return {name: LatencySummary.of(values) for name, values in samples.items()}
    finally:
        await pool.close()


async def _concurrent(
    dsn: str, schema: str, writers: int, *, users: int, report: Progress
) -> ConcurrencyResult:
    """``writers`` connections insert at the same moment, on one user or on ``users`` users."""
    sessions = await _sessions(dsn, schema, [1000 + w % users for w in range(writers)])
    before = await _totals(dsn, schema, set(sessions.values()))
    connections = await asyncio.gather(*(connect(dsn) for _ in range(writers)))
    errors = 0
    start = asyncio.Event()
    insert_sql = query("dao.sql", "insert_answer", schema)

    async def writer(index: int, connection: asyncpg.Connection) -> int:
        await start.wait()
        failed = 0
        for k in range(PER_WRITER):
            try:
                await connection.fetchval(insert_sql, list(sessions)[index], f"c{k}", "answer", 6)
            except (asyncpg.PostgresError, SelfologyCountersError):
                failed += 1
        return failed

    tasks = [asyncio.create_task(writer(i, c)) for i, c in enumerate(connections)]
    started = time.perf_counter()
    start.set()
    try:
        errors = sum(await asyncio.gather(*tasks))
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    seconds = time.perf_counter() - started
    report("concurrency", 1)
    written = writers * PER_WRITER - errors
    after = await _totals(dsn, schema, set(sessions.values()))
    return ConcurrencyResult(
        writers=writers,
        users=users,
        inserts=written,
        seconds=seconds,
        inserts_per_second=written / seconds,
        lost_counts=written - (after - before),
        errors=errors,
    )


async def _sessions(dsn: str, schema: str, user_ids: list[int]) -> dict[int, int]:
    """One new session per writer, in writer order: session id -> user id."""
    connection = await connect(dsn)
    try:
        sql = query("bench.sql", "create_session", schema)
        return {await connection.fetchval(sql, user): user for user in user_ids}
    finally:
        await connection.close()


async def _totals(dsn: str, schema: str, user_ids: set[int]) -> int:
    connection = await connect(dsn)
    try:
        sql = query("bench.sql", "user_total", schema)
        return sum([await connection.fetchval(sql, user) for user in user_ids])
    finally:
        await connection.close()


async def _bulk(dsn: str, schema: str, rows: int, report: Progress) -> BulkResult:
    connection = await connect(dsn)
    try:
        session = await connection.fetchval(query("bench.sql", "create_session", schema), 2)
        timings: dict[str, list[float]] = {"bulk_bare": [], "bulk_counted": []}
        for repeat in range(BULK_REPEATS):
            order = list(timings) if repeat % 2 == 0 else list(reversed(timings))
            for name in order:
                started = time.perf_counter()
                await connection.execute(query("bench.sql", name, schema), session, 2, rows)
                timings[name].append(time.perf_counter() - started)
            report("bulk", 1)
    finally:
        await connection.close()
    bare, counted = median(timings["bulk_bare"]), median(timings["bulk_counted"])
    return BulkResult(rows, bare, counted, rows / bare, rows / counted, bare / counted)
