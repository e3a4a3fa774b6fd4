"""The Selfology bot's own statements, as its public code runs them, for the tests to replay
unchanged against an adopted database: its ``OnboardingDAO`` and ``DigitalPersonalityDAO``
(autocommit statements on a connection whose search_path is ``selfology``) and its cron
script ``scripts/sync_answer_counters.py``. Written from the facts of issue 18; none of the
bot's code is here. Two of these statements write counters themselves (the session's
``+ 1``, the personality's read-modify-write): the point of replaying them."""

from __future__ import annotations

import json

import asyncpg

SERVER_SETTINGS = {"search_path": "selfology"}
LAYERS = (
    "identity",
    "interests",
    "goals",
    "barriers",
    "relationships",
    "values",
    "current_state",
    "skills",
    "experiences",
    "health",
)
TRAITS = json.dumps({"version": "2.0", "big_five": {"openness": 0.5}, "timestamp": "now"})

# The cron script's queries, per flag (--recalculate runs two).
CRON = {
    "check": "SELECT user_id, stored_count, actual_count, drift, health_status, last_sync"
    " FROM selfology.answer_counter_health ORDER BY ABS(drift) DESC LIMIT 20",
    "fix_critical": "SELECT * FROM selfology.auto_fix_critical_drift()",
    "validate_all": "SELECT * FROM selfology.validate_all_answer_counters()",
    "monitor": "SELECT COUNT(*) AS total_users,"
    " COUNT(*) FILTER (WHERE health_status = 'SYNCED') AS synced,"
    " COUNT(*) FILTER (WHERE health_status = 'ACCEPTABLE') AS acceptable,"
    " COUNT(*) FILTER (WHERE health_status = 'CRITICAL') AS critical,"
    " MAX(ABS(drift)) AS max_drift FROM selfology.answer_counter_health",
}


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)


async def start_session(conn: asyncpg.Connection, user_id: int) -> int:
    await conn.execute(
        "UPDATE onboarding_sessions SET status = 'abandoned', completed_at = NOW()"
        " WHERE user_id = $1 AND status = 'active'",
        user_id,
    )
    session: int = await conn.fetchval(
        "INSERT INTO onboarding_sessions (user_id, status) VALUES ($1, 'active') RETURNING id",
        user_id,
    )
    return session


async def save_user_answer(conn: asyncpg.Connection, session_id: int, question: str) -> int:
    text = f"answer to {question}"
    answer: int = await conn.fetchval(
        "INSERT INTO user_answers_new (session_id, question_json_id, raw_answer, answer_length)"
        " VALUES ($1, $2, $3, $4) RETURNING id",
        session_id,
        question,
        text,
        len(text),
    )
    await conn.execute(
        "UPDATE onboarding_sessions SET questions_answered = questions_answered + 1 WHERE id = $1",
        session_id,
    )
    return answer


async def analyse(conn: asyncpg.Connection, answer_id: int) -> None:
    """The analysis pipeline: an answer_analysis row, the answer marked analysed."""
    await conn.execute(
        "INSERT INTO answer_analysis (user_answer_id, trait_scores, ai_model_used)"
        " VALUES ($1, $2, 'test')",
        answer_id,
        TRAITS,
    )
    await conn.execute(
        "UPDATE user_answers_new SET analysis_status = 'analyzed' WHERE id = $1", answer_id
    )


async def get_active_session(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT os.id, os.user_id, os.started_at, os.status, os.questions_asked,"
        " os.questions_answered, os.current_question_json_id, os.session_data,"
        " COALESCE(us.total_answers_lifetime, 0) AS total_answers_lifetime"
        " FROM onboarding_sessions os LEFT JOIN user_stats us ON us.user_id = os.user_id"
        " WHERE os.user_id = $1 AND os.status = 'active' ORDER BY os.started_at DESC LIMIT 1",
        user_id,
    )


async def get_user_total_answers(conn: asyncpg.Connection, user_id: int) -> int:
    total = await conn.fetchval(
        "SELECT COALESCE(total_answers_lifetime, 0) FROM user_stats WHERE user_id = $1", user_id
    )
    return int(total or 0)


async def update_personality(conn: asyncpg.Connection, user_id: int) -> None:
    """Read the row; create it (counter 1) if missing, else write every layer and the
    counter it read plus one."""
    row = await conn.fetchrow(
        f"SELECT id, {', '.join(LAYERS)}, total_answers_analyzed"
        " FROM selfology.digital_personality WHERE user_id = $1",
        user_id,
    )
    layers = [json.dumps({"seen": True}) for _ in LAYERS]
    if row is None:
        values = ", ".join(f"${i}" for i in range(2, len(LAYERS) + 2))
        await conn.execute(
            f"INSERT INTO selfology.digital_personality (user_id, {', '.join(LAYERS)},"
            " total_answers_analyzed, last_updated, personality_version, completeness_score)"
            f" VALUES ($1, {values}, 1, NOW(), '1.0', 0.1) RETURNING id",
            user_id,
            *layers,
        )
        return
    sets = ", ".join(f"{layer} = ${i}" for i, layer in enumerate(LAYERS, start=2))
    n = len(LAYERS) + 2
    await conn.execute(
        f"UPDATE selfology.digital_personality SET {sets}, total_answers_analyzed = ${n},"
        f" last_updated = NOW(), completeness_score = ${n + 1} WHERE user_id = $1",
        user_id,
        *layers,
        row["total_answers_analyzed"] + 1,
        0.5,
    )


async def recalculate(conn: asyncpg.Connection, user_id: int) -> int:
    """The cron script's --recalculate --user-id N."""
    await conn.fetchval(
        "SELECT total_answers_lifetime FROM selfology.user_stats WHERE user_id = $1", user_id
    )
    return int(await conn.fetchval("SELECT selfology.recalculate_answer_count($1)", user_id))
