"""What adversarial SQL found (issue 12, items 2-7): answers no counter rule can place, a
disabled foreign key, harmless and harmful foreign triggers, the replica role, a deleted
user_stats row, and a view left reading a replaced answers table."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from selfology_counters import health, lifecycle, model
from tests.rows import new_session
from tests.truth import assert_exact, write_counters_by_hand

INSERT = (
    "INSERT INTO selfology.user_answers_new (session_id, user_id, question_json_id, raw_answer)"
    " VALUES ($1, $2, 'q', 'a')"
)


async def test_answers_of_another_user_or_no_session_are_reported_and_check_agrees_with_repair(
    conn: asyncpg.Connection,
) -> None:
    session = await new_session(conn, 1)
    await conn.execute(
        "ALTER TABLE selfology.user_answers_new DROP CONSTRAINT user_answers_new_session_fk"
    )
    await conn.execute(INSERT, session, 2)  # the session's user is 1
    await conn.execute(INSERT, 999, 3)  # no such session
    await write_counters_by_hand(
        conn,
        "UPDATE selfology.onboarding_sessions SET questions_answered = 5 WHERE id = $1",
        session,
    )
    found = await health.check(conn)
    assert found.integrity == {"answers_without_session": 1, "answers_with_another_user": 1}
    assert [(i.counter, i.key, i.stored, i.actual) for i in found.issues] == [
        (model.SESSIONS.name, session, 5, 1)  # counted by session alone, like repair
    ]
    await health.repair(conn)
    after = await health.check(conn)
    assert after.counters_consistent and not after.consistent  # the two answers remain
    assert (await health.check(conn, user_id=2)).integrity["answers_with_another_user"] == 1


async def test_a_disabled_foreign_key_is_a_problem_and_repair_says_it_enabled_it(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("ALTER TABLE selfology.user_answers_new DISABLE TRIGGER ALL")
    found = await health.check(conn)
    assert any("foreign key user_answers_new_session_fk" in p for p in found.problems)
    assert not found.consistent
    repaired = await health.repair(conn)
    assert any("foreign key user_answers_new_session_fk" in e for e in repaired.triggers_enabled)
    assert (await health.check(conn)).consistent
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await conn.execute(INSERT, 12345, 1)


async def test_only_triggers_that_can_change_the_counts_are_reported(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute(
        """
        CREATE FUNCTION selfology.stamp_completed() RETURNS trigger LANGUAGE plpgsql AS
            'BEGIN NEW.completed_at := now(); RETURN NEW; END';
        CREATE TRIGGER stamp_completed BEFORE UPDATE OF status ON selfology.onboarding_sessions
            FOR EACH ROW EXECUTE FUNCTION selfology.stamp_completed();
        """
    )
    assert (await health.check(conn)).consistent  # harmless: writes no counter
    await conn.execute(
        """
        CREATE FUNCTION selfology.audit_answers() RETURNS trigger LANGUAGE plpgsql AS
            'BEGIN RETURN NULL; END';
        CREATE TRIGGER audit_answers AFTER INSERT ON selfology.user_answers_new
            FOR EACH STATEMENT EXECUTE FUNCTION selfology.audit_answers();
        """
    )
    found = await health.check(conn)
    assert found.foreign_triggers == ["user_answers_new.audit_answers"]
    await conn.execute(
        "COMMENT ON TRIGGER audit_answers ON selfology.user_answers_new"
        " IS 'selfology-counters: acknowledged'"
    )
    assert (await health.check(conn)).consistent


async def test_replica_role_for_the_database_is_reported_and_enable_always_keeps_counting(
    db: str, conn: asyncpg.Connection
) -> None:
    database = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'ALTER DATABASE "{database}" SET session_replication_role = replica')
    found = await health.check(conn)
    assert any(f"database {database}" in p for p in found.problems) and not found.consistent
    await conn.execute(f'ALTER DATABASE "{database}" RESET session_replication_role')

    # On a subscriber: our triggers ENABLE ALWAYS count what the apply worker writes.
    for trigger in model.TRIGGERS:
        await conn.execute(
            f"ALTER TABLE selfology.{trigger.table} ENABLE ALWAYS TRIGGER {trigger.name}"
        )
    session = await new_session(conn, 4)
    await conn.execute("SET session_replication_role = replica")
    await conn.execute(INSERT, session, 4)
    await conn.execute("RESET session_replication_role")
    await assert_exact(conn)
    assert (await health.check(conn)).consistent


async def test_replica_role_set_for_a_role_is_reported(conn: asyncpg.Connection) -> None:
    role = f"selfology_replica_{uuid.uuid4().hex[:12]}"  # generated, never input
    await conn.execute(f'CREATE ROLE "{role}"')
    try:
        await conn.execute(f'ALTER ROLE "{role}" SET session_replication_role = replica')
        found = await health.check(conn)
        assert any(f"role {role}" in p for p in found.problems) and not found.consistent
    finally:
        await conn.execute(f'DROP ROLE "{role}"')
    assert (await health.check(conn)).consistent


async def test_a_user_stats_row_with_answers_left_cannot_be_deleted(
    conn: asyncpg.Connection,
) -> None:
    session = await new_session(conn, 6)
    await conn.execute(INSERT, session, 6)
    with pytest.raises(asyncpg.RestrictViolationError, match="answers that still exist"):
        await conn.execute("DELETE FROM selfology.user_stats WHERE user_id = 6")
    await conn.execute("DELETE FROM selfology.onboarding_sessions WHERE id = $1", session)
    await conn.execute("DELETE FROM selfology.user_stats WHERE user_id = 6")  # none left: fine
    await assert_exact(conn)


async def test_a_replaced_answers_table_is_seen_and_migrate_rebinds_everything(
    db: str, conn: asyncpg.Connection
) -> None:
    session = await new_session(conn, 8)
    await conn.execute(INSERT, session, 8)
    await conn.execute(
        """
        ALTER TABLE selfology.user_answers_new RENAME TO user_answers_old;
        CREATE TABLE selfology.user_answers_new
            (LIKE selfology.user_answers_old INCLUDING ALL);
        INSERT INTO selfology.user_answers_new SELECT * FROM selfology.user_answers_old;
        SELECT setval(pg_get_serial_sequence('selfology.user_answers_new', 'id'),
                      (SELECT max(id) FROM selfology.user_answers_new));
        INSERT INTO selfology.user_answers_new
               (session_id, user_id, question_json_id, raw_answer, answer_length)
        VALUES ($$1$$::text::bigint, 8, 'q2', 'b', 1);
        """.replace("$$1$$", str(session))
    )
    found = await health.check(conn)
    states = {o.name: o.state.value for o in found.objects if not o.healthy}
    assert states[model.VIEW["counter_consistency_check"].name] == "outdated"
    assert states[model.TRIGGER["insert"].name] == "missing"
    outcome = await lifecycle.apply(db)
    assert model.VIEW["counter_consistency_check"].name in outcome.reinstalled
    assert (await health.check(conn)).consistent
    await conn.execute(INSERT, session, 8)
    await assert_exact(conn)
