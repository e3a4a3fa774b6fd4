"""The model's functions, triggers and view: their SQL, installing them, and auditing them.

Each object's SQL is its own block of ``sql/objects.sql``, rendered from the model. Installed,
it carries a stamp (``sql/stamps.sql``): the digest of that block and the md5 of the object's
definition as PostgreSQL reports it (``pg_get_functiondef``, ``pg_get_triggerdef``,
``pg_get_viewdef``). The audit compares both with what the model renders now and what the
catalog says now, per object, in the manner of django-pgtrigger: an object from another
release, or edited by hand after it was installed, is OUTDATED and named. Where the stamp is
gone or its md5 no longer matches (a dump and restore, ``--no-comments``, an upgrade of the
server), the server is asked what this release's definition looks like here (probe.py): the
same is CURRENT, anything else still OUTDATED.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import asyncpg

from selfology_counters import model, original, probe
from selfology_counters.context import Where, bind
from selfology_counters.model import DbObject
from selfology_counters.plural import plural
from selfology_counters.sqlfiles import SCHEMA, query, render

XID_DEFAULT = "((pg_current_xact_id())::text)::bigint"
"""How PostgreSQL reports the default of the answers' xid column (sql/deferred_v1.sql)."""
ENABLED_STATES = {"O", "A"}  # origin and always; "D" is disabled, "R" replica-only
_STAMP_FILE = "stamps.sql"
NOT_STAMPED = "not stamped by this release (installed by an older one, or by hand)"
EDITED = "edited since it was installed: its definition differs from the stamped one"
ANOTHER_RELEASE = "installed from another release's definition"


class State(str, Enum):
    CURRENT = "current"
    OUTDATED = "outdated"
    DISABLED = "disabled"  # a trigger that its counter mode wants enabled
    ENABLED = "enabled"  # a trigger that its counter mode wants disabled (it would count twice)
    MISSING = "missing"


@dataclass(frozen=True)
class ObjectStatus:
    """One object of the model as the catalog has it."""

    obj: DbObject
    installed: bool
    enabled: bool
    current: bool
    reason: str  # why it is not current ("" when it is)
    wanted_enabled: bool = True  # what the counter mode wants of a trigger

    @property
    def state(self) -> State:
        if not self.installed:
            return State.MISSING
        if not self.current:
            return State.OUTDATED
        if self.enabled == self.wanted_enabled:
            return State.CURRENT
        return State.DISABLED if self.wanted_enabled else State.ENABLED

    @property
    def healthy(self) -> bool:
        return self.state is State.CURRENT

    @property
    def kind(self) -> str:
        return self.obj.kind

    @property
    def name(self) -> str:
        return self.obj.name

    @property
    def table(self) -> str | None:
        return self.obj.table

    @property
    def label(self) -> str:
        return self.obj.label

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "table": self.table,
            "state": self.state.value,
            "installed": self.installed,
            "enabled": self.enabled,
            "wanted_enabled": self.wanted_enabled,
            "current": self.current,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class DisabledConstraint:
    """An internal trigger of a constraint (the answers' foreign key) that is disabled."""

    table: str
    trigger: str
    constraint: str


@dataclass(frozen=True)
class OverriddenWrites:
    """Writes to a counter column that were not ours: undone (the stored value stayed the
    truth) and counted by the column's keep trigger since ``since``."""

    counter: str
    writes: int
    since: str | None

    def describe(self) -> str:
        since = f" since {self.since}" if self.since else ""
        return (
            f"the application wrote {self.counter} {self.writes} times{since} (undone: the "
            "counter follows the answers by itself); remove that statement from its code"
        )


