"""The counters and the database objects that keep them, defined once.

Every other place takes these facts from here: the SQL templates are rendered from this
model (``sqlfiles.render`` passes it to every template as ``model``), the audit in
``objects.py`` compares what is installed with what the model renders, and the tests hold
the few hand-written statements to it.

A counter is a stored count of the answers in ``user_answers_new`` that share a value of
``source`` with the counter row's ``key``. The counters are listed in the one lock order that
every writer (the triggers, repair, the install-time recount) follows: sessions, then
user_stats, then digital_personality, keys ascending within each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
"""A plain lower-case SQL identifier: every name of the model, and a schema name."""

VERSION = 1
"""The version suffix of every function, trigger and view name (``_v1``). A released body may
change in place: the audit sees the change (its source digest differs) and ``migrate``
reinstalls it. A new version number is needed only when a signature changes, so that the
old and the new function can live side by side during a rolling deploy."""

PREFIX = "selfology_counters_"

ANSWERS = "user_answers_new"
"""The table whose rows are counted."""

XID = "xid"
"""The answers' column holding the id of the transaction that wrote the row (bigint of
``pg_current_xact_id()``): deferred mode's log order."""

PENDING = "pending"
"""On Citus, deferred mode's marker instead of the xid order: true on an answer written in
deferred mode and not folded yet (the column's default, which a switch of mode sets).
Transaction ids are per node there and a distributed transaction commits on each node at its
own moment, so no horizon can separate folded from pending answers; a flag on the row needs
no order, and a shard moved to another node carries it. The fold clears it shard by shard,
and the update trigger counts an answer whose flag it clears, in that shard's transaction."""

SHARD_KEY = "user_id"
"""On Citus, the column every counted table is distributed by (co-located): an answer, its
session and its user's counter rows live on one shard, so a counter write stays on it."""

MODE_TABLE = "counter_mode"
"""One row: the counter mode and its horizon. Stored counters hold exactly the answers whose
``xid`` is below the horizon; the answers at or above it are pending (on Citus: the answers
whose ``PENDING`` flag is set; the horizon stays at the top there)."""

IMMEDIATE, DEFERRED = "immediate", "deferred"
MODES = (IMMEDIATE, DEFERRED)
HORIZON_IMMEDIATE = 2**63 - 1
"""The horizon in immediate mode: above every xid, so nothing is ever pending."""

COUNTING_MARK = "selfology_counters.counting"
"""The transaction-local setting (``on``) by which our own counter writes outside a trigger
(repair, the fold, a switch of mode, the original's repair functions) tell the keep triggers
that the write is ours. It is honoured only for a session whose login role may act as the
tables' owner, so the application role cannot forge it."""

COUNTER_WRITES_SETTING = "selfology_counters.counter_writes"
"""Any other write to a counter column is undone and counted (the default); set to
``refuse`` (``ALTER ROLE ... SET``, or for the database) it fails instead."""


