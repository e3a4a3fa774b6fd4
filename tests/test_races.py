"""Interleavings forced with explicit transactions: each test holds a lock in one connection,
waits until the other connection is really blocked on it, then lets go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from selfology_counters import OnboardingDAO, SessionNotActiveError, health
from tests.truth import assert_exact
from tests.waiting import wait_until_blocked

BOT_INSERT = (
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
    " VALUES ($1, 'q', 'x') RETURNING id"
)


@pytest.fixture
async def conns(db: str) -> AsyncIterator[list[asyncpg.Connection]]:
    connections = [await asyncpg.connect(db) for _ in range(3)]
    yield connections
    for connection in connections:
        await connection.close()


async def test_repair_sees_writes_made_while_a_trigger_was_disabled(
    conns: list[asyncpg.Connection],
) -> None:
    writer, repairer, observer = conns
    await writer.execute("INSERT INTO selfology.onboarding_sessions (id, user_id) VALUES (1, 10)")
    await writer.fetchval(BOT_INSERT, 1)
    await writer.execute(
        "ALTER TABLE selfology.user_answers_new DISABLE TRIGGER selfology_counters_insert_v1"
    )
    async with writer.transaction():
        await writer.fetchval(BOT_INSERT, 1)  # not counted: the trigger is off
        repair = asyncio.create_task(health.repair(repairer))
        await wait_until_blocked(observer, repairer)  # ENABLE TRIGGER waits for the writer
    result = await repair
    assert result.triggers_enabled == ["user_answers_new.selfology_counters_insert_v1"]
    assert {(c.counter, c.after) for c in result.changes} == {
        ("onboarding_sessions.questions_answered", 2),
        ("user_stats.total_answers_lifetime", 2),
    }
    await assert_exact(observer)


async def test_bot_insert_while_its_session_moves_to_another_user(
    conns: list[asyncpg.Connection],
) -> None:
    mover, bot, observer = conns
    await mover.execute("INSERT INTO selfology.onboarding_sessions (id, user_id) VALUES (1, 7)")
    async with mover.transaction():
        await mover.execute("UPDATE selfology.onboarding_sessions SET user_id = 8 WHERE id = 1")
        insert = asyncio.create_task(bot.fetchval(BOT_INSERT, 1))
        await wait_until_blocked(observer, bot)
    await insert  # no foreign key error: the answer went to the session's new user
    assert await observer.fetchval("SELECT user_id FROM selfology.user_answers_new") == 8
    await assert_exact(observer)


async def test_dao_refuses_an_answer_to_a_session_completed_meanwhile(
    db: str, conns: list[asyncpg.Connection]
) -> None:
    completer, _unused, observer = conns
    pool = await asyncpg.create_pool(db, min_size=1, max_size=1)  # the DAO's one connection
    try:
        async with pool.acquire() as connection:
            dao_pid = connection.get_server_pid()
        dao = OnboardingDAO(pool)
        session = await dao.start_session(5)
        async with completer.transaction():
            await completer.execute(
                "UPDATE selfology.onboarding_sessions SET status = 'completed' WHERE id = $1",
                session,
            )
            saving = asyncio.create_task(dao.save_answer(session, "q", "late"))
            await wait_until_blocked(observer, dao_pid)  # the race really happens
        with pytest.raises(SessionNotActiveError):
            await saving
    finally:
        await pool.close()
    assert await observer.fetchval("SELECT count(*) FROM selfology.user_answers_new") == 0


async def test_truncate_refuses_repeatable_read(conns: list[asyncpg.Connection]) -> None:
    truncater, writer, observer = conns
    async with truncater.transaction(isolation="repeatable_read"):
        await truncater.fetchval("SELECT count(*) FROM selfology.onboarding_sessions")
        await writer.execute(
            "INSERT INTO selfology.onboarding_sessions (id, user_id) VALUES (1, 10)"
        )
        await writer.fetchval(BOT_INSERT, 1)
        with pytest.raises(asyncpg.FeatureNotSupportedError, match="READ COMMITTED"):
            await truncater.execute("TRUNCATE selfology.user_answers_new")
    await truncater.execute("TRUNCATE selfology.user_answers_new")
    await assert_exact(observer)
