"""`benchmark N`: the shipped counter design against a bare INSERT, in one run, on one server.

Everything happens in a scratch schema (see scratch.py), dropped afterwards. Single-row
inserts are interleaved (the series' order rotates every round) so machine noise hits every
series alike; each ratio is against the bare INSERT measured in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from selfology_counters import deferred, health, model
from selfology_counters.bench import deferred_bench
from selfology_counters.bench.deferred_bench import DeferredFigures
from selfology_counters.bench.harness import (
    Accounting,
    BulkResult,
    ConcurrentResult,
    LatencySummary,
    Operation,
    Progress,
    median,
    release_together,
    rounds,
    silent,
)
from selfology_counters.bench.scratch import benchmark_install, scratch_schema
from selfology_counters.connect import connect, create_pool
from selfology_counters.dao import OnboardingDAO
from selfology_counters.distributed import citus_installed
from selfology_counters.sqlfiles import query

WARMUP = 50
BULK_REPEATS = 3
PER_WRITER = 10  # inserts per concurrent writer


@dataclass
class BenchmarkResult:
    server_version: str
    synchronous_commit: str
    inserts: int
    series: dict[str, LatencySummary] = field(default_factory=dict)
    concurrency: list[ConcurrentResult] = field(default_factory=list)
    bulk: list[BulkResult] = field(default_factory=list)  # the bare one, then the counted
    consistent: bool = False
    issues: int = 0
    mode: str = model.IMMEDIATE
    deferred: DeferredFigures | None = None

    def ratio(self, name: str) -> float:
        return self.series[name].avg_ms / self.series["bare"].avg_ms

    @property
    def histogram_cost(self) -> dict[str, float]:
        """save_answer with the insert histogram on against off: avg and p50 ratios."""
        on, off = self.series["dao_metrics"], self.series["dao"]
        return {"avg": on.avg_ms / off.avg_ms, "p50": on.p50_ms / off.p50_ms}

    @property
    def lost_counts(self) -> int:
        """Counts the triggers lost, concurrent and bulk inserts alike (must be 0)."""
        measured = [c.accounting for c in self.concurrency] + [b.accounting for b in self.bulk]
        return sum(a.lost or 0 for a in measured)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        others = [name for name in self.series if name != "bare"]
        data["ratios"] = {name: self.ratio(name) for name in others}
        bare_p50 = self.series["bare"].p50_ms
        data["ratios_p50"] = {name: self.series[name].p50_ms / bare_p50 for name in others}
        data["histogram_cost"] = self.histogram_cost
        # The JSON keeps the shape it has always had for its readers (cron, scripts).
        data["concurrency"] = [
            {
                "writers": c.writers,
                "users": c.users,
                "inserts": c.accounting.inserted,
                "seconds": c.seconds,
                "inserts_per_second": c.per_second,
                "lost_counts": c.accounting.lost,
                "errors": c.errors,
            }
            for c in self.concurrency
        ]
        data["bulk"] = None
        if self.bulk:
            bare, counted = self.bulk
            data["bulk"] = {
                "rows": counted.rows,
                "bare_seconds": bare.seconds,
                "counted_seconds": counted.seconds,
                "bare_rows_per_second": bare.rows_per_second,
                "counted_rows_per_second": counted.rows_per_second,
                "ratio": counted.throughput_vs_floor,
            }
        return data


SERIES = {
    "bare": "bare INSERT, no triggers (floor)",
    "dao": "OnboardingDAO.save_answer (counter triggers)",
    "dao_metrics": "the same, with the insert histogram on",
    "bot_insert": "bot's INSERT, user_id filled by the database",
}


async def run_benchmark(
    dsn: str,
    inserts: int,
    *,
    concurrency: int = 0,
    bulk_rows: int = 0,
    mode: str = model.IMMEDIATE,
    progress: Progress | None = None,
) -> BenchmarkResult:
    """Measure in the counter ``mode``; verify the counters; drop the scratch schema (also
    on error or Ctrl-C). In deferred mode a worker folds while the concurrent writers write,
    one fold of the bulk inserts is timed, and the exact read is timed against SELECT 1."""
    if inserts < 1:
        raise ValueError("the number of inserts must be at least 1")
    report = progress or silent
    on_citus = await _on_citus(dsn)
    async with scratch_schema(dsn, partial(benchmark_install, distributed=on_citus)) as schema:
        connection = await connect(dsn)  # settings, set-up, counting, bulk inserts, the check
        try:
            settings = await connection.fetchrow(query("health.sql", "settings", schema))
            result = BenchmarkResult(settings["version"], settings["synchronous_commit"], inserts)
            result.mode = (await deferred.set_mode(connection, mode, schema)).mode
            result.series = await _sequential(dsn, schema, inserts, report, on_citus)
            if mode == model.DEFERRED:  # so that the worker's ages are the writers' alone
                await deferred.fold_once(connection, schema)
            async with _folding_if_deferred(dsn, schema, mode) as worker:
                for users in (1, concurrency) if concurrency else ():
                    result.concurrency.append(
                        await _concurrent(
                            dsn, connection, schema, concurrency, users, report, on_citus
                        )
                    )
            if mode == model.DEFERRED:  # so that the timed fold below folds the bulk alone
                await deferred.fold_once(connection, schema)
            if bulk_rows:
                result.bulk = await _bulk(connection, schema, bulk_rows, report)
            if mode == model.DEFERRED:
                result.deferred = await _deferred_figures(
                    dsn, connection, schema, inserts, concurrency, worker, report
                )
            checked = await health.check(connection, where=schema)
        finally:
            await connection.close()
    result.consistent = checked.consistent
    result.issues = len(checked.issues)
    return result


async def _on_citus(dsn: str) -> bool:
    """A Citus coordinator: the scratch schema is distributed as ``migrate`` would."""
    connection = await connect(dsn)
    try:
        return await citus_installed(connection)
    finally:
        await connection.close()


async def _sequential(
    dsn: str, schema: str, inserts: int, report: Progress, on_citus: bool = False
) -> dict[str, LatencySummary]:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        dao = OnboardingDAO(pool, schema=schema)
        timed = OnboardingDAO(pool, schema=schema, metrics=CollectorRegistry())
        session = await dao.start_session(1)
        bare_sql, bot_sql = (
            query("bench.sql", "bare_insert", schema),
            query("bench.sql", "bot_insert", schema),
        )
        text = "a typical answer of about forty characters"
        operations: dict[str, Operation] = {
            "bare": lambda i: pool.fetchval(bare_sql, session, 1, f"q{i}", text, len(text)),
            "dao": lambda i: dao.save_answer(session, f"q{i}", text),
            "dao_metrics": lambda i: timed.save_answer(session, f"q{i}", text),
            "bot_insert": lambda i: pool.fetchval(bot_sql, session, f"q{i}", text),
        }
        if on_citus:  # Citus refuses an INSERT without user_id, the shard key
            del operations["bot_insert"]
        samples = await rounds(operations, inserts, report, "sequential", warmup=WARMUP)
        return {name: LatencySummary.of(values) for name, values in samples.items()}
    finally:
        await pool.close()


async def _concurrent(
    dsn: str,
    connection: asyncpg.Connection,
    schema: str,
    writers: int,
    users: int,
    report: Progress,
    on_citus: bool = False,
) -> ConcurrentResult:
    """``writers`` connections insert at the same moment, on one user or on ``users`` users."""
    user_ids = [1000 + w % users for w in range(writers)]
    create = query("bench.sql", "create_session", schema)
    sessions = [await connection.fetchval(create, user) for user in user_ids]
    before = await _total(connection, schema, user_ids)
    # The set-up connection is the first writer: C writers need only C connections, as many
    # as a server with max_connections = C lets a superuser open.
    others = await asyncio.gather(*(connect(dsn) for _ in range(writers - 1)))
    connections = [connection, *others]
    insert = query("dao.sql", "insert_answer", schema, distributed=on_citus)
    owners = [(user,) if on_citus else () for user in user_ids]  # Citus: the shard key too
    writing = zip(connections, sessions, owners, strict=True)
    try:
        errors, seconds = await release_together(
            [_writer(c, insert, s, owner) for c, s, owner in writing], PER_WRITER
        )
    finally:
        await asyncio.gather(*(c.close() for c in others))
    report("concurrency", 1)
    attempted = writers * PER_WRITER
    after = await _total(connection, schema, user_ids)
    accounting = Accounting.between(attempted - errors, before, after, after)
    return ConcurrentResult.of("dao", users, writers, attempted, errors, seconds, accounting)


def _writer(
    connection: asyncpg.Connection, sql: str, session: int, owner: tuple[int, ...]
) -> Operation:
    """The DAO's own INSERT of one answer, on the writer's connection."""
    return lambda k: connection.fetchval(sql, session, f"c{k}", "answer", 6, *owner)


async def _total(connection: asyncpg.Connection, schema: str, user_ids: list[int]) -> int:
    """What the counters say the users have, all together."""
    sql = query("bench.sql", "user_total", schema)
    return sum([await connection.fetchval(sql, user) for user in set(user_ids)])


async def _bulk(
    connection: asyncpg.Connection, schema: str, rows: int, report: Progress
) -> list[BulkResult]:
    """The bare and the counted INSERT ... SELECT, in alternating order."""
    create, bare, counted = (
        query("bench.sql", name, schema) for name in ("create_session", "bulk_bare", "bulk_counted")
    )
    session = await connection.fetchval(create, 2)
    before = await _total(connection, schema, [2])
    timings = await rounds(
        {
            "bare": lambda _i: connection.execute(bare, session, 2, rows),
            "counted": lambda _i: connection.execute(counted, session, 2, rows),
        },
        BULK_REPEATS,
        report,
        "bulk",
    )
    after = await _total(connection, schema, [2])
    floor, inserted = median(timings["bare"]), rows * BULK_REPEATS
    return [
        BulkResult.of("bare", rows, timings["bare"], floor, Accounting.of(inserted, None, None)),
        BulkResult.of(
            "counted",
            rows,
            timings["counted"],
            floor,
            Accounting.between(inserted, before, after, after),
        ),
    ]


@contextlib.asynccontextmanager
async def _folding_if_deferred(
    dsn: str, schema: str, mode: str
) -> AsyncIterator[deferred.Worker | None]:
    if mode != model.DEFERRED:
        yield None
        return
    async with deferred_bench.folding(dsn, schema) as worker:
        yield worker


async def _deferred_figures(
    dsn: str,
    connection: asyncpg.Connection,
    schema: str,
    inserts: int,
    concurrency: int,
    worker: deferred.Worker | None,
    report: Progress,
) -> deferred_bench.DeferredFigures:
    p99, worst = deferred_bench.oldest_ages(worker) if worker else (None, None)
    rows, seconds = await deferred_bench.fold_rate(connection, schema)
    writers = concurrency or deferred_bench.READ_LOAD_WRITERS
    reads = await deferred_bench.reads_under_load(dsn, schema, inserts, writers, report)
    return deferred_bench.DeferredFigures(
        worker.summary.folds if worker else 0,
        p99,
        worst,
        rows,
        seconds,
        writers,
        reads["exact_read"],
        reads["reader_call"],
        reads["stored_read"],
        reads["select_one"],
    )


def _measured(result: BenchmarkResult) -> list[tuple[str, str]]:
    """The series this run measured (on Citus, not the bot's INSERT without user_id)."""
    return [(name, label) for name, label in SERIES.items() if name in result.series]


def text(result: BenchmarkResult) -> str:
    """The human report of ``benchmark`` (the CLI prints it)."""
    bare = result.series["bare"]
    lines = [
        f"server: {result.server_version.split(' on ')[0]}, "
        f"synchronous_commit={result.synchronous_commit}, counter mode: {result.mode}",
        "",
        f"Test: {result.inserts} sequential inserts (interleaved, same connection)",
        "",
        f"{'Method':46} │ {'Avg Time':>9} │ {'Total Time':>10} │ {'Throughput':>11} │"
        f" {'x the time of bare':>18}",
        "─" * 47 + "┼" + "─" * 11 + "┼" + "─" * 12 + "┼" + "─" * 13 + "┼" + "─" * 20,
    ]
    for name, label in _measured(result):
        s = result.series[name]
        lines.append(
            f"{label:46} │ {s.avg_ms:>7.3f}ms │ {s.total_ms:>8.0f}ms │ {s.per_second:>7.0f}/sec │"
            f" {s.avg_ms / bare.avg_ms:>17.2f}x"
        )
    header = f"{'Latency (ms)':46} │ {'p50':>7} │ {'p95':>7} │ {'p99':>7} │ p50, x the time of bare"
    lines += ["", header]
    for name, label in _measured(result):
        s = result.series[name]
        lines.append(
            f"{label:46} │ {s.p50_ms:>7.3f} │ {s.p95_ms:>7.3f} │ {s.p99_ms:>7.3f} │"
            f" {s.p50_ms / bare.p50_ms:>22.2f}x"
        )
    cost = result.histogram_cost
    lines += [
        "",
        f"insert histogram on vs off (save_answer): {cost['avg']:.3f}x avg, {cost['p50']:.3f}x p50",
    ]
    for c in result.concurrency:
        who = "same user" if c.users == 1 else f"{c.users} users"
        lines += [
            "",
            f"Test: {c.writers} concurrent writers ({who}), {c.accounting.inserted} inserts",
            f"  throughput {c.per_second:.0f}/sec, lost counts {c.accounting.lost}, "
            f"errors {c.errors}",
        ]
    if result.bulk:
        floor, counted = result.bulk
        lines += [
            "",
            f"Test: one {counted.rows}-row INSERT ... SELECT (median of repeats)",
            f"  bare {floor.seconds:.3f} s ({floor.rows_per_second:.0f} rows/s), counted "
            f"{counted.seconds:.3f} s ({counted.rows_per_second:.0f} rows/s): "
            f"{counted.throughput_vs_floor:.2f}x the bare rows/s",
        ]
    if result.deferred is not None:
        lines += ["", *_deferred_text(result.deferred)]
    verdict = "counters equal COUNT(*)" if result.consistent else f"{result.issues} COUNTERS WRONG"
    lines += ["", f"verification: {verdict}"]
    return "\n".join(lines)


def _deferred_text(d: DeferredFigures) -> list[str]:
    age = (
        "-"
        if d.oldest_age_p99_s is None
        else (f"p99 {d.oldest_age_p99_s:.3f} s, max {d.oldest_age_max_s:.3f} s")
    )
    return [
        "Deferred mode:",
        f"  worker during the concurrent tests: {d.folds} folds; oldest answer per fold {age}",
        f"  one fold of {d.fold_rows} pending answers: {d.fold_seconds:.3f} s "
        f"({d.fold_rows_per_second:.0f} answers/s)",
        f"  exact read under {d.writers} writers (another process) and the worker, against a "
        f"SELECT 1 round trip on the same connection (time: lower is better):",
        f"    OnboardingDAO's read {d.exact_read.p50_ms:.3f} ms p50 "
        f"({d.exact_read.avg_ms:.3f} avg), SELECT 1 {d.select_one.p50_ms:.3f} ms p50 "
        f"({d.select_one.avg_ms:.3f} avg): "
        f"{d.read_ratio_p50:.2f}x p50, {d.read_ratio:.2f}x avg",
        f"    SELECT answers_of_user($1) {d.reader_call.p50_ms:.3f} ms p50: "
        f"{d.reader_call.p50_ms / d.select_one.p50_ms:.2f}x p50",
        f"    the stored column alone (one row of one table; not exact in deferred mode) "
        f"{d.stored_read.p50_ms:.3f} ms p50: {d.stored_read_ratio_p50:.2f}x p50, the floor "
        f"under the exact read",
    ]
