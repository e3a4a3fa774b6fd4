"""The production database as the bot's own history built it (tests/sql/bot_history.sql: its
DAO's tables, then its revisions 001-008, whose 007 and 008 triggers both count), adopted,
then written by the bot's unchanged statements (tests/bot.py) before, during and after
``migrate``, in both modes and as the application role: every counter equals COUNT(*)."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from selfology_counters import deferred, health, lifecycle, model, roles
from selfology_counters.lifecycle import adopt
from tests import bot
from tests.test_roles import as_role, fresh_roles  # noqa: F401 (a fixture)

HISTORY = (Path(__file__).parent / "sql" / "bot_history.sql").read_text()
# The oracle, on the original layout too (the answers have no user_id before adoption): each
# counter against COUNT(*) of its answers, the user found through the session.
WRONG = """
WITH per_user AS (
    SELECT s.user_id, count(*) AS n FROM selfology.user_answers_new a
      JOIN selfology.onboarding_sessions s ON s.id = a.session_id GROUP BY s.user_id)
SELECT 'onboarding_sessions.questions_answered' AS counter, s.id AS key
  FROM selfology.onboarding_sessions s
 WHERE s.questions_answered IS DISTINCT FROM
       (SELECT count(*) FROM selfology.user_answers_new a WHERE a.session_id = s.id)
UNION ALL
SELECT 'user_stats.total_answers_lifetime', u.user_id
  FROM (SELECT user_id FROM selfology.user_stats UNION SELECT user_id FROM per_user) u
  LEFT JOIN selfology.user_stats us ON us.user_id = u.user_id
  LEFT JOIN per_user p ON p.user_id = u.user_id
 WHERE us.total_answers_lifetime IS DISTINCT FROM COALESCE(p.n, 0)
UNION ALL
SELECT 'digital_personality.total_answers_analyzed', dp.user_id
  FROM selfology.digital_personality dp LEFT JOIN per_user p ON p.user_id = dp.user_id
 WHERE dp.total_answers_analyzed IS DISTINCT FROM COALESCE(p.n, 0)
"""
COUNTER_NAMES = {c.name for c in model.COUNTERS}


async def wrong(conn: asyncpg.Connection) -> dict[str, int]:
    """Per counter, how many rows differ from COUNT(*)."""
    found: dict[str, int] = {}
    for row in await conn.fetch(WRONG):
        found[row["counter"]] = found.get(row["counter"], 0) + 1
    return found


async def cron_columns(conn: asyncpg.Connection) -> dict[str, list[tuple[str, str]]]:
    """The columns (name, type) each query of the bot's cron script answers with."""
    shapes = {}
    for flag, sql in {
        **bot.CRON,
        "recalculate": "SELECT selfology.recalculate_answer_count(1)",
    }.items():
        statement = await conn.prepare(sql)
        shapes[flag] = [(a.name, a.type.name) for a in statement.get_attributes()]
    return shapes


@pytest.fixture
async def history(empty_db: str) -> AsyncIterator[str]:
    connection = await asyncpg.connect(empty_db)
    try:
        await connection.execute(HISTORY)
    finally:
        await connection.close()
    yield empty_db


