"""check finds every kind of drift, repair fixes exactly that (also while writers run)."""

from __future__ import annotations

import random

import asyncpg

from selfology_counters import OnboardingDAO, health, lifecycle
from tests.events import WritersInAThread
from tests.truth import assert_exact, mismatches, write_counters_by_hand


async def populate(conn: asyncpg.Connection, users: int = 6, answers: int = 4) -> None:
    await conn.execute(
        "INSERT INTO selfology.onboarding_sessions (user_id)"
        " SELECT u FROM generate_series(1, $1) u",
        users,
    )
    await conn.execute(
        "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
        " SELECT s.id, 'q' || g, 'a'"
        " FROM selfology.onboarding_sessions s, generate_series(1, $1) g",
        answers,
    )
    await conn.execute(
        "INSERT INTO selfology.digital_personality (user_id)"
        " SELECT u FROM generate_series(1, $1) u",
        users,
    )


async def inject_every_drift(conn: asyncpg.Connection) -> None:
    await write_counters_by_hand(
        conn,
        """
        UPDATE selfology.onboarding_sessions SET questions_answered = 40 WHERE user_id = 1;
        UPDATE selfology.user_stats SET total_answers_lifetime = 1 WHERE user_id = 2;
        SET session_replication_role = replica;  -- past the guard, as a restore would
        DELETE FROM selfology.user_stats WHERE user_id = 3;
        SET session_replication_role = origin;
        UPDATE selfology.digital_personality SET total_answers_analyzed = 9 WHERE user_id = 4;
        ALTER TABLE selfology.user_stats DROP CONSTRAINT user_stats_total_answers_lifetime_check;
        UPDATE selfology.user_stats SET total_answers_lifetime = -2 WHERE user_id = 5;
        -- A user whose answers are all gone but whose counter says otherwise (trigger off).
        ALTER TABLE selfology.user_answers_new DISABLE TRIGGER selfology_counters_delete_v1;
        DELETE FROM selfology.user_answers_new WHERE user_id = 6;
        """,
    )


async def test_clean_database_is_consistent(conn: asyncpg.Connection) -> None:
    await populate(conn)
    result = await health.check(conn)
    assert result.consistent
    assert result.checked == {"sessions": 6, "users": 6, "personalities": 6}
    assert result.consistency_rate == 1.0


async def test_check_finds_every_kind_of_drift_and_repair_fixes_exactly_that(
    conn: asyncpg.Connection,
) -> None:
    await populate(conn)
    await inject_every_drift(conn)
    found = await health.check(conn)
    assert not found.consistent
    kinds = {(i.counter, i.key): (i.status, i.stored, i.actual) for i in found.issues}
    assert kinds == {
        ("onboarding_sessions.questions_answered", 1): ("INCONSISTENT", 40, 4),
        ("user_stats.total_answers_lifetime", 2): ("INCONSISTENT", 1, 4),
        ("user_stats.total_answers_lifetime", 3): ("MISSING_ROW", None, 4),
        ("digital_personality.total_answers_analyzed", 4): ("INCONSISTENT", 9, 4),
        ("user_stats.total_answers_lifetime", 5): ("NEGATIVE", -2, 4),
        ("onboarding_sessions.questions_answered", 6): ("INCONSISTENT", 4, 0),
        ("user_stats.total_answers_lifetime", 6): ("INCONSISTENT", 4, 0),
        ("digital_personality.total_answers_analyzed", 6): ("INCONSISTENT", 4, 0),
    }
    assert [o.name for o in found.objects if not o.enabled] == ["selfology_counters_delete_v1"]
    # The independent oracle agrees with check on which counters are wrong.
    assert {(m[0], m[1]) for m in await mismatches(conn)} == set(kinds)

    before = await conn.fetch("SELECT * FROM selfology.user_stats ORDER BY user_id")
    dry = await health.repair(conn, dry_run=True, batch_size=2)
    assert {(c.counter, c.key) for c in dry.changes} == set(kinds)
    assert dry.triggers_enabled == ["user_answers_new.selfology_counters_delete_v1"]
    assert await conn.fetch("SELECT * FROM selfology.user_stats ORDER BY user_id") == before
    assert not (await health.check(conn)).consistent

    done = await health.repair(conn, batch_size=2)
    assert [(c.counter, c.key, c.before, c.after) for c in done.changes] == [
        (c.counter, c.key, c.before, c.after) for c in dry.changes
    ]
    assert (await health.check(conn)).consistent
    await assert_exact(conn)
    again = await health.repair(conn)
    assert again.changes == [] and again.triggers_enabled == []


async def test_check_one_user(conn: asyncpg.Connection) -> None:
    await populate(conn)
    await inject_every_drift(conn)
    result = await health.check(conn, user_id=2)
    assert [(i.counter, i.key) for i in result.issues] == [("user_stats.total_answers_lifetime", 2)]
    assert result.checked == {"sessions": 1, "users": 1, "personalities": 1}
    repaired = await health.repair(conn, user_id=2)
    assert [c.key for c in repaired.changes] == [2]
    assert len((await health.check(conn)).issues) == 7  # the others are left alone