def _ident(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


@dataclass(frozen=True)
class Counter:
    """``table.column`` holds, for each ``key``, the number of answers whose ``source`` equals
    it. ``touched`` is the row's last-update timestamp column. ``created_by_answers``: the
    first answer of a key creates its row (user_stats); otherwise the row is someone else's
    to create, and only kept up to date while it exists."""

    short: str
    table: str
    column: str
    key: str
    source: str
    touched: str | None
    created_by_answers: bool
    checked_as: str  # how `check` names the rows it checked (its JSON "checked" keys)
    reader: str  # the SQL function that returns the exact value in either mode

    def __post_init__(self) -> None:
        for name in (self.short, self.table, self.column, self.key, self.source):
            _ident(name)
        if self.touched is not None:
            _ident(self.touched)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"

    @property
    def overridden_sequence(self) -> str:
        """The sequence that counts writes to the column that were not ours (undone)."""
        return f"{PREFIX}overridden_{self.short}"

    @property
    def overridden_on_node(self) -> str:
        """On Citus, the view of how many writes this node's shards undid (the sequence has
        a copy on every node; check adds the nodes up)."""
        return f"{self.overridden_sequence}_on_node"


SESSIONS = Counter(
    short="sessions",
    table="onboarding_sessions",
    column="questions_answered",
    key="id",
    source="session_id",
    touched=None,  # a session row has no last-update timestamp
    created_by_answers=False,
    checked_as="sessions",
    reader="answers_of_session",
)
USER_STATS = Counter(
    short="user_stats",
    table="user_stats",
    column="total_answers_lifetime",
    key="user_id",
    source="user_id",
    touched="updated_at",
    created_by_answers=True,
    checked_as="users",
    reader="answers_of_user",
)
PERSONALITY = Counter(
    short="personality",
    table="digital_personality",
    column="total_answers_analyzed",
    key="user_id",
    source="user_id",
    touched="last_updated",
    created_by_answers=False,
    checked_as="personalities",
    reader="answers_analyzed_of_user",
)

COUNTERS = (SESSIONS, USER_STATS, PERSONALITY)
"""In lock order."""

COUNTED_TABLES = (ANSWERS, *(counter.table for counter in COUNTERS))


@dataclass(frozen=True)
class DbObject:
    """A versioned function, trigger or view that the package installs.

    ``block`` names its definition in ``sql/objects.sql`` (a named block rendered from this
    model); ``table`` is the table a trigger is on; ``signature`` a function's argument types.
    A ``public`` object keeps its short name (the bot calls it); the others carry the prefix
    and the version. ``modes``: the counter modes in which a trigger is enabled;
    ``distributed_modes``: the same on Citus, where it differs.
    """

    kind: str  # function | trigger | view
    short: str
    table: str | None = None
    signature: str = ""
    public: bool = False
    modes: tuple[str, ...] = MODES
    distributed_modes: tuple[str, ...] | None = None

    def enabled_in(self, mode: str, *, distributed: bool = False) -> bool:
        """Whether it is enabled in counter mode ``mode`` (on Citus: ``distributed``)."""
        if distributed and self.distributed_modes is not None:
            return mode in self.distributed_modes
        return mode in self.modes

    @property
    def name(self) -> str:
        if self.kind == "view" or self.public:
            return self.short
        return f"{PREFIX}{self.short}_v{VERSION}"

    @property
    def block(self) -> str:
        return f"{self.kind}_{self.short}"

    @property
    def label(self) -> str:
        """How reports name it: ``table.trigger`` for a trigger, its name otherwise."""
        return f"{self.table}.{self.name}" if self.table else self.name


def _function(short: str, signature: str = "") -> DbObject:
    return DbObject("function", short, signature=signature)


def _trigger(
    short: str,
    table: str,
    modes: tuple[str, ...] = MODES,
    distributed_modes: tuple[str, ...] | None = None,
) -> DbObject:
    return DbObject("trigger", short, table=table, modes=modes, distributed_modes=distributed_modes)


FUNCTIONS = (
    _function("apply", "bigint[], integer[], bigint[], integer[]"),
    _function("on_insert"),
    _function("on_delete"),
    _function("on_update"),
    _function("on_truncate"),
    _function("fill_answer"),
    _function("init_personality"),
    _function("freeze_session_id"),
    _function("guard_user_stats"),
    *(_function(f"keep_{c.short}") for c in COUNTERS),
    _function("fold"),
    _function("set_mode", "text"),
    *(DbObject("function", c.reader, signature="bigint", public=True) for c in COUNTERS),
    # The original's repair functions (its migration 008), which the bot's cron script calls:
    # the same names, signatures and columns, over the one truth.
    DbObject("function", "recalculate_answer_count", signature="integer", public=True),
    DbObject("function", "validate_all_answer_counters", public=True),
    DbObject("function", "auto_fix_critical_drift", public=True),
)
TRIGGERS = (
    _trigger("fill_insert", ANSWERS),
    _trigger("fill_update", ANSWERS),
    # Deferred mode's whole write path is this trigger being off: an INSERT does no counter
    # work, and the fold counts the rows later.
    # On Citus it stays on in deferred mode too, where it counts only an answer inserted
    # with pending = false (the pending column's default marks every other): set_mode.
    _trigger("insert", ANSWERS, modes=(IMMEDIATE,), distributed_modes=MODES),
    _trigger("delete", ANSWERS),
    _trigger("update", ANSWERS),
    _trigger("truncate", ANSWERS),
    _trigger("init_personality", PERSONALITY.table),
    _trigger("freeze_session_id", SESSIONS.table),
    _trigger("guard_user_stats", USER_STATS.table),
    # A write to a counter column that is not ours (the bot's own "+ 1") keeps the stored value.
    *(_trigger(f"keep_{c.short}", c.table) for c in COUNTERS),
)
VIEWS = (
    DbObject("view", "counter_consistency_check"),
    DbObject("view", "answer_counter_health"),  # the original's (migration 008), same columns
)

OBJECTS = (*FUNCTIONS, *TRIGGERS, *VIEWS)
"""In install order: functions before the triggers that call them."""

FUNCTION = {f.short: f for f in FUNCTIONS}
TRIGGER = {t.short: t for t in TRIGGERS}
VIEW = {v.short: v for v in VIEWS}