async def bot_traffic(dsn: str, seed: int, users: range) -> None:
    """The bot's day, as its code runs it: sessions started, answers saved and analysed, its
    reads, personalities created and updated; 20 answers of one user at once; then answers
    and sessions deleted and answers moved (within a user and to another user)."""
    rng = random.Random(seed)
    conn = await bot.connect(dsn)
    try:
        await conn.fetch("SELECT json_id FROM questions_metadata LIMIT 5")
        sessions = {user: await bot.start_session(conn, user) for user in users}
        for user in users:
            for q in range(rng.randint(1, 4)):
                answer = await bot.save_user_answer(conn, sessions[user], f"q{q}")
                await bot.analyse(conn, answer)
                await bot.update_personality(conn, user)
            assert (await bot.get_active_session(conn, user))["id"] == sessions[user]
            await bot.get_user_total_answers(conn, user)
        hot = users[0]
        writers = [await bot.connect(dsn) for _ in range(20)]
        try:
            await asyncio.gather(
                *(bot.save_user_answer(w, sessions[hot], f"hot{i}") for i, w in enumerate(writers))
            )
            await asyncio.gather(*(bot.update_personality(w, hot) for w in writers[:5]))
        finally:
            await asyncio.gather(*(w.close() for w in writers))
        later = await bot.start_session(conn, hot)  # the hot user's second session
        await bot.save_user_answer(conn, later, "again")
        answers = [r["id"] for r in await conn.fetch("SELECT id FROM user_answers_new ORDER BY id")]
        for answer in rng.sample(answers, 5):
            await conn.execute("DELETE FROM user_answers_new WHERE id = $1", answer)
        await conn.execute(  # a move within the hot user, and one to another user's session
            "UPDATE user_answers_new SET session_id = $2 WHERE id IN"
            " (SELECT id FROM user_answers_new WHERE session_id = $1 LIMIT 2)",
            sessions[hot],
            later,
        )
        await conn.execute(
            "UPDATE user_answers_new SET session_id = $2 WHERE id ="
            " (SELECT max(id) FROM user_answers_new WHERE session_id = $1)",
            later,
            sessions[users[1]],
        )
        await conn.execute("DELETE FROM onboarding_sessions WHERE id = $1", sessions[users[2]])
    finally:
        await conn.close()


async def settle_counters(conn: asyncpg.Connection, mode: str) -> None:
    """In deferred mode the stored counters catch up when the worker folds: fold once."""
    if mode == model.DEFERRED:
        await deferred.fold_once(conn)


async def migrate_while_the_bot_writes(dsn: str) -> lifecycle.Outcome:
    stop = asyncio.Event()
    saved = 0

    async def keep_writing() -> None:
        nonlocal saved
        conn = await bot.connect(dsn)
        try:
            session = await bot.start_session(conn, 901)
            while not stop.is_set():
                await bot.save_user_answer(conn, session, f"m{saved}")
                saved += 1
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    writer = asyncio.create_task(keep_writing())
    try:
        outcome = await lifecycle.apply(dsn)
    finally:
        stop.set()
        await writer  # a failed bot statement fails the test here
    assert saved > 0
    return outcome


@pytest.mark.parametrize("mode", model.MODES)
async def test_the_bots_history_adopted_and_its_unchanged_code_keep_every_counter_exact(
    history: str, mode: str
) -> None:
    admin = await asyncpg.connect(history)
    try:
        before = await wrong(admin)
        assert set(before) == COUNTER_NAMES, before  # the production drift, every counter
        shapes = await cron_columns(admin)
        await bot_traffic(history, seed=1, users=range(801, 806))  # before: still drifting
        assert (await wrong(admin)).keys() == COUNTER_NAMES

        outcome = await migrate_while_the_bot_writes(history)
        assert outcome.adoption is not None and outcome.adoption.original_triggers
        assert await wrong(admin) == {}
        found = await health.check(admin)
        assert found.consistent, (found.issues[:3], found.problems)
        assert found.foreign_triggers == []
        assert await cron_columns(admin) == shapes  # the cron script reads the same columns

        await deferred.set_mode(admin, mode)
        await bot_traffic(history, seed=2, users=range(1, 8))  # the bot's users of the fixture
        await bot_traffic(history, seed=3, users=range(811, 816))
        await settle_counters(admin, mode)
        assert await wrong(admin) == {}
        found = await health.check(admin)
        assert found.consistent, (found.issues[:3], found.problems)
        assert found.audit is not None
        undone = {o.counter: o.writes for o in found.audit.overridden}
        assert undone[model.SESSIONS.name] > 0 and undone[model.PERSONALITY.name] > 0
        assert any("remove that statement" in note for note in found.notes)
        assert any("onboarding_sessions.total_answers_lifetime" in n for n in found.notes)

        # The cron script: nothing to fix, the same columns, the exact counts.
        assert {r["health_status"] for r in await admin.fetch(bot.CRON["check"])} == {"SYNCED"}
        assert await admin.fetch(bot.CRON["validate_all"]) == []
        assert await admin.fetch(bot.CRON["fix_critical"]) == []
        assert (await admin.fetchrow(bot.CRON["monitor"]))["critical"] == 0
        truth = await admin.fetchval(
            "SELECT count(*) FROM selfology.user_answers_new WHERE user_id = 1"
        )
        assert await bot.recalculate(admin, 1) == truth
    finally:
        await admin.close()