async def test_missing_outdated_and_foreign_triggers_are_reported(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        DROP TRIGGER selfology_counters_truncate_v1 ON selfology.user_answers_new;
        COMMENT ON TRIGGER selfology_counters_insert_v1 ON selfology.user_answers_new
            IS 'selfology-counters source=0123456789abcdef definition=0';  -- another release's
        CREATE FUNCTION selfology.update_all_answer_counters() RETURNS trigger
            LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
        CREATE TRIGGER update_all_answer_counters_trigger AFTER INSERT ON selfology.user_answers_new
            FOR EACH ROW EXECUTE FUNCTION selfology.update_all_answer_counters();
        """
    )
    result = await health.check(conn)
    states = {o.name: (o.installed, o.enabled, o.current) for o in result.objects}
    assert states["selfology_counters_truncate_v1"] == (False, False, False)
    assert states["selfology_counters_insert_v1"] == (True, True, False)
    assert result.foreign_triggers == ["user_answers_new.update_all_answer_counters_trigger"]
    assert not result.consistent and result.counters_consistent
    repaired = await health.repair(conn)
    assert len(repaired.unfixable) == 3


async def test_repair_while_writers_insert_delete_and_move(
    db: str, conn: asyncpg.Connection
) -> None:
    await populate(conn, users=30, answers=10)
    await write_counters_by_hand(
        conn,
        "UPDATE selfology.onboarding_sessions SET questions_answered = questions_answered + 7;"
        "UPDATE selfology.user_stats SET total_answers_lifetime = 0 WHERE user_id % 2 = 0;"
        "SET session_replication_role = replica;"  # past the guard, as a restore would
        "DELETE FROM selfology.user_stats WHERE user_id % 5 = 0;"
        "SET session_replication_role = origin;"
        "UPDATE selfology.digital_personality SET total_answers_analyzed = 3;",
    )
    sessions = [r["id"] for r in await conn.fetch("SELECT id FROM selfology.onboarding_sessions")]

    async def write(pool: asyncpg.Pool, rng: random.Random) -> str:
        roll = rng.random()
        if roll < 0.5:
            await OnboardingDAO(pool).save_answers(rng.choice(sessions), [("w", "x"), ("w2", "y")])
            return "insert"
        if roll < 0.8:
            answer = await pool.fetchval(
                "SELECT id FROM selfology.user_answers_new ORDER BY random() LIMIT 1"
            )
            if answer is not None:
                await pool.execute("DELETE FROM selfology.user_answers_new WHERE id = $1", answer)
            return "delete"
        await pool.execute(
            "UPDATE selfology.user_answers_new SET session_id = $1 WHERE id ="
            " (SELECT id FROM selfology.user_answers_new ORDER BY random() LIMIT 1)",
            rng.choice(sessions),
        )
        return "move"

    during: list[int] = []  # writes seen at each batch of the repair

    with WritersInAThread(db, write, writers=6) as writers:
        writers.wait_for(20)  # the writers are writing

        def progress(_n: int) -> None:
            during.append(writers.count())
            if len(during) == 1:  # after the first batch, 20 writes before the next one
                writers.wait_for(during[0] + 20)

        first = await health.repair(conn, batch_size=4, progress=progress)
        writers.wait_for(writers.count() + 20)  # and they go on writing after it
    assert len(during) > 1 and during[-1] - during[0] >= 20
    assert len(first.changes) >= 30
    # Every counter that repair did not touch was right all along: the triggers kept them.
    await assert_exact(conn)
    assert (await health.check(conn)).consistent


async def test_migrate_reinstalls_missing_and_outdated_triggers(
    db: str, conn: asyncpg.Connection
) -> None:
    await populate(conn)
    await conn.execute(
        "DROP TRIGGER selfology_counters_delete_v1 ON selfology.user_answers_new;"
        "COMMENT ON TRIGGER selfology_counters_insert_v1 ON selfology.user_answers_new"
        " IS 'selfology-counters source=0123456789abcdef definition=0';"  # another release's
        "DELETE FROM selfology.user_answers_new WHERE user_id = 1;"  # not counted: no trigger
    )
    assert not (await health.check(conn)).consistent
    outcome = await lifecycle.apply(db)
    assert outcome.reinstalled == [
        "user_answers_new.selfology_counters_insert_v1",
        "user_answers_new.selfology_counters_delete_v1",
    ]
    assert outcome.counters_corrected == 3  # user 1: session, user_stats and digital_personality
    assert (await health.check(conn)).consistent
    again = await lifecycle.apply(db)
    assert (again.reinstalled, again.counters_corrected, again.changed) == ([], 0, False)