@dataclass(frozen=True)
class Audit:
    mode: str
    objects: list[ObjectStatus]
    # Other triggers on the counted tables that can change what we count (another counter?)
    foreign_triggers: list[str]
    disabled_constraints: list[DisabledConstraint] = field(default_factory=list)
    replica_settings: list[str] = field(default_factory=list)  # where replica role is set
    subscriptions: list[str] = field(default_factory=list)  # "subscription: table"
    # Subscriptions that apply answers but not every counter table: uncounted there.
    partial_subscriptions: list[str] = field(default_factory=list)
    # Subscriptions that apply every counter table but not the mode row: answers pending on a
    # deferred-mode publisher are not counted there.
    modeless_subscriptions: list[str] = field(default_factory=list)
    distributed: bool = False  # the tables are distributed by Citus (distributed.py)
    partitioned: dict[str, int] = field(default_factory=dict)  # table: partitions holding rows
    overridden: list[OverriddenWrites] = field(default_factory=list)  # undone foreign writes
    stale_copies: list[str] = field(default_factory=list)  # "table.column" nothing maintains
    xid_default: str | None = XID_DEFAULT  # the answers' xid column default, as reported
    foreign_horizon: tuple[int, int] | None = None  # (horizon, next id): restored elsewhere

    @property
    def notes(self) -> list[str]:
        """What bends the counting only if someone goes around it: said, never a failure."""
        said = [
            f"{table} is partitioned ({plural(n, 'partition')}): writes that name it are "
            "counted; a write naming a partition, and ATTACH, DETACH or DROP PARTITION, are not "
            "(run repair after partition maintenance)"
            for table, n in self.partitioned.items()
        ]
        said += [o.describe() for o in self.overridden if o.writes]
        # Kept exact, a copy of the user's total in every session row would make each answer
        # write (and lock) every session of its user; the bot reads user_stats instead.
        said += [
            f"{copy} (a copy of a counter, from the original's migration 003) is kept by "
            "nothing: read the counter itself (user_stats.total_answers_lifetime, or "
            "answers_of_user()), and drop the column once nothing reads it"
            for copy in self.stale_copies
        ]
        return said

    @property
    def not_current(self) -> list[ObjectStatus]:
        return [o for o in self.objects if not (o.installed and o.current)]

    @property
    def problems(self) -> list[str]:
        """What stops or bends the counting, besides the objects' own state."""
        originals = original.recognise(self.foreign_triggers)
        found = [
            f"{original.describe(t)}: a double count, never harmless; "
            "'selfology-counters migrate' removes it"
            for t in originals
        ]
        found += [
            f"foreign trigger on a counted table: {name} (can change what is counted; "
            "acknowledge a harmless one with COMMENT ON TRIGGER ... IS "
            "'selfology-counters: acknowledged')"
            for name in self.foreign_triggers
            if name not in {f"{t.table}.{t.name}" for t in originals}
        ]
        if self.foreign_horizon is not None:
            horizon, next_id = self.foreign_horizon
            found.append(
                f"the deferred-mode horizon {horizon} lies beyond this cluster's transaction "
                f"ids (next {next_id}): the database was restored from another cluster, and "
                "answers written since are not counted; run 'selfology-counters mode "
                "immediate', then 'selfology-counters repair', then 'selfology-counters mode "
                "deferred'"
            )
        if self.xid_default != XID_DEFAULT:
            found.append(
                f"{model.ANSWERS}.{model.XID} defaults to {self.xid_default or 'nothing'}, not "
                f"{XID_DEFAULT}: new answers are invisible to deferred mode's fold; "
                "'selfology-counters migrate' restores it"
            )
        found += [
            f"foreign key {d.constraint} on {d.table} is disabled (trigger {d.trigger}): "
            "answers with no session or the wrong user are accepted"
            for d in self.disabled_constraints
        ]
        found += [
            f"session_replication_role = replica is set for {where}: its writes fire "
            "no counter trigger"
            for where in self.replica_settings
        ]
        found += [
            f"subscription {name} applies {model.ANSWERS} without every counter table: its "
            "apply worker fires no statement trigger (not even ENABLE ALWAYS ones), so those "
            "answers are not counted here; replicate all four tables and "
            f"{model.MODE_TABLE}, or run repair"
            for name in self.partial_subscriptions
        ]
        found += [
            f"subscription {name} applies {model.ANSWERS} without {model.MODE_TABLE}: answers "
            "its publisher has not folded yet (deferred mode) are not counted here; add "
            f"{model.MODE_TABLE} to the publication"
            for name in self.modeless_subscriptions
        ]
        return found

    @property
    def healthy(self) -> bool:
        return all(o.healthy for o in self.objects) and not self.problems


