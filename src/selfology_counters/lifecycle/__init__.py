"""One schema lifecycle: what the database is, the plan for it, and applying that plan.

:func:`plan` returns a typed :class:`Plan` (what kind of database, the revisions to apply, the
objects that are not current, whether counters get recounted, or the adoption of the original
schema); :func:`apply` carries it out under a lock that serialises concurrent runs, so a
second ``migrate`` waits and then finds nothing to do. The CLI only renders these.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import asyncpg

from selfology_counters import distributed, health, model, objects, original
from selfology_counters.connect import connect
from selfology_counters.lifecycle import adopt, distribute, revisions
from selfology_counters.lifecycle.ddl import retrying, set_local_lock_timeout
from selfology_counters.objects import ObjectStatus
from selfology_counters.sqlfiles import SCHEMA, query

T = TypeVar("T")
LOCK_POLL_S = 0.2
Progress = Callable[[str], None]


class DatabaseState(str, Enum):
    EMPTY = "empty"  # no selfology tables: the revisions create them
    OURS = "ours"  # created or adopted by us: the revisions upgrade it
    ORIGINAL = "original"  # the original system's tables: adopt


@dataclass(frozen=True)
class Plan:
    """What :func:`apply` would do now."""

    state: DatabaseState
    revision: str | None  # where the database is (None: none of our revisions)
    revisions: list[str]  # to apply, oldest first
    reinstall: list[ObjectStatus]  # installed objects that are not current, or missing
    adoption: adopt.AdoptionReport | None  # the original schema's adoption steps and SQL
    distribute: bool = False  # a Citus coordinator whose tables are not distributed yet

    @property
    def recount(self) -> bool:
        """Every counter is recounted (repair) after revisions ran or objects were installed."""
        return bool(self.revisions or self.reinstall or self.distribute)

    @property
    def nothing_to_do(self) -> bool:
        return not self.recount and self.adoption is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "revision": self.revision,
            "revisions": self.revisions,
            "reinstall": [o.as_dict() for o in self.reinstall],
            "recount": self.recount,
            "adoption": None if self.adoption is None else self.adoption.as_dict(),
            "distribute": self.distribute,
        }


@dataclass
class Outcome:
    """What :func:`apply` did."""

    plan: Plan
    before: str | None
    after: str | None
    reinstalled: list[str] = field(default_factory=list)
    counters_corrected: int = 0
    adoption: adopt.AdoptionReport | None = None  # what the adoption did
    # Distributed on Citus in this run: that installed every object (their distributed
    # variant), so the reinstall after it found nothing left to do.
    distributed: bool = False

    @property
    def installed(self) -> int:
        """How many functions, triggers and views this run installed or reinstalled."""
        return len(model.OBJECTS) if self.distributed else len(self.reinstalled)

    @property
    def changed(self) -> bool:
        return (
            self.before != self.after
            or bool(self.reinstalled)
            or self.adoption is not None
            or self.distributed
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.plan.state.value,
            "before": self.before,
            "after": self.after,
            "changed": self.changed,
            "applied": self.plan.revisions,
            "reinstalled": self.reinstalled,
            "counters_corrected": self.counters_corrected,
            "distributed": self.distributed,
            "adoption": None if self.adoption is None else self.adoption.as_dict(),
        }


async def detect(connection: asyncpg.Connection) -> DatabaseState:
    """Which of the three kinds of database this is."""
    has_answers = await connection.fetchval(query("catalog.sql", "answers_table"), SCHEMA)
    if not has_answers:
        return DatabaseState.EMPTY
    stamped = await connection.fetchval(
        query("catalog.sql", "version_table"), SCHEMA, revisions.VERSION_TABLE
    )
    return DatabaseState.OURS if stamped else DatabaseState.ORIGINAL


async def plan(dsn: str) -> Plan:
    """The plan for the database at ``dsn``; changes nothing."""
    connection = await connect(dsn)
    try:
        return await _plan(connection, dsn)
    finally:
        await connection.close()


async def apply(dsn: str, progress: Progress | None = None) -> Outcome:
    """Bring the database at ``dsn`` to this release: create, upgrade or adopt it, reinstall
    every object that is not current, recount. Concurrent runs wait for each other."""
    say = progress or (lambda _message: None)
    connection = await connect(dsn)
    try:
        while not await connection.fetchval(query("catalog.sql", "lifecycle_lock")):
            await asyncio.sleep(LOCK_POLL_S)  # another migrate is running: wait for it
        planned = await _plan(connection, dsn)
        say(f"database kind: {planned.state.value}")
        adoption = None
        if planned.state is DatabaseState.ORIGINAL:
            say("adopting the original Selfology database (see docs/ADOPTING.md)")
            adoption = await adopt.adopt(dsn, progress=say)
            # Adopted at the revision its schema matches; the later ones follow below.
            planned = await _plan(connection, dsn)
            planned = Plan(planned.state, None, planned.revisions, planned.reinstall, adoption)
        if planned.revisions:
            say(f"applying revisions: {', '.join(planned.revisions)}")
            await asyncio.to_thread(revisions.run_upgrade, dsn)
        distributing = planned.distribute or await distribute.needs_distributing(connection)
        if distributing:
            say(f"distributing the tables by {model.SHARD_KEY} on Citus (co-located)")
            await distribute.distribute(connection)
        outcome = Outcome(
            planned,
            planned.revision,
            revisions.head_revision(),
            adoption=adoption,
            distributed=distributing,
        )
        outcome.reinstalled, corrected = await settle(
            connection, recount=planned.recount, progress=say
        )
        outcome.counters_corrected = corrected + (adoption.counters_corrected if adoption else 0)
        return outcome
    finally:
        await connection.close()  # releases the lock


def upgrade(dsn: str) -> Outcome:
    """:func:`apply`, for synchronous callers (tests, scripts)."""
    return run_sync(apply(dsn))


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to completion, also from code that an event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


async def _plan(connection: asyncpg.Connection, dsn: str) -> Plan:
    state = await detect(connection)
    if state is DatabaseState.ORIGINAL:
        return Plan(state, None, [], [], await adopt.plan(dsn))
    at = await asyncio.to_thread(revisions.current, dsn) if state is DatabaseState.OURS else None
    reinstall: list[ObjectStatus] = []
    if state is DatabaseState.OURS:
        audit = await objects.audit(connection)
        reinstall = audit.not_current
        # An original counter trigger left next to ours: removed by the reinstall (_reinstall).
        reinstall += [_original_status(t) for t in original.recognise(audit.foreign_triggers)]
        if audit.xid_default != objects.XID_DEFAULT:
            reinstall.append(_xid_default_status(audit.xid_default))
    pending = revisions.pending_revisions(at)
    distributing = await distributed.citus_installed(connection) and (
        state is DatabaseState.EMPTY or await distribute.needs_distributing(connection)
    )
    return Plan(state, at, pending, reinstall, None, distributing)


def _original_status(trigger: original.OriginalTrigger) -> ObjectStatus:
    """An original counter trigger as the plan lists it: an object to remove."""
    obj = model.DbObject("trigger", trigger.name, table=trigger.table, public=True)
    return ObjectStatus(obj, True, True, False, original.describe(trigger) + ": removed")


def _xid_default_status(found: str | None) -> ObjectStatus:
    """The answers' xid column default, when it is not deferred mode's: restored by migrate."""
    obj = model.DbObject("trigger", f"{model.XID} default", table=model.ANSWERS, public=True)
    return ObjectStatus(obj, True, True, False, f"defaults to {found or 'nothing'}: restored")


async def settle(
    connection: asyncpg.Connection, *, recount: bool, progress: Progress | None = None
) -> tuple[list[str], int]:
    """After the revisions: reinstall what is not current, then recount every counter if
    anything was applied or reinstalled. Returns what was reinstalled, and how many counters
    the recount corrected."""
    reinstalled = await _reinstall(connection)
    if not (recount or reinstalled):
        return reinstalled, 0
    if progress is not None:
        progress("recounting every counter (repair)")
    return reinstalled, len((await health.repair(connection)).changes)


async def settle_dsn(dsn: str, *, recount: bool) -> tuple[list[str], int]:
    """:func:`settle` on a connection of its own (for Alembic's ``env.py``)."""
    connection = await connect(dsn)
    try:
        return await settle(connection, recount=recount)
    finally:
        await connection.close()


async def _reinstall(connection: asyncpg.Connection) -> list[str]:
    """Reinstall, in one short transaction, every object that is missing or not current, and
    remove every counter trigger of the original system still there (each counts twice next
    to ours: a database adopted by an older release may have kept migration 008's)."""
    audit = await objects.audit(connection)
    broken = audit.not_current
    originals = original.recognise(audit.foreign_triggers)
    xid_default_wrong = audit.xid_default != objects.XID_DEFAULT
    if not broken and not originals and not xid_default_wrong:
        return []
    wanted = [status.obj for status in broken]

    async def install() -> None:
        async with connection.transaction():
            await set_local_lock_timeout(connection)
            if audit.distributed:
                for statement in distributed.ddl_preamble():
                    await connection.execute(statement)
            for statement in await adopt.drop_original_statements(connection):
                await connection.execute(statement)
            if xid_default_wrong:  # deferred mode's columns, idempotent: restores the default
                await connection.execute(query("deferred_v1.sql", "columns"))
            for statement in objects.install_statements(wanted, distributed=audit.distributed):
                await connection.execute(statement)

    await retrying(install)
    removed = [
        f"removed {t.table}.{t.name} (the original's migration {t.migration})" for t in originals
    ]
    restored = [f"{model.ANSWERS}.{model.XID} default"] if xid_default_wrong else []
    return [status.label for status in broken] + removed + restored
