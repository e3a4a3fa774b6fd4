"""`compare`: every counter strategy of the document's decision matrix, measured in one run.

Each strategy (bench/strategies.py) is built in a scratch schema of its own on the same
server; all of them exist for the whole run and are dropped afterwards, also on error or
Ctrl-C. The phases, in order:

1. sequential single-row inserts, interleaved across the strategies on one connection (the
   order rotates every round, so machine noise hits every series alike), the event worker
   folding beside them;
2. ``writers`` connections released at once (an asyncio.Event), on one user and on as many
   users as writers, for each strategy in turn, with its background work running;
3. one bulk INSERT ... SELECT per strategy (migration 007: a ladder of growing sizes, because
   its cost grows with the square of the rows), then the event worker drains the backlog;
4. reading one user's total with ``read_answers`` answers: our counter, COUNT(*), the view
   (and pg_ivm's IMMV), against SELECT 1, after ANALYZE ("cold") and after VACUUM ("warm");
   REFRESH timings.

A strategy the server cannot have (pg_ivm, an extension) is skipped, with the reason.

Consistency is counted, not assumed: for every scenario, the answers actually inserted
against how much the strategy's counter moved (``Accounting``).
"""

from __future__ import annotations

import asyncio
import datetime
import math
import os
import platform
import time
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import asyncpg

from selfology_counters.bench.compare_results import (
    FULL,
    CompareResult,
    ConnectionBudget,
    DrainResult,
    Ladder,
    LadderStep,
    ReadResult,
    RefreshResult,
    SequentialResult,
    ServerInfo,
    Sizes,
)
from selfology_counters.bench.harness import (
    Accounting,
    BulkResult,
    ConcurrentResult,
    EventLag,
    LatencySummary,
    Operation,
    Progress,
    Staleness,
    median,
    release_together,
    rotated,
    rounds,
    silent,
)
from selfology_counters.bench.scratch import scratch_schema
from selfology_counters.bench.strategies import (
    STRATEGIES,
    CountStar,
    EventDriven,
    EventWorker,
    MaterializedView,
    Migration007,
    Ours,
    PgIvm,
    Refresher,
    Strategy,
)
from selfology_counters.connect import connect
from selfology_counters.errors import DatabaseUnavailableError
from selfology_counters.sqlfiles import query

# User ids of the scenarios (each strategy has its own schema, so they can repeat there).
SEQUENTIAL_USER = 1
SAME_USER = 1000
MANY_USERS_FROM = 2000
BULK_USER = 3000
LADDER_USER = 3001
READ_USER = 5000
BACKGROUND_USERS_FROM = 6000
BACKGROUND_USERS = 100

SETTINGS_SHOWN = [
    "max_connections",
    "shared_buffers",
    "work_mem",
    "synchronous_commit",
    "fsync",
    "wal_level",
    "full_page_writes",
    "jit",
    "max_wal_size",
    "checkpoint_timeout",
    "shared_preload_libraries",
    "session_preload_libraries",  # pg_ivm wants one of them
]
EXTENSIONS_SHOWN = sorted({cls.extension for cls in STRATEGIES if cls.extension})


async def run_compare(
    dsn: str,
    sizes: Sizes = FULL,
    *,
    progress: Progress | None = None,
    command: str = "selfology-counters compare",
) -> CompareResult:
    """Build every strategy, measure them all, drop every scratch schema (also on error)."""
    report = progress or silent
    started = time.perf_counter()
    async with AsyncExitStack() as stack:
        built: dict[str, Strategy] = {}
        skipped: dict[str, str] = {}
        for cls in STRATEGIES:
            why_not = await stack.enter_async_context(cls.available(dsn))
            if why_not is not None:
                skipped[cls.key] = why_not
            else:
                schema = await stack.enter_async_context(
                    scratch_schema(dsn, cls.install, label=cls.key)
                )
                built[cls.key] = cls(schema)
            report("build", 1)
        result = CompareResult(
            command=command,
            sizes=sizes,
            server=await _server_info(dsn),
            started_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            strategies={cls.key: cls.label for cls in STRATEGIES if cls.key in built},
            skipped=skipped,
        )
        await _timed(result, "read data", _load_read_data(dsn, built[MaterializedView.key], sizes))
        result.sequential = await _timed(
            result, "sequential", _sequential(dsn, built, sizes, report)
        )
        result.budget, result.concurrent = await _timed(
            result, "concurrent", _concurrency(dsn, built, sizes, report)
        )
        result.bulk, result.drain, result.ladder = await _timed(
            result, "bulk", _bulk(dsn, built, sizes, report)
        )
        result.reads, result.refresh = await _timed(
            result, "reads", _reads(dsn, built, sizes, report)
        )
    result.seconds = time.perf_counter() - started
    return result