class HoldsAudit:
    """What a result that holds an audit (check's, stats') tells of it: held, not copied."""

    audit: Audit

    @property
    def objects(self) -> list[ObjectStatus]:  # the model's functions, triggers and view
        return self.audit.objects

    @property
    def foreign_triggers(self) -> list[str]:  # other triggers on the counted tables
        return self.audit.foreign_triggers

    @property
    def problems(self) -> list[str]:  # what stops or bends the counting
        return self.audit.problems

    @property
    def subscriptions(self) -> list[str]:  # logical replication into ours
        return self.audit.subscriptions

    @property
    def notes(self) -> list[str]:  # said, never a failure (a partitioned answers table)
        return self.audit.notes

    @property
    def healthy(self) -> bool:  # every object as its mode wants it, and no problem
        return self.audit.healthy

    def audit_dict(self) -> dict[str, Any]:
        return {
            "objects": [o.as_dict() for o in self.objects],
            "foreign_triggers": self.foreign_triggers,
            "problems": self.problems,
            "subscriptions": self.subscriptions,
            "notes": self.notes,
            # The original system's counter triggers among the foreign ones: each counts twice.
            "original_triggers": original.as_dicts(self.foreign_triggers),
        }


def source_sql(obj: DbObject, schema: str = SCHEMA, *, distributed: bool = False) -> str:
    """The statement(s) that create ``obj``, rendered from the model (``distributed``: the
    variant for tables distributed by Citus, see distributed.py): its block, or the variant's
    own (``<block>_distributed``, sqlfiles.query) where the variant's whole body differs."""
    return query("objects.sql", obj.block, schema, distributed=distributed)


def source_digest(obj: DbObject, schema: str = SCHEMA, *, distributed: bool = False) -> str:
    source = source_sql(obj, schema, distributed=distributed)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _stamp_sql(obj: DbObject, schema: str, distributed: bool) -> str:
    stamp = f"selfology-counters source={source_digest(obj, schema, distributed=distributed)}"
    return query(_STAMP_FILE, obj.kind, schema, obj=obj, source=stamp)


def toggle_sql(obj: DbObject, enable: bool, schema: str = SCHEMA) -> str:
    """The statement that turns trigger ``obj`` on (``enable``) or off."""
    return query("toggle.sql", "enable" if enable else "disable", schema, obj=obj)


def install_statements(
    objects: Iterable[DbObject] = model.OBJECTS, schema: str = SCHEMA, *, distributed: bool = False
) -> list[str]:
    """The statements that (re)create ``objects`` in install order and stamp each, one
    statement per item: Citus propagates trigger DDL to the shards by its query text, so a
    string holding two statements is refused there."""
    wanted = set(objects)
    statements = []
    for obj in model.OBJECTS:
        if obj in wanted:
            source = source_sql(obj, schema, distributed=distributed).rstrip().rstrip(";")
            # A trigger's block is DROP TRIGGER; CREATE TRIGGER (no bodies, so no ";" inside).
            parts = source.split(";\n") if obj.kind == "trigger" else [source]
            statements += [part.strip() + ";" for part in parts]
            statements.append(_stamp_sql(obj, schema, distributed))
    return statements


def install_sql(
    objects: Iterable[DbObject] = model.OBJECTS, schema: str = SCHEMA, *, distributed: bool = False
) -> str:
    """One script that (re)creates ``objects`` in install order and stamps each.

    Runs in the caller's transaction, through asyncpg or psycopg alike (no parameters)."""
    return "\n\n".join(install_statements(objects, schema, distributed=distributed))


def drop_sql(objects: Iterable[DbObject] = model.OBJECTS, schema: str = SCHEMA) -> str:
    """One script that drops ``objects`` (triggers and view before the functions)."""
    wanted = [obj for obj in reversed(model.OBJECTS) if obj in set(objects)]
    return render("drop_objects.sql", schema, objects=tuple(wanted))


