"""Each counter equals COUNT(*) after every kind of committed write, through plain SQL (the
bot's own statements), not only through the DAO."""

from __future__ import annotations

import asyncpg
import pytest

from tests.rows import new_session
from tests.truth import assert_exact, counters, write_counters_by_hand

BOT_INSERT = (
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer) "
    "VALUES ($1, $2, $3) RETURNING id"
)
BOT_INSERT_WITH_LENGTH = (
    "INSERT INTO selfology.user_answers_new "
    "(session_id, question_json_id, raw_answer, answer_length) VALUES ($1, $2, $3, $4) RETURNING id"
)


async def insert_many(conn: asyncpg.Connection, session_id: int, n: int) -> None:
    await conn.execute(
        "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer) "
        "SELECT $1, 'q' || g, 'answer ' || g FROM generate_series(1, $2) g",
        session_id,
        n,
    )


async def test_bot_insert_without_user_id_and_length_is_counted(conn: asyncpg.Connection) -> None:
    s = await new_session(conn, 7)
    answer_id = await conn.fetchval(BOT_INSERT, s, "q1", "héllo")
    row = await conn.fetchrow(
        "SELECT user_id, answer_length FROM selfology.user_answers_new WHERE id = $1", answer_id
    )
    assert (row["user_id"], row["answer_length"]) == (7, 5)
    assert await counters(conn, s, 7) == (1, 1, None)
    await conn.fetchval(BOT_INSERT_WITH_LENGTH, s, "q2", "abc", 3)
    assert await counters(conn, s, 7) == (2, 2, None)
    await assert_exact(conn)


async def test_bot_insert_into_unknown_session_fails_cleanly(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="session 999 does not exist"):
        await conn.fetchval(BOT_INSERT, 999, "q1", "x")
    assert await conn.fetchval("SELECT count(*) FROM selfology.user_answers_new") == 0


async def test_multi_row_insert_and_copy(conn: asyncpg.Connection) -> None:
    s1, s2 = await new_session(conn, 1), await new_session(conn, 2)
    await insert_many(conn, s1, 500)
    await conn.execute(
        "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer) "
        "VALUES ($1, 'a', 'x'), ($2, 'b', 'y'), ($2, 'c', 'z')",
        s1,
        s2,
    )
    await conn.copy_records_to_table(
        "user_answers_new",
        schema_name="selfology",
        columns=["session_id", "user_id", "question_json_id", "raw_answer", "answer_length"],
        records=[(s2, 2, f"c{i}", "copied", 6) for i in range(50)],
    )
    assert await counters(conn, s1, 1) == (501, 501, None)
    assert await counters(conn, s2, 2) == (52, 52, None)
    await assert_exact(conn)


async def test_deletes_of_one_many_and_a_whole_session(conn: asyncpg.Connection) -> None:
    s1, s2, s3 = [await new_session(conn, u) for u in (1, 1, 2)]
    for s in (s1, s2, s3):
        await insert_many(conn, s, 10)
    one = await conn.fetchval(
        "SELECT min(id) FROM selfology.user_answers_new WHERE session_id = $1", s1
    )
    await conn.execute("DELETE FROM selfology.user_answers_new WHERE id = $1", one)
    assert await counters(conn, s1, 1) == (9, 19, None)
    await conn.execute(
        "DELETE FROM selfology.user_answers_new"
        " WHERE session_id IN ($1, $2) AND question_json_id < 'q5'",
        s2,
        s3,
    )
    await assert_exact(conn)
    await conn.execute("DELETE FROM selfology.onboarding_sessions WHERE id = $1", s1)
    assert await counters(conn, s2, 1) == (5, 5, None)  # q1, q10, q2..q4 deleted
    await assert_exact(conn)


async def test_user_stats_row_stays_at_zero_after_last_answer(conn: asyncpg.Connection) -> None:
    s = await new_session(conn, 5)
    await insert_many(conn, s, 3)
    await conn.execute("DELETE FROM selfology.user_answers_new")
    assert await counters(conn, s, 5) == (0, 0, None)
    assert await conn.fetchval("SELECT count(*) FROM selfology.user_stats WHERE user_id = 5") == 1


async def test_move_to_another_session_of_same_and_other_user(conn: asyncpg.Connection) -> None:
    a1, a2, b1 = await new_session(conn, 1), await new_session(conn, 1), await new_session(conn, 2)
    await insert_many(conn, a1, 10)
    await conn.execute(
        "UPDATE selfology.user_answers_new SET session_id = $1"
        " WHERE question_json_id IN ('q1', 'q2')",
        a2,
    )
    assert await counters(conn, a1, 1) == (8, 10, None)
    assert (await counters(conn, a2, 1))[0] == 2
    # To another user's session: user_id follows the session.
    await conn.execute(
        "UPDATE selfology.user_answers_new SET session_id = $1 WHERE session_id = $2", b1, a2
    )
    assert await counters(conn, b1, 2) == (2, 2, None)
    assert await counters(conn, a1, 1) == (8, 8, None)
    await assert_exact(conn)