async def _timed(result: CompareResult, phase: str, work: Any) -> Any:
    started = time.perf_counter()
    try:
        return await work
    finally:
        result.phase_seconds[phase] = round(time.perf_counter() - started, 2)


async def _server_info(dsn: str) -> ServerInfo:
    connection = await connect(dsn)
    try:
        row = await connection.fetchrow(
            query("compare.sql", "server"), SETTINGS_SHOWN, EXTENSIONS_SHOWN
        )
    finally:
        await connection.close()
    return ServerInfo(
        version=row["version"],
        server_version=row["server_version"],
        settings=list(row["settings"]),
        extensions=list(row["extensions"]),
        machine=_machine(),
        cpus=os.cpu_count() or 0,
        memory_gib=_memory_gib(),
    )


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()} {platform.machine()}, {model}"


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


# ---- phase 1: sequential single-row inserts ----


async def _sequential(
    dsn: str, built: dict[str, Strategy], sizes: Sizes, report: Progress
) -> list[SequentialResult]:
    writing = [s for s in built.values() if s.own_writes]
    connection = await connect(dsn)
    worker_connection = await connect(dsn)
    try:
        sessions = {s.key: (await s.setup_users(connection, [SEQUENTIAL_USER]))[0] for s in writing}
        before = {s.key: await s.reflected(connection, [SEQUENTIAL_USER]) for s in writing}
        worker = EventWorker(worker_connection, _as(built[EventDriven.key], EventDriven))
        stop = asyncio.Event()
        folding = asyncio.create_task(worker.run(stop))
        try:
            writes = {s.key: _writer(s, connection, *sessions[s.key], "q") for s in writing}
            samples = await rounds(writes, sizes.inserts, report, "sequential", warmup=sizes.warmup)
            # Read while the worker still runs: what a reader saw the moment the writes ended.
            at_end = {s.key: await s.reflected(connection, [SEQUENTIAL_USER]) for s in writing}
        finally:
            stop.set()
            await folding
        for strategy in writing:
            await strategy.settle(connection)
        after = {s.key: await s.reflected(connection, [SEQUENTIAL_USER]) for s in writing}
    finally:
        await asyncio.gather(connection.close(), worker_connection.close())
    inserted = sizes.warmup + sizes.inserts
    floor = LatencySummary.of(samples["bare"]).avg_ms
    results = []
    for strategy in writing:
        key, latency = strategy.key, LatencySummary.of(samples[strategy.key])
        accounting = Accounting.between(inserted, before[key], at_end[key], after[key])
        lag = worker.stats.max_event_age_s if isinstance(strategy, EventDriven) else None
        results.append(SequentialResult(key, latency, latency.avg_ms / floor, accounting, lag))
    return results


def _writer(
    strategy: Strategy, connection: asyncpg.Connection, session: int, user: int, prefix: str
) -> Operation:
    """The strategy's write of one answer, to question ``prefix`` + the write's number."""
    return lambda i: strategy.write(connection, session, user, f"{prefix}{i}")


def _as(strategy: Strategy, cls: type[Any]) -> Any:
    assert isinstance(strategy, cls)
    return strategy


# ---- phase 2: concurrent writers ----