async def test_the_cron_scripts_repairs_fix_drift_like_repair(history: str) -> None:
    admin = await asyncpg.connect(history)
    try:
        await lifecycle.apply(history)
        # Drift made past the keep triggers (as a restore would), on users 1..3.
        await admin.execute(
            "SET session_replication_role = replica;"
            "UPDATE selfology.user_stats SET total_answers_lifetime = total_answers_lifetime + 5"
            " WHERE user_id IN (1, 2);"
            "UPDATE selfology.onboarding_sessions SET questions_answered = 0 WHERE user_id = 3;"
            "SET session_replication_role = origin;"
        )
        critical = await admin.fetch(bot.CRON["fix_critical"])
        assert sorted((r["user_id"], r["old_count"] - r["new_count"]) for r in critical) == [
            (1, 5),
            (2, 5),
        ]
        validated = await admin.fetch(bot.CRON["validate_all"])
        assert [(r["user_id"], r["drift"], r["corrected"]) for r in validated] == [(3, 0, True)]
        assert await wrong(admin) == {}
        assert (await health.check(admin)).consistent
    finally:
        await admin.close()


@pytest.mark.parametrize("mode", model.MODES)
async def test_the_bot_runs_unchanged_as_the_application_role(
    fresh_roles: roles.RoleNames,  # noqa: F811 (the fixture imported above)
    history: str,
    mode: str,
) -> None:
    # fresh_roles first: its roles are dropped after this test's database (they hold grants).
    password = secrets.token_urlsafe(16)
    admin = await asyncpg.connect(history)
    try:
        await lifecycle.apply(history)
        await roles.apply(admin, fresh_roles, dict.fromkeys(fresh_roles.all, password))
        await deferred.set_mode(admin, mode)
        app = as_role(history, fresh_roles.app, password)
        await bot_traffic(app, seed=4, users=range(1, 6))  # every statement of it succeeds
        conn = await bot.connect(app)
        try:
            await conn.execute(
                "INSERT INTO event_outbox (event_type, payload, status, retry_count)"
                " VALUES ('answer.saved', '{}', 'pending', 0)"
            )
            assert await conn.fetch(bot.CRON["validate_all"]) == []
            assert (await conn.fetchrow(bot.CRON["monitor"]))["critical"] == 0
            assert await bot.recalculate(conn, 2) >= 0
            # The application role cannot make a counter wrong, even with the repairs' mark.
            await conn.execute("SET selfology_counters.counting = on")
            await conn.execute("UPDATE onboarding_sessions SET questions_answered = 999")
        finally:
            await conn.close()
        readonly = await bot.connect(as_role(history, fresh_roles.readonly, password))
        try:
            await readonly.fetch(bot.CRON["check"])
            await readonly.fetch("SELECT * FROM answer_analysis LIMIT 1")
        finally:
            await readonly.close()
        await settle_counters(admin, mode)
        assert await wrong(admin) == {}
        assert (await health.check(admin)).consistent
        assert (await roles.check(admin, fresh_roles)).differences == []
    finally:
        await admin.close()


