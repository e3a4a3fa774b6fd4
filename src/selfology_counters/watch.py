"""``selfology-counters watch``: checks on a schedule, repairs within a limit, serves metrics.

One process, one database connection. The full check of every counter runs first and then
every ``full_interval``; a cheap check of the users whose answers were inserted since the
last-but-one quick check (found through the answers' primary key) runs every
``quick_interval``, so writes that slipped past a disabled trigger show within seconds, while
deletes, moves and hand edits of a counter show at the next full check. Each check refreshes
the gauges of :class:`~selfology_counters.metrics.WatchMetrics` and samples the lock waits on
the counted tables.

Drift of at most ``auto_repair_max`` counters is repaired at once (``health.repair``) and
checked again; more, or drift beside a counter object that is not current and enabled, is left
to a person (the metric and the drift alert say so). Every action is one JSON line on the log.
A database that goes away makes a check fail: counted, logged, retried at the next quick tick
(the full check first, if it is due); it never ends the process.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any, TextIO, TypeVar

import asyncpg
from prometheus_client import start_http_server

from selfology_counters import deferred, health, model
from selfology_counters.connect import connect, require_schema
from selfology_counters.context import Counters, bind
from selfology_counters.errors import DatabaseUnavailableError
from selfology_counters.metrics import WatchMetrics
from selfology_counters.sqlfiles import SCHEMA, query

T = TypeVar("T")

Log = Callable[..., None]
"""Called as ``log(event, **fields)`` once per action."""

# Errors after which the connection is gone (or not to be trusted) and the server is counted
# as away: it was stopped, restarted, unreachable, or too slow to answer.
_CONNECTION_LOST = (
    DatabaseUnavailableError,
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # 57P01 admin shutdown, 57P03 starting up
)


class Scope(str, Enum):
    RECENT = "recent"
    FULL = "full"


@dataclass(frozen=True)
class WatchSettings:
    quick_interval: float = 30.0
    full_interval: float = 900.0
    auto_repair_max: int = 0  # 0: never repair automatically
    batch_size: int = 500
    query_timeout: float = 600.0  # a query taking longer counts as the database being away

    def __post_init__(self) -> None:
        if min(self.quick_interval, self.full_interval, self.query_timeout) <= 0:
            raise ValueError("intervals and the query timeout must be positive")
        if self.auto_repair_max < 0 or self.batch_size < 1:
            raise ValueError("auto_repair_max must be >= 0 and batch_size >= 1")


@dataclass(frozen=True)
class CheckOutcome:
    """What one check of ``watch`` found and did."""

    scope: Scope
    ok: bool
    error: str = ""
    inconsistent: int = 0  # wrong counters the check found (before any repair)
    repaired: int | None = None  # counters the automatic repair changed; None: it did not run
    held_back: str = ""  # why found drift was left to a person


def json_lines(stream: TextIO | None = None) -> Log:
    """A :data:`Log` writing one JSON object a line (time, event, fields) to ``stream``."""

    def log(event: str, **fields: Any) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        line = json.dumps({"ts": now, "event": event, **fields}, default=str)
        out = stream if stream is not None else sys.stderr
        out.write(line + "\n")
        out.flush()

    return log


class Watch:
    """The checks of ``watch`` against one database; :meth:`check` runs one, :meth:`run` the
    schedule. Closes the connection it opened (:meth:`close`)."""

    def __init__(
        self,
        dsn: str,
        settings: WatchSettings | None = None,
        metrics: WatchMetrics | None = None,
        log: Log | None = None,
        schema: str = SCHEMA,
    ) -> None:
        self.dsn = dsn
        self.settings = settings or WatchSettings()
        self.metrics = metrics or WatchMetrics()
        self.log = log or json_lines()
        self.schema = schema
        self._connection: asyncpg.Connection | None = None
        # Answer ids the last two quick checks reached: each covers the answers above the
        # older one, so an insert that commits up to one interval after taking its id is seen.
        self._marks: tuple[int, int] | None = None

    async def check(self, scope: Scope) -> CheckOutcome:
        """One check (connecting first if need be), its metrics and log lines, and the
        automatic repair when allowed. Never raises for a problem of the database."""
        try:
            connection = await self._connect()
            outcome = await self._check_on(connection, scope)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never fatal: counted, logged, retried on the schedule
            return self._failed(scope, exc)
        self.metrics.database_reached(True)
        return outcome

    async def run(self, stop: asyncio.Event) -> None:
        """Check on the schedule until ``stop`` is set; a check under way is cancelled then."""
        loop = asyncio.get_running_loop()
        due = {Scope.FULL: loop.time(), Scope.RECENT: loop.time() + self.settings.quick_interval}
        try:
            while True:
                scope = min(due, key=lambda s: due[s])  # the full check first on a tie
                if await _stopped_within(stop, due[scope] - loop.time()):
                    return
                started = loop.time()
                outcome = await _unless_stopped(stop, self.check(scope))
                if outcome is None:
                    return
                due[scope] = self._next_due(outcome, started, loop.time())
        finally:
            await self.close()

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=5)
            connection.terminate()

    def _next_due(self, outcome: CheckOutcome, started: float, now: float) -> float:
        if outcome.scope is Scope.FULL and outcome.ok:
            return max(now, started + self.settings.full_interval)
        if outcome.scope is Scope.FULL:  # retried at the pace of the quick check
            return now + self.settings.quick_interval
        return max(now, started + self.settings.quick_interval)

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._connection = await connect(
                self.dsn,
                command_timeout=self.settings.query_timeout,
                server_settings={"application_name": "selfology-counters watch"},
            )
        return self._connection

    async def _check_on(self, connection: asyncpg.Connection, scope: Scope) -> CheckOutcome:
        await require_schema(connection, self.schema)
        counters = await bind(connection, self.schema)  # once per check, for all it runs
        users = None if scope is Scope.FULL else await self._recent_users(connection)
        if self._marks is None:  # quick checks start from what the first check saw
            last = await connection.fetchval(query("watch.sql", "last_answer_id", self.schema))
            self._marks = (last, last)
        found = await health.check(connection, where=counters, user_ids=users)
        await self._sample_lock_waits(connection)
        self.metrics.deferred_backlog(await deferred.state(connection, counters))
        self.metrics.checked_counters(scope.value, found)
        self.log(
            "check",
            scope=scope.value,
            ok=True,
            users=None if users is None else len(users),
            checked=found.checked,
            inconsistent=len(found.issues),
            consistency_rate=found.consistency_rate,
            objects_not_current=[o.label for o in found.objects if not o.healthy],
            foreign_triggers=found.foreign_triggers,
            elapsed_s=round(found.elapsed_s, 3),
        )
        if not found.issues:
            self.metrics.auto_repair_held_back(scope.value, False)
            return CheckOutcome(scope, True)
        return await self._repair(connection, counters, scope, found, users)

    async def _recent_users(self, connection: asyncpg.Connection) -> list[int]:
        """Users with answers above the older mark (none before the marks are set)."""
        if self._marks is None:
            return []
        older, newer = self._marks
        row = await connection.fetchrow(query("watch.sql", "answers_since", self.schema), older)
        self._marks = (newer, max(newer, row["last_id"] or 0))
        return sorted(row["user_ids"])

    async def _sample_lock_waits(self, connection: asyncpg.Connection) -> None:
        row = await connection.fetchrow(
            query("watch.sql", "lock_waits"), self.schema, list(model.COUNTED_TABLES)
        )
        self.metrics.lock_waits(row["waiters"], row["longest_seconds"])

    async def _repair(
        self,
        connection: asyncpg.Connection,
        counters: Counters,
        scope: Scope,
        found: health.CheckResult,
        users: list[int] | None,
    ) -> CheckOutcome:
        held_back = self._held_back(found)
        self.metrics.auto_repair_held_back(scope.value, bool(held_back))
        if held_back:
            self.log(
                "repair_held_back",
                scope=scope.value,
                inconsistent=len(found.issues),
                reason=held_back,
            )
            return CheckOutcome(scope, True, inconsistent=len(found.issues), held_back=held_back)
        started = time.perf_counter()
        result = await health.repair(
            connection, batch_size=self.settings.batch_size, found=found, where=counters
        )
        after = await health.check(connection, where=counters, user_ids=users)
        self.metrics.repaired_counters(len(result.changes))
        self.metrics.checked_counters(scope.value, after)
        self.log(
            "repair",
            scope=scope.value,
            changed=len(result.changes),
            inconsistent_after=len(after.issues),
            elapsed_s=round(time.perf_counter() - started, 3),
        )
        return CheckOutcome(
            scope, True, inconsistent=len(found.issues), repaired=len(result.changes)
        )

    def _held_back(self, found: health.CheckResult) -> str:
        """Why this drift is left to a person ("" when watch may repair it)."""
        limit = self.settings.auto_repair_max
        if limit == 0:
            return "automatic repair is off (--auto-repair-max 0): run 'selfology-counters repair'"
        if len(found.issues) > limit:
            return (
                f"{len(found.issues)} wrong counters, more than --auto-repair-max {limit}: "
                "look for their cause, then run 'selfology-counters repair'"
            )
        if not found.triggers_healthy:
            # Recounting beside a disabled or outdated trigger would drift again; and a
            # trigger may have been disabled on purpose (a data-only restore).
            return (
                "a counter function, trigger or view is not current and enabled: run "
                "'selfology-counters check', then 'migrate' or 'repair'"
            )
        return ""

    def _failed(self, scope: Scope, exc: BaseException) -> CheckOutcome:
        lost = isinstance(exc, _CONNECTION_LOST) or (
            self._connection is not None and self._connection.is_closed()
        )
        if lost and self._connection is not None:
            self._connection.terminate()
            self._connection = None
        self.metrics.database_reached(not lost)
        self.metrics.check_failed(scope.value)
        error = _one_line(exc)
        self.log("check", scope=scope.value, ok=False, database_up=not lost, error=error)
        return CheckOutcome(scope, False, error=error)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``stop``; whether it is set."""
    if seconds > 0 and not stop.is_set():
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def _unless_stopped(stop: asyncio.Event, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None when ``stop`` is set first (``work`` is then cancelled)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()


async def serve(
    dsn: str,
    settings: WatchSettings,
    stop: asyncio.Event,
    *,
    listen: str,
    port: int,
    log: Log | None = None,
    metrics: WatchMetrics | None = None,
) -> None:
    """Serve ``/metrics`` on ``listen``:``port`` (0: any free port, logged) and watch until
    ``stop`` is set; the server is shut down before returning."""
    watch = Watch(dsn, settings, metrics, log)
    server, _thread = start_http_server(port, addr=listen, registry=watch.metrics.registry)
    try:
        host, bound = server.server_address[:2]
        watch.log(
            "serving",
            address=host,
            port=bound,
            path="/metrics",
            quick_interval=settings.quick_interval,
            full_interval=settings.full_interval,
            auto_repair_max=settings.auto_repair_max,
        )
        await watch.run(stop)
    finally:
        await asyncio.get_running_loop().run_in_executor(None, server.shutdown)
        server.server_close()
    watch.log("stopped")