async def _concurrency(
    dsn: str, built: dict[str, Strategy], sizes: Sizes, report: Progress
) -> tuple[ConnectionBudget, list[ConcurrentResult]]:
    """Every writer connection (and one for set-up and background work) is opened once, for
    all strategies; nothing else of ours is open meanwhile."""
    budget = await connection_budget(dsn, sizes.writers)
    connections = await _open_connections(dsn, budget.writers + 1)
    results: list[ConcurrentResult] = []
    try:
        if len(connections) - 1 < budget.writers:
            budget = _clamped(budget, len(connections) - 1, "the server refused the rest")
        aux, writers = connections[0], connections[1:]
        running = [s for s in built.values() if s.own_writes or isinstance(s, MaterializedView)]
        for users, first_user in ((1, SAME_USER), (len(writers), MANY_USERS_FROM)):
            user_ids = [first_user + w % users for w in range(len(writers))]
            runs: dict[str, list[ConcurrentResult]] = {s.key: [] for s in running}
            # Rounds in rotated orders, so that no strategy is always measured first or last.
            for round_ in range(sizes.rounds):
                for strategy in rotated(running, round_, sizes.rounds):
                    runs[strategy.key].append(
                        await _concurrent_run(strategy, aux, writers, user_ids, sizes.per_writer)
                    )
                    report("concurrent", 1)
            results += [_merged(r) for r in runs.values()]
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return budget, _with_floor_ratios(results)


def _merged(runs: list[ConcurrentResult]) -> ConcurrentResult:
    """The rounds of one strategy and scenario as one result."""
    first = runs[0]
    seconds = sum(r.seconds for r in runs)
    inserted = sum(r.accounting.inserted for r in runs)
    at_end = _sum_or_none([r.accounting.reflected_at_end for r in runs])
    settled = _sum_or_none([r.accounting.reflected for r in runs])
    lags = [r.lag for r in runs if r.lag is not None]
    stale = [r.staleness for r in runs if r.staleness is not None]
    rates = [r.per_second for r in runs]
    return replace(
        first,
        rounds=len(runs),
        attempted=sum(r.attempted for r in runs),
        errors=sum(r.errors for r in runs),
        seconds=seconds,
        per_second=inserted / seconds,
        per_second_range=(min(rates), max(rates)),
        accounting=Accounting.of(inserted, at_end, settled),
        lag=_merged_lag(lags) if lags else None,
        staleness=_merged_staleness(stale) if stale else None,
    )


def _sum_or_none(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v or 0 for v in values)


def _merged_lag(lags: list[EventLag]) -> EventLag:
    return EventLag(
        max(x.max_event_age_s for x in lags),
        max(x.drain_after_writers_s for x in lags),
        sum(x.events_folded for x in lags),
        sum(x.batches for x in lags),
    )


def _merged_staleness(stale: list[Staleness]) -> Staleness:
    refreshes = sum(x.refreshes for x in stale)
    total_ms = sum(x.avg_refresh_ms * x.refreshes for x in stale)
    return Staleness(
        refreshes,
        total_ms / refreshes if refreshes else 0.0,
        max(x.max_unreflected for x in stale),
        max(x.max_age_s for x in stale),
    )


async def connection_budget(dsn: str, requested: int) -> ConnectionBudget:
    connection = await connect(dsn)
    try:
        room = await connection.fetchrow(query("compare.sql", "connection_room"))
    finally:
        await connection.close()
    # Our measuring connection counts as in use: that slot is the margin we leave.
    free = room["max_connections"] - room["in_use"] - room["reserved"]
    budget = ConnectionBudget(
        requested, requested, room["max_connections"], room["in_use"], room["reserved"], None
    )
    if free - 1 < requested:
        return _clamped(budget, max(free - 1, 0), "the server has no room for more")
    return budget


def _clamped(budget: ConnectionBudget, writers: int, why: str) -> ConnectionBudget:
    reserved = f", {budget.reserved} reserved for superusers" if budget.reserved else ""
    note = (
        f"{writers} concurrent writers instead of {budget.requested}: max_connections="
        f"{budget.max_connections}, {budget.in_use} in use{reserved}, one kept for the "
        f"set-up and background work ({why})"
    )
    if writers < 2:
        raise DatabaseUnavailableError(f"too few free connections to compare: {note}")
    return replace(budget, writers=writers, note=note)


