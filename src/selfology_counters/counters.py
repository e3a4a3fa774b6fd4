"""Each counter and each versioned database object, defined once.

The triggers (sql/counters_v1.sql), the consistency view (sql/consistency_view_v1.sql) and
the repair statements (sql/health.sql) are written side by side from these definitions; the
tests compare the catalog with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfology_counters.sqlfiles import digest

COUNTERS_FILE = "counters_v1.sql"


@dataclass(frozen=True)
class Counter:
    """A denormalised count of answers: ``table.column`` keyed by ``key``."""

    table: str
    column: str
    key: str
    repair_prefix: str  # names of its lock/recount statements in sql/health.sql

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


SESSIONS = Counter("onboarding_sessions", "questions_answered", "id", "sessions")
USER_STATS = Counter("user_stats", "total_answers_lifetime", "user_id", "user_stats")
PERSONALITY = Counter(
    "digital_personality", "total_answers_analyzed", "user_id", "digital_personality"
)
# The lock order of the triggers, which repair follows too.
COUNTERS = (SESSIONS, USER_STATS, PERSONALITY)
BY_NAME = {counter.name: counter for counter in COUNTERS}


@dataclass(frozen=True)
class TriggerDef:
    table: str
    name: str


TRIGGERS = tuple(
    TriggerDef(table, f"selfology_counters_{name}_v1")
    for table, name in (
        ("user_answers_new", "fill_insert"),
        ("user_answers_new", "fill_update"),
        ("user_answers_new", "insert"),
        ("user_answers_new", "delete"),
        ("user_answers_new", "update"),
        ("user_answers_new", "truncate"),
        ("digital_personality", "init_personality"),
        ("onboarding_sessions", "freeze_session_id"),
    )
)

FUNCTIONS = (
    "selfology_counters_apply_v1",
    "selfology_counters_on_insert_v1",
    "selfology_counters_on_delete_v1",
    "selfology_counters_on_update_v1",
    "selfology_counters_on_truncate_v1",
    "selfology_counters_fill_answer_v1",
    "selfology_counters_init_personality_v1",
    "selfology_counters_freeze_session_id_v1",
)

COUNTED_TABLES = ("user_answers_new", "onboarding_sessions", "user_stats", "digital_personality")


def expected_stamp() -> str:
    """The comment every current trigger and function carries."""
    return digest(COUNTERS_FILE)
