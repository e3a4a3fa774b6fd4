"""The ways of keeping the per-user answer counter that ``compare`` measures side by side.

Each strategy is built in a scratch schema of its own (``install``), always on the same tables
(``schema_v1.sql``), and says how the application writes one answer and a bulk of answers and
how many of the answers its counter shows (``reflected``). Every write starts with the same
INSERT of the answer row; what else happens, in the database or in the application, is the
strategy. The counter looked at is ``user_stats.total_answers_lifetime`` (what the bot reads),
or what stands in for it (the materialized view, ``COUNT(*)``).

Two strategies keep their counter up to date in the background: the event-driven worker and
the materialized view's refresher (``background``); ``settle`` brings them fully up to date.

A strategy that needs an extension (pg_ivm) is built only where the server has it or lets
``compare`` create it for the run (``available``); elsewhere it is skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import ClassVar, Protocol

import asyncpg

from selfology_counters import deferred, objects
from selfology_counters.connect import connect
from selfology_counters.lifecycle import revisions
from selfology_counters.sqlfiles import query, render

ANSWER_TEXT = "a typical answer of about forty characters"
WORKER_BATCH = 1000  # events folded per worker transaction
WORKER_IDLE_S = 0.01  # the worker's poll interval when it found nothing to fold


class Background(Protocol):
    """Work a strategy does beside the writers (on a connection of its own)."""

    async def before_writers(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...

    async def settle(self) -> None: ...


class Strategy:
    """One way of keeping the counter, bound to the scratch schema it was installed in."""

    key: ClassVar[str]
    label: ClassVar[str]
    files: ClassVar[tuple[str, ...]] = ()  # what it installs beside the shipped tables
    own_writes: ClassVar[bool] = True  # False: its write is the bare INSERT (view, COUNT(*))
    insert_one: ClassVar[str] = "insert_answer"  # the statements writing the answer rows
    insert_bulk: ClassVar[str] = "insert_answers_bulk"
    extension: ClassVar[str | None] = None  # the extension it is built with, if any
    # What the read test ANALYZEs and VACUUMs (compare.sql's analyze_NAME and vacuum_NAME).
    maintained: ClassVar[tuple[str, ...]] = ("answers",)

    def __init__(self, schema: str) -> None:
        self.schema = schema

    @classmethod
    @asynccontextmanager
    async def available(cls, dsn: str) -> AsyncIterator[str | None]:
        """Why this strategy cannot be built on the server, or None: then it can, for as long
        as the context lasts."""
        yield None

    @classmethod
    def install(cls, schema: str) -> list[str]:
        """The scripts that build this strategy in ``schema``."""
        return revisions.head_schema_sql(schema) + [render(name, schema) for name in cls.files]

    def sql(self, name: str, filename: str = "compare.sql") -> str:
        return query(filename, name, self.schema)

    async def setup_users(
        self, connection: asyncpg.Connection, user_ids: list[int]
    ) -> list[tuple[int, int]]:
        """A new session per element of ``user_ids``, and the users' counter rows at zero
        (and a digital_personality row each); returns (session id, user id) pairs."""
        rows = await connection.fetch(self.sql("create_sessions"), user_ids)
        await connection.execute(self.sql("create_counter_rows"), user_ids)
        await connection.execute(self.sql("create_personality_rows"), user_ids)
        return [(row["id"], row["user_id"]) for row in rows]

    async def write(
        self, connection: asyncpg.Connection, session: int, user: int, question: str
    ) -> None:
        """Record one answer, as the application would with this strategy."""
        await self.record(connection, session, user, question, 1)

    async def write_bulk(
        self, connection: asyncpg.Connection, session: int, user: int, rows: int
    ) -> None:
        """Record ``rows`` answers of one session in one INSERT ... SELECT."""
        await self.record(connection, session, user, None, rows)

    async def record(
        self,
        connection: asyncpg.Connection,
        session: int,
        user: int,
        question: str | None,
        rows: int,
    ) -> None:
        """What the strategy does for one answer to ``question`` or ``rows`` bulk answers; by
        default, the answer rows alone."""
        await self.insert_rows(connection, session, user, question, rows)

    async def insert_rows(
        self,
        connection: asyncpg.Connection,
        session: int,
        user: int,
        question: str | None,
        rows: int,
    ) -> None:
        """The answer rows alone: one answer to ``question``, or ``rows`` bulk answers."""
        if question is None:
            await connection.execute(self.sql(self.insert_bulk), session, user, rows)
        else:
            await connection.execute(
                self.sql(self.insert_one), session, user, question, ANSWER_TEXT, len(ANSWER_TEXT)
            )

    async def reflected(self, connection: asyncpg.Connection, users: list[int]) -> int | None:
        """How many answers of ``users`` the counter shows now (None: there is no counter)."""
        return int(await connection.fetchval(self.sql("user_stats_total"), users))

    async def settle(self, connection: asyncpg.Connection) -> None:
        """Bring a counter that lags behind (worker, refresh) fully up to date."""

    def background(self, connection: asyncpg.Connection, users: list[int]) -> Background | None:
        return None


class Bare(Strategy):
    key = "bare"
    label = "bare INSERT, no counter (the floor)"

    async def reflected(self, connection: asyncpg.Connection, users: list[int]) -> int | None:
        return None


class _ManualIncrements(Strategy):
    """The application adds to each counter itself (``n = n + k``) after the INSERT."""

    async def record(
        self,
        connection: asyncpg.Connection,
        session: int,
        user: int,
        question: str | None,
        rows: int,
    ) -> None:
        await self.insert_rows(connection, session, user, question, rows)
        await connection.execute(self.sql("add_to_session"), session, rows)
        await connection.execute(self.sql("add_to_user_stats"), user, rows)
        await connection.execute(self.sql("add_to_personality"), user, rows)


class ManualSameTransaction(_ManualIncrements):
    key = "manual_tx"
    label = "manual UPDATE n = n + 1, same transaction"

    async def record(
        self,
        connection: asyncpg.Connection,
        session: int,
        user: int,
        question: str | None,
        rows: int,
    ) -> None:
        async with connection.transaction():
            await super().record(connection, session, user, question, rows)


class ManualAutocommit(_ManualIncrements):
    key = "manual_autocommit"
    label = "manual UPDATE n = n + 1, separate autocommit statements"


class ManualReadModifyWrite(Strategy):
    key = "manual_rmw"
    label = "manual read-modify-write (SELECT n, then SET n = n + 1)"

    async def record(
        self,
        connection: asyncpg.Connection,
        session: int,
        user: int,
        question: str | None,
        rows: int,
    ) -> None:
        async with connection.transaction():
            await self.insert_rows(connection, session, user, question, rows)
            current = await connection.fetchrow(self.sql("read_counters"), session)
            await connection.execute(self.sql("set_session_count"), session, current[0] + rows)
            await connection.execute(self.sql("set_user_count"), user, (current[1] or 0) + rows)
            if current[2] is not None:
                await connection.execute(self.sql("set_personality_count"), user, current[2] + rows)


class Migration007(Strategy):
    key = "trigger_007"
    label = "document's migration 007 trigger (row-level, advisory try-lock)"
    files = ("strategy_007.sql",)


class Ours(Strategy):
    key = "ours"
    label = "our statement-level triggers (as shipped)"

    @classmethod
    def install(cls, schema: str) -> list[str]:
        """The shipped tables and counter objects, exactly as ``migrate`` installs them."""
        return [*revisions.head_schema_sql(schema), objects.install_sql(schema=schema)]


class OursDeferred(Ours):
    key = "ours_deferred"
    label = "our triggers in deferred mode (no counter work on INSERT, exact reads, a fold)"

    @classmethod
    def install(cls, schema: str) -> list[str]:
        """The shipped design, switched to deferred mode as ``mode deferred`` does."""
        return [*Ours.install(schema), query("bench.sql", "deferred_mode", schema)]

    async def reflected(self, connection: asyncpg.Connection, users: list[int]) -> int | None:
        """The exact read (stored + pending), as the DAO reads it."""
        return int(await connection.fetchval(self.sql("exact_total"), users))

    async def settle(self, connection: asyncpg.Connection) -> None:
        await Folder(connection, self).drain()

    def background(self, connection: asyncpg.Connection, users: list[int]) -> Background | None:
        return Folder(connection, self)


class MaterializedView(Strategy):
    key = "matview"
    label = "materialized view of per-user counts + REFRESH"
    files = ("strategy_matview.sql",)
    own_writes = False
    maintained = ("answers", "matview")

    async def reflected(self, connection: asyncpg.Connection, users: list[int]) -> int | None:
        return int(await connection.fetchval(self.sql("matview_total"), users))

    async def settle(self, connection: asyncpg.Connection) -> None:
        await connection.execute(self.sql("refresh_matview"))

    def background(self, connection: asyncpg.Connection, users: list[int]) -> Background | None:
        return Refresher(connection, self, users)


class CountStar(Strategy):
    key = "count_star"
    label = "COUNT(*) on every read"
    own_writes = False

    async def reflected(self, connection: asyncpg.Connection, users: list[int]) -> int | None:
        return int(await connection.fetchval(self.sql("answers_total"), users))


class EventDriven(Strategy):
    key = "events"
    label = "event-driven: outbox row in the same statement + worker"
    files = ("strategy_events.sql",)
    insert_one = "insert_answer_with_event"  # the answer and its outbox row, one statement
    insert_bulk = "insert_answers_bulk_with_events"

    async def settle(self, connection: asyncpg.Connection) -> None:
        await EventWorker(connection, self).drain()

    def background(self, connection: asyncpg.Connection, users: list[int]) -> Background | None:
        return EventWorker(connection, self)


class PgIvm(Strategy):
    """The counts as pg_ivm's IMMVs (strategy_pg_ivm.sql), kept by its triggers in the writing
    transaction. Its write is the bare INSERT; pg_ivm's triggers are its cost."""

    key = "pg_ivm"
    label = "pg_ivm: incrementally maintained views (IMMVs) of the counts"
    files = ("strategy_pg_ivm.sql",)
    extension = "pg_ivm"
    maintained = ("answers", "immv")

    @classmethod
    @asynccontextmanager
    async def available(cls, dsn: str) -> AsyncIterator[str | None]:
        """pg_ivm, if the database has it or lets us create it; created for the run only."""
        connection = await connect(dsn)
        try:
            created, why_not = await _create_pg_ivm(connection)
        finally:
            await connection.close()
        try:
            yield why_not
        finally:
            if created:
                # After the scratch schema is gone (the caller's stack unwinds in reverse);
                # shielded, like that schema's drop, so that Ctrl-C still leaves nothing.
                await asyncio.shield(_drop_pg_ivm(dsn))

    async def reflected(self, connection: asyncpg.Connection, users: list[int]) -> int | None:
        return int(await connection.fetchval(self.sql("immv_total"), users))


