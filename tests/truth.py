"""The test oracle: every counter next to COUNT(*) of the answers, computed independently of
the package's own check code."""

from __future__ import annotations

import asyncpg

MISMATCHES = """
SELECT 'onboarding_sessions.questions_answered' AS counter, s.id AS key,
       s.questions_answered AS stored,
       (SELECT count(*) FROM selfology.user_answers_new a WHERE a.session_id = s.id) AS actual
  FROM selfology.onboarding_sessions s
UNION ALL
SELECT 'user_stats.total_answers_lifetime', u.user_id, us.total_answers_lifetime,
       (SELECT count(*) FROM selfology.user_answers_new a WHERE a.user_id = u.user_id)
  FROM (SELECT user_id FROM selfology.user_stats
        UNION SELECT user_id FROM selfology.user_answers_new) u
  LEFT JOIN selfology.user_stats us ON us.user_id = u.user_id
UNION ALL
SELECT 'digital_personality.total_answers_analyzed', dp.user_id, dp.total_answers_analyzed,
       (SELECT count(*) FROM selfology.user_answers_new a WHERE a.user_id = dp.user_id)
  FROM selfology.digital_personality dp
"""


async def mismatches(connection: asyncpg.Connection) -> list[tuple[str, int, int | None, int]]:
    """Every counter that differs from the truth (a missing user_stats row counts as one)."""
    rows = await connection.fetch(MISMATCHES)
    return [
        (r["counter"], r["key"], r["stored"], r["actual"])
        for r in rows
        if r["stored"] != r["actual"]
    ]


async def assert_exact(connection: asyncpg.Connection) -> None:
    wrong = await mismatches(connection)
    assert wrong == [], f"counters differ from COUNT(*): {wrong[:10]}"


async def counters(connection: asyncpg.Connection, session_id: int, user_id: int) -> tuple:
    """(questions_answered, total_answers_lifetime, total_answers_analyzed) of one session/user."""
    return tuple(
        await connection.fetchrow(
            """SELECT (SELECT questions_answered FROM selfology.onboarding_sessions WHERE id = $1),
                      (SELECT total_answers_lifetime FROM selfology.user_stats WHERE user_id = $2),
                      (SELECT total_answers_analyzed FROM selfology.digital_personality
                        WHERE user_id = $2)""",
            session_id,
            user_id,
        )
    )


# The exact reads (stored + pending, the package's SQL functions) next to COUNT(*), in one
# statement: in deferred mode the stored columns lag, these must not.
READ_MISMATCHES = """
SELECT 'session' AS counter, s.id AS key, selfology.answers_of_session(s.id) AS read,
       (SELECT count(*) FROM selfology.user_answers_new a WHERE a.session_id = s.id) AS actual
  FROM selfology.onboarding_sessions s
UNION ALL
SELECT 'user', u.user_id, selfology.answers_of_user(u.user_id),
       (SELECT count(*) FROM selfology.user_answers_new a WHERE a.user_id = u.user_id)
  FROM (SELECT user_id FROM selfology.user_stats
        UNION SELECT user_id FROM selfology.user_answers_new) u
UNION ALL
SELECT 'personality', dp.user_id, selfology.answers_analyzed_of_user(dp.user_id),
       (SELECT count(*) FROM selfology.user_answers_new a WHERE a.user_id = dp.user_id)
  FROM selfology.digital_personality dp
"""


async def assert_exact_reads(connection: asyncpg.Connection) -> None:
    rows = await connection.fetch(READ_MISMATCHES)
    wrong = [tuple(r) for r in rows if r["read"] != r["actual"]]
    assert wrong == [], f"exact reads differ from COUNT(*): {wrong[:10]}"


async def write_counters_by_hand(connection: asyncpg.Connection, sql: str, *args: object) -> None:
    """Drift made on purpose: ``sql`` writes counter columns in a transaction marked as the
    owner's own counter work (as repair marks its writes), which the keep triggers let through.
    Unmarked, such a write is undone: that is what the bot's own ``+ 1`` gets."""
    async with connection.transaction():
        await connection.execute("SELECT set_config('selfology_counters.counting', 'on', true)")
        await connection.execute(sql, *args)
