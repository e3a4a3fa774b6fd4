"""The typed results of ``compare`` (one dataclass per phase, and ``CompareResult`` holding
them all) and the sizes of a run (``FULL``, ``QUICK``, ``SMOKE``) with their progress and time
estimates. What bench/compare.py measures is returned in these (and in the harness's
ConcurrentResult and BulkResult); the renderers read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from selfology_counters.bench.harness import (
    Accounting,
    BulkResult,
    ConcurrentResult,
    LatencySummary,
)
from selfology_counters.bench.strategies import STRATEGIES, MaterializedView, Ours, OursDeferred


@dataclass(frozen=True)
class Sizes:
    """How much each phase does. ``FULL`` is the document's scale; ``QUICK`` a first look."""

    name: str
    inserts: int  # sequential single-row inserts per strategy
    warmup: int  # rounds before those, not timed
    writers: int  # concurrent writer connections
    per_writer: int  # inserts per writer
    bulk_rows: int
    bulk_repeats: int
    ladder: tuple[int, ...]  # migration 007's bulk sizes before bulk_rows
    ladder_budget_s: float  # stop the ladder after a step slower than this
    ladder_cap_s: float  # cancel a step of the ladder that takes longer than this
    read_answers: int  # answers of the user whose total is read
    read_repeats: int
    refresh_repeats: int
    rounds: int = 1  # the concurrent phase is run this many times, in rotated orders

    def describe(self) -> str:
        return (
            f"{self.inserts} sequential inserts per strategy (after {self.warmup} warm-up "
            f"rounds); {self.writers} concurrent writers x {self.per_writer} inserts, "
            f"{self.rounds} round(s); "
            f"bulk {self.bulk_rows:,} rows x {self.bulk_repeats}; reads at "
            f"{self.read_answers:,} answers x {self.read_repeats}"
        )


FULL = Sizes(
    "full",
    1000,
    50,
    100,
    10,
    100_000,
    3,
    (1000, 2000, 4000, 8000),
    15.0,
    60.0,
    100_000,
    100,
    3,
    rounds=3,
)
QUICK = Sizes(
    "quick", 200, 20, 100, 5, 10_000, 3, (1000, 2000, 4000), 5.0, 15.0, 10_000, 30, 2, rounds=2
)
SMOKE = Sizes("smoke", 10, 2, 4, 2, 200, 1, (50, 100), 3.0, 10.0, 300, 3, 1)  # tests only


def planned_units(sizes: Sizes) -> int:
    """Progress units of a run (the CLI's bar)."""
    concurrency_runs = (
        2 * sizes.rounds * sum(1 for s in STRATEGIES if s.own_writes or s is MaterializedView)
    )
    bulk_steps = sizes.bulk_repeats + len(sizes.ladder) + 1 + 1  # ladder ends at bulk_rows
    reads = 2 * sizes.read_repeats + sizes.refresh_repeats
    return len(STRATEGIES) + sizes.inserts + concurrency_runs + bulk_steps + reads


def estimated_seconds(sizes: Sizes) -> float:
    """What a run takes on this project's 2-core machine (per-unit costs measured there, on
    the embedded server); other machines differ, the proportions less so."""
    rounds = (sizes.inserts + sizes.warmup) * 0.007  # one insert of each of 7 strategies
    concurrency = 16 * sizes.rounds * (0.25 + sizes.writers * (sizes.per_writer + 1) / 2000)
    bulk = (sizes.bulk_repeats + 1) * 6 * sizes.bulk_rows * 8.5e-6
    drain = sizes.bulk_repeats * sizes.bulk_rows / 200_000
    reads = sizes.read_answers * 6e-5 + sizes.read_repeats * 2 * sizes.read_answers * 1e-7
    return 3 + rounds + concurrency + bulk + _ladder_seconds(sizes) + drain + reads


def _ladder_seconds(sizes: Sizes) -> float:
    total = 0.0
    for rows in (*sizes.ladder, sizes.bulk_rows):
        step = min(rows * rows * 5.5e-8, sizes.ladder_cap_s)  # migration 007: quadratic
        total += step
        if step > sizes.ladder_budget_s:
            break
    return total