async def _create_pg_ivm(connection: asyncpg.Connection) -> tuple[bool, str | None]:
    """(created by us, why it cannot be had): pg_ivm is a superuser's extension, built and
    installed on the server apart from PostgreSQL."""
    if await connection.fetchval(query("compare.sql", "pg_ivm_installed")) is not None:
        return False, None
    try:
        await connection.execute(query("compare.sql", "create_pg_ivm"))
    except asyncpg.PostgresError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return False, f"CREATE EXTENSION pg_ivm failed on this server: {reason}"
    return True, None


async def _drop_pg_ivm(dsn: str) -> None:
    connection = await connect(dsn)
    try:
        await connection.execute(query("compare.sql", "drop_pg_ivm"))
    except asyncpg.DependentObjectsStillExistError:
        pass  # another run's IMMVs use it (that run found it here and leaves it): it stays
    finally:
        await connection.close()


STRATEGIES: tuple[type[Strategy], ...] = (
    Bare,
    ManualSameTransaction,
    ManualAutocommit,
    ManualReadModifyWrite,
    Migration007,
    Ours,
    OursDeferred,
    MaterializedView,
    CountStar,
    EventDriven,
    PgIvm,
)


@dataclass
class FoldStats:
    """What the event worker did: events folded, in how many batches, and the oldest event it
    folded (its age then is the lag of the counter at that moment)."""

    events: int = 0
    batches: int = 0
    max_event_age_s: float = 0.0


