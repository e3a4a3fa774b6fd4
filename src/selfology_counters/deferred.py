"""Deferred counter mode: the mode stored in the database, switching it live, and folding.

In deferred mode an INSERT of answers does no counter work; the answers at or above the
horizon are pending, and the exact reads (``answers_of_user`` and friends, which the DAO
uses) add them to the stored value. :func:`fold_once` moves the horizon and adds what lies
below it to the stored counters, in one transaction; :class:`Worker` does that on a schedule
(``selfology-counters worker``). See docs/COUNTER_ARCHITECTURE.md, "Deferred mode".
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
from selfology_counters.connect import connect, require_schema
from selfology_counters.distributed import refuse_on_citus
from selfology_counters.errors import InvalidInputError
from selfology_counters.sqlfiles import SCHEMA, query

RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
APPLICATION_NAME = "selfology-counters worker"  # how the worker shows in pg_stat_activity
HELD_BACK_AFTER_S = 1.0
DRAIN_AT = 10_000  # answers in one fold above which the worker folds again without waiting


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


async def state(connection: asyncpg.Connection, schema: str = SCHEMA) -> ModeState:
    await require_schema(connection, schema)
    row = await connection.fetchrow(query("health.sql", "mode", schema))
    backlog = await connection.fetchrow(query("health.sql", "backlog", schema))
    writer = await connection.fetchrow(query("health.sql", "oldest_writer", schema))
    held = None
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


async def set_mode(connection: asyncpg.Connection, mode: str, schema: str = SCHEMA) -> ModeState:
    """Switch to ``mode`` (immediate or deferred), live; a no-op when it is the mode already.

    Writers of answers wait for the switch (one short transaction); nothing is lost or
    counted twice. Switching to immediate folds everything pending first."""
    if mode not in model.MODES:
        raise InvalidInputError(
            f"unknown counter mode {mode!r}: use one of {', '.join(model.MODES)}"
        )
    await require_schema(connection, schema)
    await refuse_on_citus(connection, mode, schema)
    await _retrying(lambda: connection.fetchval(query("deferred.sql", "set_mode", schema), mode))
    return await state(connection, schema)


async def fold_once(connection: asyncpg.Connection, schema: str = SCHEMA) -> FoldResult:
    """Fold every answer that is final (one transaction; a killed worker loses nothing)."""
    started = time.perf_counter()
    row = await _retrying(lambda: connection.fetchrow(query("deferred.sql", "fold", schema)))
    seconds = time.perf_counter() - started
    if row is None:
        return FoldResult(0, None, True, seconds)
    return FoldResult(row["folded"], _seconds(row["oldest_age"]), False, seconds)


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
            "folds": self.folds, "folded": self.folded, "busy": self.busy,
            "errors": self.errors, "seconds": round(self.seconds, 3),
            "max_oldest_age_s": ages[-1] if ages else None,
        }  # fmt: skip


FoldCallback = Callable[[FoldResult], None]


class Worker:
    """Folds until ``stop`` is set, every ``interval_s``; right away again only after a fold
    of at least ``DRAIN_AT`` answers (a backlog to catch up on), so that a steady trickle of
    answers costs a few folds a second, not a core. A database that goes away is retried,
    not fatal; the fold in progress when ``stop`` is set finishes first."""

    def __init__(
        self, dsn: str, *, interval_s: float = 0.2, schema: str = SCHEMA,
        on_fold: FoldCallback | None = None, on_error: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self.dsn = dsn
        self.interval_s = interval_s
        self.schema = schema
        self.on_fold = on_fold or (lambda _result: None)
        self.on_error = on_error or (lambda _message: None)
        self.summary = WorkerSummary()

    async def run(self, stop: asyncio.Event, *, once: bool = False) -> WorkerSummary:
        started = time.perf_counter()
        connection: asyncpg.Connection | None = None
        try:
            while not stop.is_set():
                try:
                    connection = connection or await connect(
                        self.dsn, server_settings={"application_name": APPLICATION_NAME}
                    )
                    result = await fold_once(connection, self.schema)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    self.summary.errors += 1
                    self.on_error(f"{type(exc).__name__}: {str(exc).strip()[:200]}")
                    await _dropped(connection)
                    connection = None
                    await _wait(stop, self.interval_s)
                    continue
                self._record(result)
                if once and not result.busy:
                    break
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


async def _retrying(work: Callable[[], Any]) -> Any:
    for attempt in range(5):
        try:
            return await work()
        except RETRYABLE:
            if attempt == 4:
                raise
            await asyncio.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")


def _seconds(age: timedelta | None) -> float | None:
    return None if age is None else age.total_seconds()
