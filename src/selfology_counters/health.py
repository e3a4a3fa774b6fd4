"""check, repair and stats as library functions returning typed results.

``check`` compares every counter with the truth in set-based queries (the view
``counter_consistency_check``) and audits the counter triggers. ``repair`` fixes exactly what
``check`` reports, in short batches, each locking its rows in the triggers' lock order and
recounting under that lock, so it is safe while the bot keeps writing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from selfology_counters import model, objects
from selfology_counters.connect import require_schema, retried
from selfology_counters.context import Counters, Where, bind
from selfology_counters.lifecycle.ddl import retrying, set_local_lock_timeout
from selfology_counters.model import Counter
from selfology_counters.objects import Audit, HoldsAudit, ObjectStatus
from selfology_counters.sqlfiles import SCHEMA, query

BATCH_ATTEMPTS = 5


@dataclass(frozen=True)
class CounterIssue:
    """A counter whose stored value plus its pending answers (deferred mode) differs from
    COUNT(*); ``stored`` is None when its row is missing."""

    counter: str
    key: int
    user_id: int
    stored: int | None
    actual: int
    status: str  # INCONSISTENT, MISSING_ROW, NULL_VALUE or NEGATIVE
    pending: int = 0

    @property
    def drift(self) -> int | None:
        return None if self.stored is None else self.stored + self.pending - self.actual


@dataclass(frozen=True)
class CheckResult(HoldsAudit):
    """The counters against the truth, beside the audit of the objects that keep them (held,
    not copied: what is installed, what stops the counting, what is only said)."""

    checked: dict[str, int]
    issues: list[CounterIssue]
    elapsed_s: float
    integrity: dict[str, int]  # answers no rule can place
    audit: Audit

    @property
    def mode(self) -> str:  # the counter mode: immediate or deferred
        return self.audit.mode

    @property
    def counters_consistent(self) -> bool:
        return not self.issues

    @property
    def triggers_healthy(self) -> bool:
        return self.audit.healthy

    @property
    def consistent(self) -> bool:
        intact = not any(self.integrity.values())
        return self.counters_consistent and self.triggers_healthy and intact

    @property
    def consistency_rate(self) -> float:
        total = sum(self.checked.values())
        return 1.0 if total == 0 else (total - len(self.issues)) / total

    def as_dict(self) -> dict[str, Any]:
        return {
            "consistent": self.consistent,
            "mode": self.mode,
            "checked": self.checked,
            "consistency_rate": self.consistency_rate,
            "issues": [{**asdict(i), "drift": i.drift} for i in self.issues],
            **self.audit_dict(),
            "integrity": self.integrity,
            "overridden_writes": [asdict(o) for o in self.audit.overridden],
            "elapsed_s": round(self.elapsed_s, 3),
        }


async def check(
    connection: asyncpg.Connection,
    user_id: int | None = None,
    where: Where = SCHEMA,
    *,
    user_ids: Sequence[int] | None = None,
) -> CheckResult:
    """Every counter (of one user, or of ``user_ids``, if given) against the truth, and the
    triggers' state."""
    counters = await bind(connection, where)
    await require_schema(connection, counters.schema)
    started = time.perf_counter()
    if user_id is not None:
        user_ids = [user_id]
    audit = await objects.audit(connection, counters)
    rows: list[asyncpg.Record] = []
    # Without the view (dropped with a replaced answers table, say) nothing can be compared:
    # the audit reports it missing, and migrate reinstalls it.
    if all(o.installed for o in audit.objects if o.kind == "view"):
        if user_ids is None:
            rows = await connection.fetch(counters.sql("health.sql", "check_all"))
        else:
            rows = await connection.fetch(counters.sql("health.sql", "check_users"), user_ids)
    checked_as = {counter.name: counter.checked_as for counter in model.COUNTERS}
    checked = dict.fromkeys(checked_as.values(), 0)
    issues: list[CounterIssue] = []
    for row in rows:
        checked[checked_as[row["counter"]]] = row["checked"]
        issues += [CounterIssue(counter=row["counter"], **i) for i in json.loads(row["issues"])]
    # Worst first across all counters: the human report shows the head of this list.
    issues.sort(key=lambda i: (-abs(i.actual if i.drift is None else i.drift), i.counter, i.key))
    if user_ids is None:
        integrity = await connection.fetchrow(counters.sql("health.sql", "integrity"))
    else:
        integrity_sql = counters.sql("health.sql", "integrity_users")
        integrity = await connection.fetchrow(integrity_sql, list(user_ids))
    return CheckResult(checked, issues, time.perf_counter() - started, dict(integrity), audit)


