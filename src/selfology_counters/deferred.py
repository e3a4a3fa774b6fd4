"""Deferred counter mode: the mode stored in the database, switching it live, and folding.

In deferred mode an INSERT of answers does no counter work; the answers at or above the
horizon are pending, and the exact reads (``answers_of_user`` and friends, which the DAO
uses) add them to the stored value. :func:`fold_once` moves the horizon and adds what lies
below it to the stored counters, in one transaction; :class:`Worker` does that on a schedule
(``selfology-counters worker``). On Citus the pending answers are those marked pending
(``model.PENDING``), and a fold clears the mark shard by shard, one transaction per shard.
See docs/COUNTER_ARCHITECTURE.md, "Deferred mode".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from selfology_counters import model
from selfology_counters.connect import RETRYABLE, connect, require_schema, retried
from selfology_counters.context import Counters, Where, bind
from selfology_counters.errors import (
    DatabaseUnavailableError,
    FoldStalledError,
    InvalidInputError,
    SchemaMissingError,
)
from selfology_counters.lifecycle.ddl import retrying, set_local_lock_timeout
from selfology_counters.sqlfiles import SCHEMA

APPLICATION_NAME = "selfology-counters worker"  # how the worker shows in pg_stat_activity
HELD_BACK_AFTER_S = 1.0
DRAIN_AT = 10_000  # answers in one fold above which the worker folds again without waiting
ONCE_GIVES_UP_AFTER_S = 10.0  # `worker --once`: how long a busy fold or an outage is retried
ATTEMPTS = 5  # a fold or a switch chosen as a deadlock or serialization victim
PERMANENT_PAUSE_S = 5.0  # the long-running worker's wait after a permanent error: one line each
# Errors that no retry mends: `worker --once` reports them at once (the long-running worker
# logs them and keeps retrying, since an operator may fix them while it runs).
PERMANENT = (
    SchemaMissingError,
    asyncpg.InsufficientPrivilegeError,
    asyncpg.UndefinedTableError,
    asyncpg.UndefinedFunctionError,
    asyncpg.InvalidSchemaNameError,
    # A horizon from another cluster (a restore), or a subscriber (its publisher folds).
    asyncpg.ObjectNotInPrerequisiteStateError,
)


@dataclass(frozen=True)
class ModeState:
    """The counter mode, its horizon, the backlog of pending answers and the last fold."""

    mode: str
    horizon: int
    switched_at: datetime
    last_fold_at: datetime | None
    last_fold_rows: int | None
    pending: int
    oldest_pending_age_s: float | None
    # The oldest transaction that has written anything in the cluster, when it is older than
    # a second: the fold cannot pass it, so the backlog waits for it.
    held_back_by: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["switched_at"] = str(self.switched_at)
        data["last_fold_at"] = None if self.last_fold_at is None else str(self.last_fold_at)
        return data


@dataclass(frozen=True)
class FoldResult:
    """One fold: how many answers it added to the stored counters, and how long the oldest
    of them had been pending. ``busy``: another worker was folding; nothing was done."""

    folded: int
    oldest_age_s: float | None
    busy: bool
    seconds: float


async def state(connection: asyncpg.Connection, where: Where = SCHEMA) -> ModeState:
    counters = await bind(connection, where)
    await require_schema(connection, counters.schema)
    row = await connection.fetchrow(counters.sql("health.sql", "mode"))
    backlog = await connection.fetchrow(counters.sql("health.sql", "backlog"))
    held = None
    if not counters.distributed:  # Citus: no horizon, so no transaction holds the fold back
        writer = await connection.fetchrow(counters.sql("health.sql", "oldest_writer"))
        if writer is not None and (_seconds(writer["age"]) or 0) > HELD_BACK_AFTER_S:
            held = {**dict(writer), "age": _seconds(writer["age"])}
    return ModeState(
        mode=row["mode"],
        horizon=row["horizon"],
        switched_at=row["switched_at"],
        last_fold_at=row["last_fold_at"],
        last_fold_rows=row["last_fold_rows"],
        pending=backlog["pending"],
        oldest_pending_age_s=_seconds(backlog["oldest_age"]),
        held_back_by=held if row["mode"] == model.DEFERRED else None,
    )


async def set_mode(connection: asyncpg.Connection, mode: str, where: Where = SCHEMA) -> ModeState:
    """Switch to ``mode`` (immediate or deferred), live; a no-op when it is the mode already.

    Writers of answers wait for the switch (one short transaction); nothing is lost or
    counted twice. Switching to immediate folds everything pending first."""
    if mode not in model.MODES:
        raise InvalidInputError(
            f"unknown counter mode {mode!r}: use one of {', '.join(model.MODES)}"
        )
    counters = await bind(connection, where)
    await require_schema(connection, counters.schema)

    async def switch() -> None:
        # Writers queue behind the switch's lock on the answers: a short lock_timeout lets
        # them go first when the switch itself has to wait (behind a long INSERT, a shard
        # move), and the switch is retried (lifecycle.ddl.retrying) instead.
        async with connection.transaction():
            await set_local_lock_timeout(connection)
            await connection.fetchval(counters.sql("deferred.sql", "set_mode"), mode)

    await retrying(lambda: retried(switch, ATTEMPTS))
    if mode == model.IMMEDIATE and counters.distributed:
        await _fold_what_is_left(connection, counters)
    return await state(connection, counters)


async def _fold_what_is_left(connection: asyncpg.Connection, counters: Counters) -> None:
    """On Citus a switch to immediate leaves what was pending to a fold after it (the switch
    holds no lock a fold's shards could wait for): fold until nothing is. No answer becomes
    pending any more, so this ends; a worker folding meanwhile only makes it end sooner."""
    pending = counters.sql("health.sql", "backlog")
    for _ in range(1000):  # bounded: a shard whose fold keeps failing is left to the worker
        if not (await connection.fetchrow(pending))["pending"]:
            return
        if (await fold_shard_by_shard(connection, counters)).busy:
            await asyncio.sleep(0.01)  # another worker's fold is running: it folds them


async def fold_once(connection: asyncpg.Connection, where: Where = SCHEMA) -> FoldResult:
    """Fold every answer that is final (one transaction; a killed worker loses nothing).
    On Citus, one transaction per shard (:func:`fold_shard_by_shard`)."""
    counters = await bind(connection, where)
    if counters.distributed:
        return await fold_shard_by_shard(connection, counters)
    started = time.perf_counter()

    async def fold() -> asyncpg.Record | None:
        # A fold holds the mode row, which every delete and move of an answer reads: a row it
        # needs held by an idle session must not hold them all back. It gives up after the
        # short lock_timeout and is busy this time; the next fold tries again.
        async with connection.transaction():
            await set_local_lock_timeout(connection)
            return await connection.fetchrow(counters.sql("deferred.sql", "fold"))

    try:
        row = await retried(fold, ATTEMPTS)
    except asyncpg.LockNotAvailableError:
        row = None
    seconds = time.perf_counter() - started
    if row is None:
        return FoldResult(0, None, True, seconds)
    return FoldResult(row["folded"], _seconds(row["oldest_age"]), False, seconds)


async def fold_shard_by_shard(connection: asyncpg.Connection, counters: Counters) -> FoldResult:
    """Citus: clear the pending marks one shard at a time, each shard's users in one routed
    statement (its own transaction on its node; the update trigger there counts what it
    clears). A shard whose statement fails (a deadlock with a DELETE) keeps its answers
    pending for the next fold; a worker killed between shards loses and doubles nothing."""
    started = time.perf_counter()
    if not await connection.fetchval(counters.sql("deferred.sql", "fold_turn")):
        return FoldResult(0, None, True, time.perf_counter() - started)
    folded, ages = 0, []
    try:
        for group in await connection.fetch(counters.sql("deferred.sql", "pending_users_by_shard")):
            try:
                row = await connection.fetchrow(
                    counters.sql("deferred.sql", "fold_users"), group["users"]
                )
            except RETRYABLE:
                continue
            folded += row["folded"]
            if row["oldest_age"] is not None:
                ages.append(row["oldest_age"].total_seconds())
        await connection.execute(counters.sql("deferred.sql", "fold_recorded"), folded)
    finally:
        await connection.fetchval(counters.sql("deferred.sql", "fold_turn_end"))
    age = max(ages) if ages else None
    return FoldResult(folded, age, False, time.perf_counter() - started)


@dataclass
class WorkerSummary:
    folds: int = 0
    folded: int = 0
    busy: int = 0
    errors: int = 0
    seconds: float = 0.0
    oldest_ages_s: list[float] = field(default_factory=list)

    @property
    def folded_per_second(self) -> float:
        return self.folded / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        ages = sorted(self.oldest_ages_s)
        return {
            "folds": self.folds,
            "folded": self.folded,
            "busy": self.busy,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "p99_oldest_age_s": ages[min(len(ages) - 1, len(ages) * 99 // 100)] if ages else None,
            "max_oldest_age_s": ages[-1] if ages else None,
        }


FoldCallback = Callable[[FoldResult], None]


class Worker:
    """Folds until ``stop`` is set, every ``interval_s``; right away again only after a fold
    of at least ``DRAIN_AT`` answers (a backlog to catch up on), so that a steady trickle of
    answers costs a few folds a second, not a core. A database that goes away is retried,
    not fatal; the fold in progress when ``stop`` is set finishes first."""

    def __init__(
        self,
        dsn: str,
        *,
        interval_s: float = 0.2,
        schema: str = SCHEMA,
        on_fold: FoldCallback | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self.interval_s = interval_s
        self.schema = schema
        self.on_fold = on_fold or (lambda _result: None)
        self.on_error = on_error or (lambda _message: None)
        self.summary = WorkerSummary()

    async def run(self, stop: asyncio.Event, *, once: bool = False) -> WorkerSummary:
        """Fold until ``stop``; a database that goes away (a restart, an outage) is waited
        for. With ``once``: one fold, then return; a permanent error (no schema, no
        permission) is raised at once, and a fold still busy or unreachable after
        ``ONCE_GIVES_UP_AFTER_S`` raises :class:`FoldStalledError`."""
        started = time.perf_counter()
        connection: asyncpg.Connection | None = None
        counters: Counters | None = None  # bound once per connection
        last_problem = ""
        fatal = PERMANENT if once else ()
        try:
            while not stop.is_set():
                if once and time.perf_counter() - started > ONCE_GIVES_UP_AFTER_S:
                    raise FoldStalledError(
                        f"no fold in {ONCE_GIVES_UP_AFTER_S:.0f} s: {last_problem or 'busy'}"
                    )
                try:
                    connection = connection or await connect(
                        self.dsn, server_settings={"application_name": APPLICATION_NAME}
                    )
                    counters = counters or await bind(connection, self.schema)
                    result = await fold_once(connection, counters)
                except fatal:
                    raise
                except (
                    OSError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    DatabaseUnavailableError,
                ) as exc:
                    self.summary.errors += 1
                    last_problem = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
                    self.on_error(last_problem)
                    await _dropped(connection)
                    connection, counters = None, None
                    lasts = isinstance(exc, PERMANENT)
                    await _wait(stop, PERMANENT_PAUSE_S if lasts else self.interval_s)
                    continue
                self._record(result)
                if once and not result.busy:
                    break
                last_problem = "another worker's fold, or a row lock it needs, stayed busy"
                if result.busy or result.folded < DRAIN_AT:
                    await _wait(stop, self.interval_s)
        finally:
            await _dropped(connection)
            self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _record(self, result: FoldResult) -> None:
        if result.busy:
            self.summary.busy += 1
        else:
            self.summary.folds += 1
            self.summary.folded += result.folded
            if result.oldest_age_s is not None:
                self.summary.oldest_ages_s.append(result.oldest_age_s)
        self.on_fold(result)


async def _dropped(connection: asyncpg.Connection | None) -> None:
    if connection is not None and not connection.is_closed():
        connection.terminate()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):  # not the builtin one before 3.11
        await asyncio.wait_for(stop.wait(), seconds)


def _seconds(age: timedelta | None) -> float | None:
    return None if age is None else age.total_seconds()