async def _open_connections(dsn: str, count: int) -> list[asyncpg.Connection]:
    """Up to ``count`` connections; fewer if the server refuses some as too many."""

    async def one() -> asyncpg.Connection | None:
        try:
            return await asyncpg.connect(dsn, timeout=30)
        except asyncpg.TooManyConnectionsError:
            return None

    opened = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    connections = [c for c in opened if isinstance(c, asyncpg.Connection)]
    failure = next((e for e in opened if isinstance(e, BaseException)), None)
    if failure is not None:
        await asyncio.gather(*(c.close() for c in connections))
        raise failure
    return connections


async def _concurrent_run(
    strategy: Strategy,
    aux: asyncpg.Connection,
    writers: list[asyncpg.Connection],
    user_ids: list[int],
    per_writer: int,
) -> ConcurrentResult:
    pairs = await strategy.setup_users(aux, user_ids)
    users = sorted(set(user_ids))
    # Warm-up, untimed and not counted: every writer's backend loads this schema's tables and
    # prepares its statements, so the first strategy measured pays no more than the others.
    await release_together(_writers(strategy, writers, pairs, "warm-up"), 1)
    await strategy.settle(aux)
    before = await strategy.reflected(aux, users)
    background = strategy.background(aux, users)
    if background is not None:
        await background.before_writers()
    stop = asyncio.Event()
    side = asyncio.create_task(background.run(stop)) if background is not None else None
    try:
        errors, seconds = await release_together(
            _writers(strategy, writers, pairs, "c"), per_writer
        )
        ended = time.perf_counter()
        # What a reader saw the moment the writes ended (aux is busy with the background).
        at_end = await strategy.reflected(writers[0], users)
    finally:
        stop.set()
        if side is not None:
            await side
    await (background.settle() if background is not None else strategy.settle(aux))
    settled_s = time.perf_counter() - ended
    after = await strategy.reflected(aux, users)
    attempted = len(writers) * per_writer
    return ConcurrentResult.of(
        strategy.key,
        len(users),
        len(writers),
        attempted,
        errors,
        seconds,
        Accounting.between(attempted - errors, before, at_end, after),
        _event_lag(background, settled_s),
        _staleness(background),
    )


def _writers(
    strategy: Strategy,
    writers: list[asyncpg.Connection],
    pairs: list[tuple[int, int]],
    prefix: str,
) -> list[Operation]:
    """One writer per connection, each in its own (session, user)."""
    return [_writer(strategy, c, *pair, prefix) for c, pair in zip(writers, pairs, strict=True)]


def _event_lag(background: object, drain_s: float) -> EventLag | None:
    if not isinstance(background, EventWorker):
        return None
    s = background.stats
    return EventLag(s.max_event_age_s, drain_s, s.events, s.batches)


def _staleness(background: object) -> Staleness | None:
    if not isinstance(background, Refresher):
        return None
    s = background.stats
    avg_ms = s.refresh_s / s.refreshes * 1000 if s.refreshes else 0.0
    return Staleness(s.refreshes, avg_ms, s.max_unreflected, s.max_age_s)


def _with_floor_ratios(results: list[ConcurrentResult]) -> list[ConcurrentResult]:
    floors = {r.users: r.per_second for r in results if r.strategy == "bare"}
    return [replace(r, throughput_vs_floor=r.per_second / floors[r.users]) for r in results]


# ---- phase 3: bulk inserts, and draining the events they left ----


async def _bulk(
    dsn: str, built: dict[str, Strategy], sizes: Sizes, report: Progress
) -> tuple[list[BulkResult], DrainResult, Ladder]:
    bulk = [s for s in built.values() if s.own_writes and not isinstance(s, Migration007)]
    connection = await connect(dsn)
    try:
        sessions = {s.key: (await s.setup_users(connection, [BULK_USER]))[0] for s in bulk}
        # Warm-up, untimed and not counted: one bulk each, so that no strategy pays alone for
        # growing its files from empty; the events it leaves are drained now.
        for strategy in bulk:
            await strategy.write_bulk(connection, *sessions[strategy.key], sizes.bulk_rows)
            await strategy.settle(connection)
        before = {s.key: await s.reflected(connection, [BULK_USER]) for s in bulk}
        timings = await rounds(
            {s.key: _bulk_writer(s, connection, *sessions[s.key], sizes.bulk_rows) for s in bulk},
            sizes.bulk_repeats,
            report,
            "bulk",
        )
        at_end = {s.key: await s.reflected(connection, [BULK_USER]) for s in bulk}
        drain = await _drain(connection, _as(built[EventDriven.key], EventDriven), report)
        after = {s.key: await s.reflected(connection, [BULK_USER]) for s in bulk}
        ladder = await _ladder(connection, built[Migration007.key], sizes, report)
    finally:
        await connection.close()
    inserted, floor = sizes.bulk_rows * sizes.bulk_repeats, median(timings["bare"])

    def counted(key: str) -> Accounting:
        return Accounting.between(inserted, before[key], at_end[key], after[key])

    results = [
        BulkResult.of(s.key, sizes.bulk_rows, timings[s.key], floor, counted(s.key)) for s in bulk
    ]
    return results, drain, ladder


