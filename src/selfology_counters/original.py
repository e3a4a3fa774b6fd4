"""What the original Selfology system installed to count answers, recognised where it is found.

The original bot counted with row triggers of its own Alembic history: migration 003's
``update_lifetime_answers_trigger`` (the user's total copied into every session row), 004's
``update_user_stats_trigger``, 007's ``update_all_answer_counters_trigger`` and 008's three
``sync_answer_counter_*`` triggers, which 008 added without dropping 007's (so from 008 on
every answer counted twice in ``user_stats``). Besides these names, any trigger whose function
writes a counter column is recognised by what it does (``sql/adopt.sql``). Adoption removes
them (lifecycle/adopt.py). When one is found on a database that already has our
triggers (left over, or migration 007 applied again by hand), every answer it sees is counted
twice: once by it and once by ours. ``check`` and ``stats`` name it with this module's facts
and print the statements that remove it (``sql/original.sql``); the adoption's catalog query
(``sql/adopt.sql``, ``original_triggers``) takes its names from here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from selfology_counters.model import IDENTIFIER
from selfology_counters.sqlfiles import SCHEMA, query


@dataclass(frozen=True)
class OriginalTrigger:
    """A counter trigger of the original system: its name, table, function, the original
    migration that created it, and the counters it increments (by one per inserted row)."""

    name: str
    table: str
    function: str
    migration: str
    counts: str
    on: str = "new answer"  # what it counts a second time next to ours

    def __post_init__(self) -> None:
        for identifier in (self.name, self.table, self.function):
            if not IDENTIFIER.match(identifier):
                raise ValueError(f"not a plain identifier: {identifier!r}")

    def removal_sql(self, schema: str = SCHEMA) -> str:
        """The statements that remove it and its function (``sql/original.sql``)."""
        return query("original.sql", f"remove_{self.name}", schema)


TRIGGERS = (
    OriginalTrigger(
        name="update_lifetime_answers_trigger",
        table="user_answers_new",
        function="update_lifetime_answer_count",
        migration="003",
        counts="onboarding_sessions.total_answers_lifetime",
    ),
    OriginalTrigger(
        name="update_all_answer_counters_trigger",
        table="user_answers_new",
        function="update_all_answer_counters",
        migration="007",
        counts="all three counters",
    ),
    OriginalTrigger(
        name="update_user_stats_trigger",
        table="user_answers_new",
        function="update_user_stats_on_answer",
        migration="004",
        counts="user_stats.total_answers_lifetime",
    ),
    *(
        OriginalTrigger(
            name=f"sync_answer_counter_{operation}",
            table="user_answers_new",
            function="sync_answer_counter",
            migration="008",
            counts="user_stats.total_answers_lifetime",
            on=what,
        )
        for operation, what in (
            ("insert", "new answer"),
            ("delete", "deleted answer"),
            ("update", "answer moved to another session"),
        )
    ),
)

PUBLIC_ORIGINALS = (
    "FUNCTION recalculate_answer_count(integer)",
    "FUNCTION validate_all_answer_counters()",
    "FUNCTION auto_fix_critical_drift()",
    "VIEW answer_counter_health",
)
"""Migration 008's repair functions and view, which the bot's cron script calls: adoption
drops the original bodies (their columns may differ in type) and ours, of the same names and
columns, are installed over the one truth (model.py, ``public`` objects)."""

LEGACY_FUNCTIONS = ("update_session_answer_count", "increment_questions_answered")
"""Functions of migration 003 (deprecated in the original): adoption removes any trigger that
calls them, whatever its name."""

_BY_LABEL = {f"{t.table}.{t.name}": t for t in TRIGGERS}


def recognise(foreign_triggers: list[str]) -> list[OriginalTrigger]:
    """The original's counter triggers among ``foreign_triggers`` ("table.trigger", as the
    audit of objects.py reports the triggers on counted tables that are not ours)."""
    return [_BY_LABEL[label] for label in foreign_triggers if label in _BY_LABEL]


def describe(trigger: OriginalTrigger) -> str:
    """One line that says what it is and what it does next to ours."""
    return (
        f"{trigger.table}.{trigger.name} is the ORIGINAL Selfology counter trigger (its "
        f"migration {trigger.migration}): next to ours it counts every {trigger.on} a second "
        f"time in {trigger.counts}"
    )


def as_dicts(foreign_triggers: list[str], schema: str = SCHEMA) -> list[dict[str, str]]:
    """The recognised original triggers, for ``--json``."""
    return [
        {
            "trigger": f"{t.table}.{t.name}",
            "function": t.function,
            "migration": t.migration,
            "counts": t.counts,
            "remove_with": t.removal_sql(schema),
        }
        for t in recognise(foreign_triggers)
    ]


async def installed(connection: asyncpg.Connection, schema: str = SCHEMA) -> list[str]:
    """Every trigger of the original system on ``schema``'s tables ("table.trigger"), by name
    or by the function it calls; the same catalog query adoption removes them by."""
    rows = await connection.fetch(query("adopt.sql", "original_triggers"), schema)
    return [f"{r['table_name']}.{r['trigger_name']}" for r in rows]