@dataclass(frozen=True)
class RepairChange:
    counter: str
    key: int
    before: int | None  # None: the row was missing and has been created
    after: int


@dataclass
class RepairResult:
    dry_run: bool
    changes: list[RepairChange] = field(default_factory=list)
    triggers_enabled: list[str] = field(default_factory=list)
    triggers_disabled: list[str] = field(default_factory=list)  # on in a mode that wants off
    # What repair cannot fix itself (missing or outdated objects: run `migrate`).
    unfixable: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "changed": len(self.changes),
            "changes": [asdict(c) for c in self.changes],
            "triggers_enabled": self.triggers_enabled,
            "triggers_disabled": self.triggers_disabled,
            "unfixable": self.unfixable,
        }


class _DryRunRollback(Exception):
    """Raised inside a batch's transaction to undo it after recording what it did."""


ProgressCallback = Callable[[int], None]


async def repair(
    connection: asyncpg.Connection,
    *,
    dry_run: bool = False,
    batch_size: int = 500,
    user_id: int | None = None,
    progress: ProgressCallback | None = None,
    found: CheckResult | None = None,
    where: Where = SCHEMA,
) -> RepairResult:
    """Fix what ``check`` reports (pass its result as ``found`` to skip checking again).

    Disabled counter triggers are enabled first, so no write slips past them afterwards.
    Then each wrong counter is recounted in batches of ``batch_size`` keys, each batch its own
    short transaction that locks its rows in the triggers' order (sessions, user_stats,
    digital_personality; keys ascending) and writes only values that differ. With
    ``dry_run`` every batch runs the same way and is rolled back.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    counters = await bind(connection, where)
    found = found or await check(connection, user_id, counters)
    result = RepairResult(dry_run=dry_run)
    result.unfixable = [
        f"{o.kind} {o.label} is {o.state.value} ({o.reason}): "
        "run 'selfology-counters migrate', which reinstalls it"
        for o in found.objects
        if not (o.installed and o.current)
    ] + [
        f"foreign trigger {name} can change what is counted: remove it, or acknowledge it"
        for name in found.foreign_triggers
    ]
    result.triggers_enabled, result.triggers_disabled = await _set_trigger_states(
        connection, found.objects, dry_run, counters
    )
    if found.audit is not None:
        result.triggers_enabled += await _enable_constraints(
            connection, found.audit.disabled_constraints, dry_run, counters.schema
        )
    if (result.triggers_enabled or result.triggers_disabled) and not dry_run:
        # A write committed while the trigger was off, after `found` was taken, is only seen
        # by a check that starts after the trigger is back on.
        found = await check(connection, user_id, counters)
    for counter in model.COUNTERS:  # the one lock order
        issues = [i for i in found.issues if i.counter == counter.name]
        for user, batch in _user_batches(issues, batch_size, counters.distributed):
            result.changes += await _repair_batch(
                connection, counter, batch, dry_run, counters, user
            )
            if progress is not None:
                progress(len(batch))
    return result


def _user_batches(
    issues: Sequence[CounterIssue], size: int, distributed: bool
) -> Iterator[tuple[int | None, list[int]]]:
    """Batches of keys, ascending. Distributed (Citus), a batch holds the keys of one user, so
    that its locks and recount go to that user's shard; otherwise any keys (user None)."""
    if not distributed:
        for batch in _batches(sorted({i.key for i in issues}), size):
            yield None, batch
        return
    for user in sorted({i.user_id for i in issues}):
        keys = sorted({i.key for i in issues if i.user_id == user})
        for batch in _batches(keys, size):
            yield user, batch


async def _enable_constraints(
    connection: asyncpg.Connection,
    disabled: Sequence[objects.DisabledConstraint],
    dry_run: bool,
    schema: str,
) -> list[str]:
    """Enable the disabled internal triggers of a foreign key (ALTER TABLE ... DISABLE
    TRIGGER ALL disables them with ours); returns what was (or would be) enabled."""
    enabled = []
    for d in disabled:
        sql = await connection.fetchval(
            query("audit.sql", "enable_internal_trigger_sql"), schema, d.table, d.trigger
        )
        if not dry_run:
            await connection.execute(sql)
        enabled.append(f"{d.table}.{d.trigger} (foreign key {d.constraint})")
    return enabled


