"""How ``benchmark`` and ``compare`` measure, and what a measurement gives.

Two ways of measuring, shared by both commands: :func:`rounds` runs timed operations round
after round, the order rotated (:func:`rotated`) so that machine noise hits every operation
alike (sequential inserts, bulk inserts, reads, refreshes); :func:`release_together` starts
writers on connections of their own at the same moment. One result type per kind of
measurement: :class:`LatencySummary`, :class:`ConcurrentResult`, :class:`BulkResult`, with
:class:`Accounting` (inserted against counted) inside the last two.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

T = TypeVar("T")

Progress = Callable[[str, int], None]
"""Told (phase, units done) as the work advances (the CLI's progress bar)."""

Operation = Callable[[int], Awaitable[object]]
"""One timed operation, given its number (the round, or a writer's k-th write)."""


def silent(_phase: str, _units: int) -> None:
    """The progress callback when nobody watches."""


def rotated(items: Sequence[T], turn: int, turns: int) -> list[T]:
    """``items`` in the order of turn ``turn`` out of ``turns``: moved on by one place each turn
    or, when there are fewer turns than items, by as many as spreads the first place evenly;
    so that no item is always measured first or last."""
    shift = (turn * len(items) // turns if turns < len(items) else turn) % len(items)
    return [*items[shift:], *items[:shift]]


async def rounds(
    operations: dict[str, Operation],
    count: int,
    report: Progress,
    phase: str,
    *,
    warmup: int = 0,
) -> dict[str, list[float]]:
    """Run every operation once a round, ``warmup`` untimed rounds (numbered below 0) then
    ``count`` timed ones, in rotated orders; the seconds each operation took, by name."""
    samples: dict[str, list[float]] = {name: [] for name in operations}
    names = list(operations)
    for i in range(-warmup, count):
        for name in rotated(names, i, warmup + count):
            started = time.perf_counter()
            await operations[name](i)
            if i >= 0:
                samples[name].append(time.perf_counter() - started)
        if i >= 0:
            report(phase, 1)
    return samples


async def release_together(writers: Sequence[Operation], per_writer: int) -> tuple[int, float]:
    """Each writer waits on one event, then makes ``per_writer`` writes (numbered from 0); all
    are released at once. Returns how many writes failed (an SQL error: nothing written) and
    the seconds from the release until the last writer finished."""
    start = asyncio.Event()

    async def writer(write: Operation) -> int:
        await start.wait()
        failed = 0
        for k in range(per_writer):
            try:
                await write(k)
            except asyncpg.PostgresError:
                failed += 1
        return failed

    tasks = [asyncio.create_task(writer(write)) for write in writers]
    await asyncio.sleep(0)  # let every writer reach start.wait()
    started = time.perf_counter()
    start.set()
    try:
        failed = sum(await asyncio.gather(*tasks))
    finally:
        for task in tasks:  # only still running if a writer failed outside SQL
            task.cancel()
    return failed, time.perf_counter() - started


@dataclass(frozen=True)
class LatencySummary:
    """Milliseconds per operation, and operations per second of wall time."""

    count: int
    avg_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    total_ms: float
    per_second: float

    @classmethod
    def of(cls, samples_s: list[float]) -> LatencySummary:
        ms = sorted(s * 1000 for s in samples_s)
        total = sum(ms)
        return cls(
            count=len(ms),
            avg_ms=total / len(ms),
            p50_ms=percentile(ms, 50),
            p95_ms=percentile(ms, 95),
            p99_ms=percentile(ms, 99),
            total_ms=total,
            per_second=len(ms) / (total / 1000) if total else 0.0,
        )


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class Accounting:
    """Answers inserted against how much the counter moved. ``reflected_at_end``: when the
    writes ended; ``reflected``: after the counter settled (worker drained, view refreshed).
    None where there is no counter."""

    inserted: int
    reflected_at_end: int | None
    reflected: int | None
    lost: int | None
    consistency: float | None
    consistency_at_end: float | None

    @classmethod
    def of(cls, inserted: int, at_end: int | None, settled: int | None) -> Accounting:
        def share(n: int | None) -> float | None:
            return None if n is None or inserted == 0 else n / inserted

        lost = None if settled is None else inserted - settled
        return cls(inserted, at_end, settled, lost, share(settled), share(at_end))

    @classmethod
    def between(
        cls, inserted: int, before: int | None, at_end: int | None, settled: int | None
    ) -> Accounting:
        """From the counter's readings before, when the writes ended and once settled."""

        def moved(after: int | None) -> int | None:
            return None if after is None or before is None else after - before

        return cls.of(inserted, moved(at_end), moved(settled))


@dataclass(frozen=True)
class EventLag:
    """How far an event worker beside the writers fell behind (``compare``'s event-driven)."""

    max_event_age_s: float  # oldest event when the worker folded it
    drain_after_writers_s: float  # writers done -> no event left
    events_folded: int
    batches: int


@dataclass(frozen=True)
class Staleness:
    """How far a view refreshed beside the writers fell behind (``compare``'s matview)."""

    refreshes: int
    avg_refresh_ms: float
    max_unreflected: int
    max_age_s: float


@dataclass(frozen=True)
class ConcurrentResult:
    """Writers released together, over every round: ``per_second`` is all the answers
    inserted over all the time taken; ``per_second_range`` the slowest and fastest round."""

    strategy: str
    users: int
    writers: int
    rounds: int
    attempted: int
    errors: int
    seconds: float
    per_second: float
    per_second_range: tuple[float, float]
    throughput_vs_floor: float | None
    accounting: Accounting
    lag: EventLag | None = None
    staleness: Staleness | None = None

    @classmethod
    def of(
        cls,
        strategy: str,
        users: int,
        writers: int,
        attempted: int,
        errors: int,
        seconds: float,
        accounting: Accounting,
        lag: EventLag | None = None,
        staleness: Staleness | None = None,
    ) -> ConcurrentResult:
        """One round."""
        rate = accounting.inserted / seconds
        return cls(
            strategy,
            users,
            writers,
            1,
            attempted,
            errors,
            seconds,
            rate,
            (rate, rate),
            None,
            accounting,
            lag,
            staleness,
        )


@dataclass(frozen=True)
class BulkResult:
    strategy: str
    rows: int
    repeats: int
    seconds: float  # median
    rows_per_second: float
    rows_per_second_range: tuple[float, float]  # slowest and fastest repeat
    throughput_vs_floor: float | None
    accounting: Accounting

    @classmethod
    def of(
        cls,
        strategy: str,
        rows: int,
        timings: list[float],
        floor_s: float,
        accounting: Accounting,
    ) -> BulkResult:
        """From the seconds of each repeat and the floor's (the bare INSERT's) median."""
        seconds = median(timings)
        return cls(
            strategy,
            rows,
            len(timings),
            seconds,
            rows / seconds,
            (rows / max(timings), rows / min(timings)),
            floor_s / seconds,
            accounting,
        )