ORIGINAL_008_TRIGGER = """
CREATE FUNCTION selfology.sync_answer_counter() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE selfology.user_stats SET total_answers_lifetime = total_answers_lifetime + 1
     WHERE user_id = (SELECT user_id FROM selfology.onboarding_sessions WHERE id = NEW.session_id);
    RETURN NEW;
END;
$$;
CREATE TRIGGER sync_answer_counter_insert AFTER INSERT ON selfology.user_answers_new
    FOR EACH ROW EXECUTE FUNCTION selfology.sync_answer_counter();
COMMENT ON TRIGGER sync_answer_counter_insert ON selfology.user_answers_new
    IS 'selfology-counters: acknowledged';
"""


async def test_check_fails_while_an_original_trigger_remains_and_migrate_removes_it(
    history: str,
) -> None:
    plan = await adopt.plan(history)
    listed = " ".join(plan.original_triggers)
    for name in (
        "update_all_answer_counters_trigger",
        "sync_answer_counter_insert",
        "sync_answer_counter_delete",
        "sync_answer_counter_update",
    ):
        assert name in listed
    assert any("recalculate_answer_count(integer)" in s for s in plan.plan_sql)
    admin = await asyncpg.connect(history)
    try:
        await lifecycle.apply(history)
        await admin.execute(ORIGINAL_008_TRIGGER)  # back, as if 008 ran again, "acknowledged"
        found = await health.check(admin)
        assert not found.consistent
        assert any("double count, never harmless" in p for p in found.problems)
        assert not any("acknowledge" in p for p in found.problems)
        outcome = await lifecycle.apply(history)
        assert any("sync_answer_counter_insert" in r for r in outcome.reinstalled)
        assert (await health.check(admin)).consistent
    finally:
        await admin.close()


async def test_a_strict_setting_refuses_the_applications_counter_writes(
    conn: asyncpg.Connection,
) -> None:
    session = await conn.fetchval(
        "INSERT INTO selfology.onboarding_sessions (user_id) VALUES (5) RETURNING id"
    )
    await conn.execute(f"SET {model.COUNTER_WRITES_SETTING} = 'refuse'")
    await conn.execute(
        "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
        " VALUES ($1, 'q', 'a')",
        session,
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="may not write it"):
        await conn.execute(
            "UPDATE selfology.onboarding_sessions SET questions_answered = questions_answered + 1"
            " WHERE id = $1",
            session,
        )
    assert (
        await conn.fetchval(
            "SELECT questions_answered FROM selfology.onboarding_sessions WHERE id = $1", session
        )
        == 1
    )
    await conn.execute(f"RESET {model.COUNTER_WRITES_SETTING}")
    await conn.execute(
        "UPDATE selfology.onboarding_sessions SET questions_answered = 7 WHERE id = $1", session
    )
    found = await health.check(conn)
    assert found.consistent
    assert found.audit is not None
    assert {o.counter: o.writes for o in found.audit.overridden}[model.SESSIONS.name] == 1


async def test_the_dao_replaces_the_bots_counter_statements_on_its_own_tables(history: str) -> None:
    # docs/ADOPTING.md's mapping: the bot's save_user_answer and create_personality through
    # our DAO, on the bot's tables (integer ids, ten JSONB layers with their defaults).
    from selfology_counters import OnboardingDAO

    await lifecycle.apply(history)
    async with await OnboardingDAO.connect(history) as dao:
        conn = await bot.connect(history)
        try:
            session = await bot.start_session(conn, 901)  # the bot's own, kept as it is
            await dao.save_answer(session, "q_1", "a")
            await dao.save_answers(session, [("q_2", "b"), ("q_3", "c")])
            assert await dao.get_session_answer_count(session) == 3
            assert await dao.create_personality(901) is True
            assert await dao.get_personality_count(901) == 3
            layers = await conn.fetchrow(
                "SELECT identity, personality_version FROM digital_personality WHERE user_id = 901"
            )
            assert layers["identity"] == "{}" and layers["personality_version"] == "1.0"
            await bot.update_personality(conn, 901)  # its read + 1: undone
            assert await dao.get_personality_count(901) == 3
            assert await wrong(conn) == {}
        finally:
            await conn.close()