class EventWorker:
    """Folds the outbox into the counters, one batch per transaction (``fold_events``)."""

    def __init__(
        self, connection: asyncpg.Connection, strategy: EventDriven, batch: int = WORKER_BATCH
    ) -> None:
        self.connection = connection
        self.sql = strategy.sql("fold_events")
        self.batch = batch
        self.stats = FoldStats()

    async def fold_once(self) -> int:
        row = await self.connection.fetchrow(self.sql, self.batch)
        if row["events"]:
            self.stats.events += row["events"]
            self.stats.batches += 1
            self.stats.max_event_age_s = max(self.stats.max_event_age_s, row["oldest_s"])
        return int(row["events"])

    async def before_writers(self) -> None:
        await self.drain()

    async def run(self, stop: asyncio.Event) -> None:
        """Fold while the writers write; poll every WORKER_IDLE_S when there is nothing."""
        while not stop.is_set():
            if await self.fold_once() == 0:
                await asyncio.sleep(WORKER_IDLE_S)

    async def settle(self) -> None:
        await self.drain()

    async def drain(self) -> float:
        """Fold until no event is left; the seconds it took."""
        started = time.perf_counter()
        while await self.fold_once():
            pass
        return time.perf_counter() - started


class Folder(EventWorker):
    """Deferred mode's worker (``deferred.fold_once``), measured like the event worker: the
    oldest answer it folded is how far the stored column lagged behind then."""

    def __init__(self, connection: asyncpg.Connection, strategy: OursDeferred) -> None:
        self.connection = connection
        self.schema = strategy.schema
        self.stats = FoldStats()

    async def fold_once(self) -> int:
        result = await deferred.fold_once(self.connection, self.schema)
        if result.folded:
            self.stats.events += result.folded
            self.stats.batches += 1
            self.stats.max_event_age_s = max(self.stats.max_event_age_s, result.oldest_age_s or 0)
        return result.folded