@dataclass(frozen=True)
class SequentialResult:
    strategy: str
    latency: LatencySummary
    latency_vs_floor: float  # avg ms divided by the bare INSERT's (1.0 = free)
    accounting: Accounting
    max_event_age_s: float | None = None  # event-driven: the worker's lag


@dataclass(frozen=True)
class LadderStep:
    rows: int
    seconds: float
    rows_per_second: float
    cancelled: bool  # stopped by statement_timeout: ``seconds`` is a lower bound


@dataclass(frozen=True)
class Ladder:
    """Migration 007's bulk insert at growing sizes: its row trigger updates the same three
    counter rows once per row in one transaction, and each update walks the chain of row
    versions the previous ones left, so the time grows with the square of the rows."""

    steps: list[LadderStep]
    exponent: float | None  # t ~ rows ** exponent, from the last two completed steps
    extrapolated_s: float | None  # for ``target_rows``: an estimate, not a measurement
    target_rows: int
    accounting: Accounting


@dataclass(frozen=True)
class DrainResult:
    events: int
    seconds: float
    events_per_second: float
    batch: int


@dataclass(frozen=True)
class ReadResult:
    path: str
    label: str
    state: str  # "cold" (after ANALYZE) or "warm" (after VACUUM)
    value: int
    expected: int | None
    first_ms: float
    latency: LatencySummary


@dataclass(frozen=True)
class RefreshResult:
    table_rows: int
    refresh_ms: float  # median
    concurrently_ms: float
    repeats: int


@dataclass(frozen=True)
class ConnectionBudget:
    requested: int
    writers: int
    max_connections: int
    in_use: int
    reserved: int
    note: str | None  # set when the writers had to be clamped


@dataclass(frozen=True)
class ServerInfo:
    version: str
    server_version: str
    settings: list[str]
    machine: str
    cpus: int
    memory_gib: float
    extensions: list[str] = field(default_factory=list)  # "pg_ivm 1.15": those the run used


@dataclass
class CompareResult:
    command: str
    sizes: Sizes
    server: ServerInfo
    started_at: str
    strategies: dict[str, str]  # those measured, key -> label
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why it could not be built
    budget: ConnectionBudget | None = None
    sequential: list[SequentialResult] = field(default_factory=list)
    concurrent: list[ConcurrentResult] = field(default_factory=list)
    bulk: list[BulkResult] = field(default_factory=list)
    ladder: Ladder | None = None
    drain: DrainResult | None = None
    reads: list[ReadResult] = field(default_factory=list)
    refresh: RefreshResult | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sequential_of(self, key: str) -> SequentialResult | None:
        return next((s for s in self.sequential if s.strategy == key), None)

    def concurrent_of(self, key: str, *, same_user: bool) -> ConcurrentResult | None:
        return next(
            (c for c in self.concurrent if c.strategy == key and (c.users == 1) == same_user),
            None,
        )

    def bulk_of(self, key: str) -> BulkResult | None:
        return next((b for b in self.bulk if b.strategy == key), None)

    def read_of(self, path: str, state: str) -> ReadResult | None:
        return next((r for r in self.reads if r.path == path and r.state == state), None)

    @property
    def our_losses(self) -> int:
        """Counts our own triggers lost, in either mode, anywhere in the run (must be 0)."""
        ours = (Ours.key, OursDeferred.key)
        scenarios = [s.accounting for s in self.sequential if s.strategy in ours]
        scenarios += [c.accounting for c in self.concurrent if c.strategy in ours]
        scenarios += [b.accounting for b in self.bulk if b.strategy in ours]
        return sum(a.lost or 0 for a in scenarios)


def same_user(r: CompareResult, key: str) -> ConcurrentResult:
    """The run's writers-on-one-user result of strategy ``key`` (every run measures it)."""
    c = r.concurrent_of(key, same_user=True)
    assert c is not None
    return c


def many_users(r: CompareResult, key: str) -> ConcurrentResult:
    """The run's one-user-per-writer result of strategy ``key`` (every run measures it)."""
    c = r.concurrent_of(key, same_user=False)
    assert c is not None
    return c


def lost(c: ConcurrentResult) -> int:
    """Counts lost in a concurrent scenario (0 where the strategy keeps no counter)."""
    return c.accounting.lost or 0