async def test_session_moved_to_another_user_moves_its_answers(conn: asyncpg.Connection) -> None:
    s = await new_session(conn, 1)
    await insert_many(conn, s, 4)
    await conn.execute("UPDATE selfology.onboarding_sessions SET user_id = 2 WHERE id = $1", s)
    assert await counters(conn, s, 2) == (4, 4, None)
    assert (await counters(conn, s, 1))[1] == 0
    await assert_exact(conn)


async def test_update_that_moves_nothing_takes_no_counter_lock(
    db: str, conn: asyncpg.Connection
) -> None:
    s = await new_session(conn, 1)
    await insert_many(conn, s, 3)
    other = await asyncpg.connect(db)
    try:
        async with conn.transaction():
            await conn.execute("UPDATE selfology.user_answers_new SET raw_answer = 'edited'")
            # The counter rows are not locked: another transaction can lock them at once.
            async with other.transaction():
                await other.execute("SET LOCAL lock_timeout = '1s'")
                await other.execute(
                    "SELECT 1 FROM selfology.onboarding_sessions WHERE id = $1 FOR UPDATE NOWAIT", s
                )
                await other.execute(
                    "SELECT 1 FROM selfology.user_stats WHERE user_id = 1 FOR UPDATE NOWAIT"
                )
    finally:
        await other.close()
    length = await conn.fetchval("SELECT DISTINCT answer_length FROM selfology.user_answers_new")
    assert length == len("edited")
    await assert_exact(conn)


async def test_truncate_sets_counters_to_zero(conn: asyncpg.Connection) -> None:
    s = await new_session(conn, 1)
    await insert_many(conn, s, 5)
    await conn.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (1)")
    await conn.execute("TRUNCATE selfology.user_answers_new")
    assert await counters(conn, s, 1) == (0, 0, 0)
    await assert_exact(conn)


async def test_late_digital_personality_row_starts_at_true_count(conn: asyncpg.Connection) -> None:
    s = await new_session(conn, 3)
    await insert_many(conn, s, 6)
    await conn.execute(
        "INSERT INTO selfology.digital_personality (user_id, total_answers_analyzed) VALUES (3, 99)"
    )
    assert await counters(conn, s, 3) == (6, 6, 6)
    await insert_many(conn, s, 2)
    assert await counters(conn, s, 3) == (8, 8, 8)
    # A personality row for a user with no answers yet starts at zero and then follows.
    await conn.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (4)")
    s4 = await new_session(conn, 4)
    await insert_many(conn, s4, 1)
    assert await counters(conn, s4, 4) == (1, 1, 1)
    await assert_exact(conn)


async def test_counters_cannot_go_negative(conn: asyncpg.Connection) -> None:
    s = await new_session(conn, 1)
    with pytest.raises(asyncpg.CheckViolationError):
        await write_counters_by_hand(
            conn,
            "UPDATE selfology.onboarding_sessions SET questions_answered = -1 WHERE id = $1",
            s,
        )


async def test_session_id_cannot_change(conn: asyncpg.Connection) -> None:
    s = await new_session(conn, 1)
    with pytest.raises(asyncpg.RestrictViolationError, match="cannot change"):
        await conn.execute(
            "UPDATE selfology.onboarding_sessions SET id = id + 100 WHERE id = $1", s
        )


async def test_rolled_back_writes_leave_counters_untouched(conn: asyncpg.Connection) -> None:
    s = await new_session(conn, 1)
    await insert_many(conn, s, 2)
    tx = conn.transaction()
    await tx.start()
    await insert_many(conn, s, 5)
    await tx.rollback()
    assert await counters(conn, s, 1) == (2, 2, None)


async def test_one_statement_into_one_session_naming_two_users_counts_each_user(
    conn: asyncpg.Connection,
) -> None:
    # Only possible without the composite foreign key (dropped, deferred or NOT ENFORCED):
    # the single-session fast path must still credit each row to its own user.
    await conn.execute(
        "ALTER TABLE selfology.user_answers_new DROP CONSTRAINT user_answers_new_session_fk"
    )
    session = await new_session(conn, 1)
    await conn.execute(
        "INSERT INTO selfology.user_answers_new"
        " (session_id, user_id, question_json_id, raw_answer, answer_length)"
        " VALUES ($1, 1, 'q1', 'a', 1), ($1, 2, 'q2', 'b', 1)",
        session,
    )
    totals = await conn.fetch(
        "SELECT user_id, total_answers_lifetime FROM selfology.user_stats ORDER BY user_id"
    )
    assert [tuple(r) for r in totals] == [(1, 1), (2, 1)]
    assert await counters(conn, session, 1) == (2, 1, None)