@dataclass
class RefreshStats:
    """REFRESH ... CONCURRENTLY run back to back while the writers write."""

    refreshes: int = 0
    refresh_s: float = 0.0
    max_unreflected: int = 0  # answers written but not in the view, seen before a refresh
    max_age_s: float = 0.0  # longest time the view's content was behind the table


class Refresher:
    """Refreshes the materialized view over and over and records how stale it got."""

    def __init__(
        self, connection: asyncpg.Connection, strategy: MaterializedView, users: list[int]
    ) -> None:
        self.connection = connection
        self.strategy = strategy
        self.users = users
        self.stats = RefreshStats()
        self._previous_start = 0.0

    async def before_writers(self) -> None:
        self._previous_start = time.perf_counter()
        await self.connection.execute(self.strategy.sql("refresh_matview"))

    async def settle(self) -> None:
        await self.strategy.settle(self.connection)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            behind = await self.connection.fetchval(
                self.strategy.sql("matview_unreflected"), self.users
            )
            self.stats.max_unreflected = max(self.stats.max_unreflected, int(behind))
            started = time.perf_counter()
            await self.connection.execute(self.strategy.sql("refresh_matview_concurrently"))
            finished = time.perf_counter()
            # Until this refresh finished, the view showed the table as of the previous
            # refresh's start: an answer committed just after that waited this long.
            self.stats.max_age_s = max(self.stats.max_age_s, finished - self._previous_start)
            self._previous_start = started
            self.stats.refreshes += 1
            self.stats.refresh_s += finished - started