def _bulk_writer(
    strategy: Strategy, connection: asyncpg.Connection, session: int, user: int, rows: int
) -> Operation:
    return lambda _i: strategy.write_bulk(connection, session, user, rows)


async def _drain(
    connection: asyncpg.Connection, events: EventDriven, report: Progress
) -> DrainResult:
    """The worker folds the bulk inserts' backlog of events (the worker did not run during
    them): its drain rate."""
    worker = EventWorker(connection, events)
    seconds = await worker.drain()
    report("drain", 1)
    rate = worker.stats.events / seconds if seconds else 0.0
    return DrainResult(worker.stats.events, seconds, rate, worker.batch)


async def _ladder(
    connection: asyncpg.Connection, strategy: Strategy, sizes: Sizes, report: Progress
) -> Ladder:
    """Migration 007's bulk insert at growing sizes, ending at ``bulk_rows``. Each step may
    take at most ``ladder_cap_s`` (statement_timeout: a cancelled step is a measured lower
    bound); the ladder stops after a step slower than ``ladder_budget_s``."""
    ((session, user),) = await strategy.setup_users(connection, [LADDER_USER])
    before = await strategy.reflected(connection, [user])
    cap_ms = str(int(sizes.ladder_cap_s * 1000))
    steps: list[LadderStep] = []
    for rows in (*sizes.ladder, sizes.bulk_rows):
        started = time.perf_counter()
        try:
            async with connection.transaction():
                await connection.execute(
                    query("compare.sql", "set_local_statement_timeout"), cap_ms
                )
                await strategy.write_bulk(connection, session, user, rows)
        except asyncpg.QueryCanceledError:
            seconds = time.perf_counter() - started
            steps.append(LadderStep(rows, seconds, rows / seconds, cancelled=True))
            break
        seconds = time.perf_counter() - started
        steps.append(LadderStep(rows, seconds, rows / seconds, cancelled=False))
        report("bulk", 1)
        if seconds > sizes.ladder_budget_s:
            break
    done = [s for s in steps if not s.cancelled]
    report("bulk", len(sizes.ladder) + 1 - len(done))
    after = await strategy.reflected(connection, [user])
    exponent, estimate = _extrapolate(done, sizes.bulk_rows)
    inserted = sum(s.rows for s in done)
    accounting = Accounting.between(inserted, before, after, after)
    return Ladder(steps, exponent, estimate, sizes.bulk_rows, accounting)


def _extrapolate(steps: list[LadderStep], target: int) -> tuple[float | None, float | None]:
    if len(steps) < 2 or steps[-1].rows >= target:
        return None, None
    a, b = steps[-2], steps[-1]
    exponent = math.log(b.seconds / a.seconds) / math.log(b.rows / a.rows)
    return exponent, b.seconds * (target / b.rows) ** exponent


# ---- phase 4: reading a user's total ----