async def installed_rows(
    connection: asyncpg.Connection, schema: str, never_acknowledged: list[str]
) -> list[asyncpg.Record]:
    """The model's functions and views in ``schema``, and the triggers on its counted tables
    (``never_acknowledged``: trigger names an acknowledging comment does not hide), each with
    its stamp and the md5 of its definition (audit.sql, installed_objects)."""
    return list(
        await connection.fetch(
            query("audit.sql", "installed_objects"),
            schema,
            [f.name for f in model.FUNCTIONS],
            list(model.COUNTED_TABLES),
            [v.name for v in model.VIEWS],
            never_acknowledged,
        )
    )


async def audit(connection: asyncpg.Connection, where: Where = SCHEMA) -> Audit:
    """Each object of the model: installed, enabled as its counter mode wants, current (and
    why not)."""
    # One snapshot for the mode and the triggers' states: a switch of mode changes both in one
    # transaction, so a check during one sees it before or after, never half of it.
    snapshot = {} if connection.is_in_transaction() else {"isolation": "repeatable_read"}
    async with connection.transaction(**snapshot):
        counters = await bind(connection, where)
        schema, distributed = counters.schema, counters.distributed
        mode = await current_mode(connection, schema)
        # Definitions are hashed with the same search_path as when they were stamped.
        await connection.execute(query("audit.sql", "catalog_search_path"))
        rows = await installed_rows(connection, schema, [t.name for t in original.TRIGGERS])
        disabled = await connection.fetch(
            query("audit.sql", "disabled_constraint_triggers"), schema, list(model.COUNTED_TABLES)
        )
        replica = [
            r["applies_to"] for r in await connection.fetch(query("audit.sql", "replica_settings"))
        ]
        applied = await connection.fetch(
            query("audit.sql", "subscriptions"), schema, [*model.COUNTED_TABLES, model.MODE_TABLE]
        )
        # A subscriber's mode row is its publisher's: so is the horizon (from the publisher's
        # transaction ids), and its own triggers fire for none of the applied writes.
        mode_applied = any(r["table_name"] == model.MODE_TABLE for r in applied)
        overridden = [
            OverriddenWrites(r["counter"], r["writes"], r["since"])
            for r in await connection.fetch(counters.sql("audit.sql", "overridden_writes"), schema)
        ]
        xid_default = await connection.fetchval(query("audit.sql", "xid_default"), schema)
        beyond = None
        if mode == model.DEFERRED and not distributed and not mode_applied:
            beyond = await connection.fetchrow(query("audit.sql", "foreign_horizon", schema))
        copies = await connection.fetch(query("audit.sql", "stale_copies"), schema)
        stale = [f"{r['table_name']}.{r['column_name']}" for r in copies]
        partitions = query("audit.sql", "partitioned_tables")
        partitioned = {
            r["table_name"]: r["partitions"]
            for r in await connection.fetch(partitions, schema, list(model.COUNTED_TABLES))
        }
        found = {(r["kind"], r["table_name"], r["name"]): r for r in rows}
        statuses = [
            _status(
                obj,
                found.get(probe.key(obj)),
                schema,
                mode,
                distributed,
                follows_publisher=mode_applied,
            )
            for obj in model.OBJECTS
        ]
        statuses = await _rederived(connection, statuses, found, schema, distributed)
    ours = {(obj.kind, obj.table, obj.name) for obj in model.OBJECTS}
    foreign = sorted(
        f"{table}.{name}" for kind, table, name in found if (kind, table, name) not in ours
    )
    constraints = [
        DisabledConstraint(r["table_name"], r["name"], r["constraint_name"]) for r in disabled
    ]
    subscriptions = [f"{r['subscription']}: {r['table_name']}" for r in applied]
    partial, modeless = _incomplete(applied)
    return Audit(
        mode,
        statuses,
        foreign,
        constraints,
        replica,
        subscriptions,
        partial,
        modeless,
        distributed,
        partitioned,
        overridden,
        stale,
        xid_default,
        None if beyond is None else (beyond["horizon"], beyond["next_id"]),
    )