async def _set_trigger_states(
    connection: asyncpg.Connection,
    statuses: Sequence[ObjectStatus],
    dry_run: bool,
    counters: Counters,
) -> tuple[list[str], list[str]]:
    """Enable the triggers the counter mode wants on, disable those it wants off; returns
    what was (or, with ``dry_run``, would be) enabled and disabled.

    A switch of mode flips the insert trigger too, so ``statuses`` may be stale by now: the
    change is made under the lock a switch takes first (the answers' table, SHARE ROW
    EXCLUSIVE), from an audit read under it, so that it never undoes a switch."""
    if dry_run or not any(_flip_wanted(t) for t in statuses):
        return _flip_labels(statuses)

    async def under_the_switch_lock() -> tuple[list[str], list[str]]:
        async with connection.transaction():
            await set_local_lock_timeout(connection)
            await connection.execute(counters.sql("health.sql", "lock_answers_as_a_switch"))
            fresh = (await objects.audit(connection, counters)).objects
            for trigger in fresh:
                if _flip_wanted(trigger):
                    sql = objects.toggle_sql(trigger.obj, trigger.wanted_enabled, counters.schema)
                    await connection.execute(sql)
            return _flip_labels(fresh)

    return await retrying(under_the_switch_lock)


def _flip_wanted(trigger: ObjectStatus) -> bool:
    return trigger.installed and trigger.enabled != trigger.wanted_enabled


def _flip_labels(statuses: Sequence[ObjectStatus]) -> tuple[list[str], list[str]]:
    """The triggers to enable, and those to disable."""
    wanted = [t for t in statuses if _flip_wanted(t)]
    return [t.label for t in wanted if t.wanted_enabled], [
        t.label for t in wanted if not t.wanted_enabled
    ]


async def _repair_batch(
    connection: asyncpg.Connection,
    counter: Counter,
    keys: list[int],
    dry_run: bool,
    counters: Counters,
    user: int | None = None,
) -> list[RepairChange]:
    """One batch, retried when PostgreSQL picks it as a deadlock or serialization victim."""
    return await retried(
        lambda: _repair_batch_once(connection, counter, keys, dry_run, counters, user),
        BATCH_ATTEMPTS,
    )


async def _repair_batch_once(
    connection: asyncpg.Connection,
    counter: Counter,
    keys: list[int],
    dry_run: bool,
    counters: Counters,
    user: int | None,
) -> list[RepairChange]:
    """``user``: on Citus, the batch's user, which its statements name (the shard key)."""
    changes: list[RepairChange] = []
    by_user = (user,) if counters.distributed else ()
    created: set[int] = set()
    if counter.created_by_answers and not dry_run:
        # Missing rows are created (at zero) and committed on their own, before the batch
        # locks rows in ascending order: holding a new row while waiting for an older one
        # would break the triggers' lock order.
        created = await _create_missing_rows(connection, counter, keys, counters)
    try:
        async with connection.transaction():
            if counter.created_by_answers and dry_run:  # rolled back with the dry run
                created = await _create_missing_rows(connection, counter, keys, counters)
            await connection.execute(counters.sql("health.sql", "mark_counting"))
            await connection.execute(counters.sql("health.sql", "lock_mode"))
            lock = counters.sql("health.sql", f"lock_{counter.short}")
            await connection.execute(lock, keys, *by_user)
            recount = counters.sql("health.sql", f"recount_{counter.short}")
            rows = await connection.fetch(recount, keys, *by_user)
            changes = [
                RepairChange(
                    counter.name, r["key"], None if r["key"] in created else r["before"], r["after"]
                )
                for r in rows
            ]
            changes += [
                RepairChange(counter.name, key, None, 0)
                for key in sorted(created - {r["key"] for r in rows})
            ]
            if dry_run:
                raise _DryRunRollback
    except _DryRunRollback:
        pass
    return sorted(changes, key=lambda c: c.key)


async def _create_missing_rows(
    connection: asyncpg.Connection, counter: Counter, keys: list[int], counters: Counters
) -> set[int]:
    create = counters.sql("health.sql", f"create_missing_{counter.short}")
    return {r["key"] for r in await connection.fetch(create, keys)}


def _batches(keys: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]