async def _load_read_data(dsn: str, strategy: Strategy, sizes: Sizes) -> None:
    """The read user's answers and as many again over BACKGROUND_USERS other users; with
    autovacuum off on the table, so that "cold" and "warm" are the states their names say."""
    connection = await connect(dsn)
    try:
        await connection.execute(query("compare.sql", "disable_autovacuum", strategy.schema))
        ((session, user),) = await strategy.setup_users(connection, [READ_USER])
        await connection.execute(
            strategy.sql("insert_answers_bulk"), session, user, sizes.read_answers
        )
        others = list(range(BACKGROUND_USERS_FROM, BACKGROUND_USERS_FROM + BACKGROUND_USERS))
        background = [s for s, _u in await strategy.setup_users(connection, others)]
        per_user = max(sizes.read_answers // BACKGROUND_USERS, 1)
        await connection.execute(strategy.sql("insert_answers_per_session"), background, per_user)
        if isinstance(strategy, MaterializedView):
            await strategy.settle(connection)
    finally:
        await connection.close()


async def _reads(
    dsn: str, built: dict[str, Strategy], sizes: Sizes, report: Progress
) -> tuple[list[ReadResult], RefreshResult]:
    ours, count_star, matview = built[Ours.key], built[CountStar.key], built[MaterializedView.key]
    pg_ivm = built.get(PgIvm.key)
    read: tuple[Strategy, ...] = (ours, count_star, matview) + ((pg_ivm,) if pg_ivm else ())
    for strategy in read:
        if strategy is not matview:  # loaded before the writes: its REFRESHes read them
            await _load_read_data(dsn, strategy, sizes)
    paths: list[tuple[str, str, str]] = [
        ("select_1", "SELECT 1 (a round trip)", query("compare.sql", "select_one")),
        (
            "counter",
            "our counter (user_stats)",
            query("dao.sql", "user_total_answers", ours.schema),
        ),
        ("count_star", "COUNT(*) of the answers", count_star.sql("count_user_answers")),
        ("matview", "materialized view", matview.sql("matview_user_total")),
    ]
    if pg_ivm is not None:
        paths.append(("pg_ivm", "pg_ivm's IMMV", pg_ivm.sql("immv_user_total")))
    connection = await connect(dsn)
    try:
        await _maintain(connection, read, "analyze")
        cold = await _time_reads(connection, paths, "cold", sizes, report)
        await _maintain(connection, read, "vacuum")
        warm = await _time_reads(connection, paths, "warm", sizes, report)
        refresh = await _time_refresh(connection, _as(matview, MaterializedView), sizes, report)
    finally:
        await connection.close()
    return cold + warm, refresh


async def _maintain(
    connection: asyncpg.Connection, strategies: tuple[Strategy, ...], what: str
) -> None:
    for strategy in strategies:
        for relation in strategy.maintained:
            await connection.execute(strategy.sql(f"{what}_{relation}"))


async def _time_reads(
    connection: asyncpg.Connection,
    paths: list[tuple[str, str, str]],
    state: str,
    sizes: Sizes,
    report: Progress,
) -> list[ReadResult]:
    values: dict[str, int] = {}

    def read(key: str, statement: asyncpg.prepared_stmt.PreparedStatement) -> Operation:
        args = () if key == "select_1" else (READ_USER,)

        async def once(_i: int) -> None:
            values[key] = await statement.fetchval(*args)

        return once

    # Prepared now, so the first read is the server's first execution (with its planning),
    # not also the client's extra round trip to prepare.
    reads = {key: read(key, await connection.prepare(sql)) for key, _label, sql in paths}
    samples = await rounds(reads, sizes.read_repeats, report, "reads")
    return [
        ReadResult(
            key,
            label,
            state,
            int(values[key]),
            None if key == "select_1" else sizes.read_answers,
            samples[key][0] * 1000,
            LatencySummary.of(samples[key]),
        )
        for key, label, _sql in paths
    ]


async def _time_refresh(
    connection: asyncpg.Connection, matview: MaterializedView, sizes: Sizes, report: Progress
) -> RefreshResult:
    plain, concurrently = (
        matview.sql("refresh_matview"),
        matview.sql("refresh_matview_concurrently"),
    )
    timings = await rounds(
        {
            "refresh_matview": lambda _i: connection.execute(plain),
            "refresh_matview_concurrently": lambda _i: connection.execute(concurrently),
        },
        sizes.refresh_repeats,
        report,
        "refresh",
    )
    rows = await connection.fetchval(matview.sql("table_rows"))
    return RefreshResult(
        rows,
        median(timings["refresh_matview"]) * 1000,
        median(timings["refresh_matview_concurrently"]) * 1000,
        sizes.refresh_repeats,
    )