def _incomplete(applied: list[asyncpg.Record]) -> tuple[list[str], list[str]]:
    """The subscriptions that apply the answers but not all counter tables, and those that
    apply all of them but not the mode row. Logical replication's apply worker fires row
    triggers only, and ours that count are statement triggers: the counters of such a
    subscriber can only arrive counted, from the publisher; and what is pending there (in
    deferred mode) only the publisher's horizon, in its mode row, tells."""
    tables: dict[str, set[str]] = {}
    for row in applied:
        tables.setdefault(row["subscription"], set()).add(row["table_name"])
    answers = {name: have for name, have in tables.items() if model.ANSWERS in have}
    partial = [name for name, have in answers.items() if not set(model.COUNTED_TABLES) <= have]
    modeless = [
        name
        for name, have in answers.items()
        if name not in partial and model.MODE_TABLE not in have
    ]
    return sorted(partial), sorted(modeless)


async def current_mode(connection: asyncpg.Connection, schema: str = SCHEMA) -> str:
    """The counter mode stored in the database (immediate before deferred mode existed)."""
    if not await connection.fetchval(
        query("catalog.sql", "version_table"), schema, model.MODE_TABLE
    ):
        return model.IMMEDIATE
    return str(await connection.fetchval(query("health.sql", "mode", schema)))


def _status(
    obj: DbObject,
    row: asyncpg.Record | None,
    schema: str,
    mode: str,
    distributed: bool,
    *,
    follows_publisher: bool = False,
) -> ObjectStatus:
    """``follows_publisher``: the mode row arrives by logical replication, and the apply
    worker fires none of our triggers, so whether one is enabled here is nobody's concern."""
    wanted = obj.enabled_in(mode, distributed=distributed)
    if row is None:
        return ObjectStatus(obj, False, False, False, "not installed", wanted)
    enabled = row["enabled"] is None or row["enabled"] in ENABLED_STATES
    wanted = enabled if follows_publisher else wanted
    reason = _why_not_current(obj, row["stamp"], row["definition"], schema, distributed)
    return ObjectStatus(obj, True, enabled, not reason, reason, wanted)


def _why_not_current(
    obj: DbObject, stamp: str | None, definition: str, schema: str, distributed: bool
) -> str:
    fields = dict(part.split("=", 1) for part in (stamp or "").split() if "=" in part)
    if "source" not in fields or "definition" not in fields:
        return NOT_STAMPED
    if fields["source"] != source_digest(obj, schema, distributed=distributed):
        return ANOTHER_RELEASE
    if fields["definition"] != definition:
        return EDITED
    return ""


async def _rederived(
    connection: asyncpg.Connection,
    statuses: list[ObjectStatus],
    found: dict[probe.Key, asyncpg.Record],
    schema: str,
    distributed: bool,
) -> list[ObjectStatus]:
    """``statuses`` with the verdict of each object whose stamp is gone or no longer matches
    taken from its definition: CURRENT when it is this release's as this server renders it
    (restored from a dump, without comments, onto another major version), else OUTDATED with
    that said too. One installed from another release's stamped source stays OUTDATED."""
    doubtful = {s.obj: s for s in statuses if s.reason in (NOT_STAMPED, EDITED)}
    if not doubtful:
        return statuses
    texts = {obj: found[probe.key(obj)]["definition_text"] for obj in doubtful}
    try:
        same = await probe.matching(connection, texts, schema, distributed=distributed)
    except probe.ProbeError as exc:
        note = f" (not compared with this release's definition here: {exc})"
        return [replace(s, reason=s.reason + note) if s.obj in doubtful else s for s in statuses]
    differs = "; and it is not this release's definition"
    return [
        s
        if s.obj not in doubtful
        else replace(s, current=True, reason="")
        if s.obj in same
        else replace(s, reason=s.reason + differs)
        for s in statuses
    ]
