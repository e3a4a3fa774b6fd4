"""Random sequences of writes (Hypothesis): after every step, every counter equals COUNT(*)."""

from __future__ import annotations

import asyncio

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.truth import assert_exact, assert_exact_reads

USERS = st.integers(min_value=1, max_value=4)
INDEX = st.integers(min_value=0, max_value=50)

OPERATIONS = st.one_of(
    st.tuples(st.just("new_session"), USERS),
    st.tuples(st.just("insert"), INDEX, st.integers(min_value=1, max_value=5)),
    st.tuples(st.just("insert_across_sessions"), INDEX, INDEX),
    st.tuples(st.just("delete_answer"), INDEX),
    st.tuples(st.just("delete_session_answers"), INDEX),
    st.tuples(st.just("move_answer"), INDEX, INDEX),
    st.tuples(st.just("move_session_answers"), INDEX, INDEX),
    st.tuples(st.just("delete_session"), INDEX),
    st.tuples(st.just("session_to_user"), INDEX, USERS),
    st.tuples(st.just("personality"), USERS),
    st.tuples(st.just("truncate")),
)
# Deferred mode: the same writes, plus folds and switches of mode in between.
DEFERRED_OPERATIONS = st.one_of(
    OPERATIONS,
    st.tuples(st.just("fold")),
    st.tuples(st.just("mode"), st.sampled_from(["immediate", "deferred"])),
)
FOLD = "SELECT * FROM selfology.selfology_counters_fold_v1()"
SET_MODE = "SELECT selfology.selfology_counters_set_mode_v1($1)"

RESET = (
    "TRUNCATE selfology.user_answers_new, selfology.onboarding_sessions, selfology.user_stats,"
    " selfology.digital_personality RESTART IDENTITY"
)
# Every example starts from a few sessions with answers, so that short sequences already
# delete, move and cascade real rows.
SEED = (
    "INSERT INTO selfology.onboarding_sessions (user_id) VALUES (1), (1), (2), (3);"
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
    " SELECT s, 'seed' || g, 'a' FROM generate_series(1, 4) s, generate_series(1, 2) g;"
)


async def pick(connection: asyncpg.Connection, table: str, index: int) -> int | None:
    ids = await connection.fetch(f"SELECT id FROM selfology.{table} ORDER BY id")
    return ids[index % len(ids)]["id"] if ids else None


async def apply(connection: asyncpg.Connection, operation: tuple) -> None:
    kind, *args = operation
    if kind == "fold":
        await connection.fetch(FOLD)
        return
    if kind == "mode":
        await connection.execute(SET_MODE, args[0])
        return
    if kind == "new_session":
        await connection.execute(
            "INSERT INTO selfology.onboarding_sessions (user_id) VALUES ($1)", args[0]
        )
        return
    if kind == "personality":
        await connection.execute(
            "INSERT INTO selfology.digital_personality (user_id) VALUES ($1)"
            " ON CONFLICT (user_id) DO NOTHING",
            args[0],
        )
        return
    if kind == "truncate":
        await connection.execute("TRUNCATE selfology.user_answers_new")
        return
    session = await pick(connection, "onboarding_sessions", args[0])
    answer = await pick(connection, "user_answers_new", args[0])
    other = await pick(connection, "onboarding_sessions", args[-1])
    if session is None:
        return
    statements = {
        "insert": (
            "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
            " SELECT $1, 'q' || g, 'a' FROM generate_series(1, $2) g",
            session,
            args[-1],
        ),
        "insert_across_sessions": (
            "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
            " VALUES ($1, 'x', 'a'), ($2, 'y', 'b'), ($1, 'z', 'c')",
            session,
            other,
        ),
        "delete_answer": ("DELETE FROM selfology.user_answers_new WHERE id = $1", answer),
        "delete_session_answers": (
            "DELETE FROM selfology.user_answers_new WHERE session_id = $1",
            session,
        ),
        "move_answer": (
            "UPDATE selfology.user_answers_new SET session_id = $2 WHERE id = $1",
            answer,
            other,
        ),
        "move_session_answers": (
            "UPDATE selfology.user_answers_new SET session_id = $2 WHERE session_id = $1",
            session,
            other,
        ),
        "delete_session": ("DELETE FROM selfology.onboarding_sessions WHERE id = $1", session),
        "session_to_user": (
            "UPDATE selfology.onboarding_sessions SET user_id = $2 WHERE id = $1",
            session,
            args[-1],
        ),
    }
    await connection.execute(*statements[kind])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=25))
def test_counters_exact_after_every_step(db: str, operations: list[tuple]) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(db)
        try:
            await connection.execute(RESET)
            await connection.execute(SEED)
            await assert_exact(connection)
            for operation in operations:
                await apply(connection, operation)
                await assert_exact(connection)
        finally:
            await connection.close()

    asyncio.run(run())


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(operations=st.lists(DEFERRED_OPERATIONS, min_size=1, max_size=25))
def test_deferred_reads_exact_after_every_step(db: str, operations: list[tuple]) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(db)
        try:
            await connection.execute(SET_MODE, "immediate")
            await connection.execute(RESET)
            await connection.execute(SEED)
            await connection.execute(SET_MODE, "deferred")
            await assert_exact_reads(connection)
            for operation in operations:
                await apply(connection, operation)
                await assert_exact_reads(connection)
            await connection.fetch(FOLD)
            await connection.execute(SET_MODE, "immediate")  # folds what is left
            await assert_exact(connection)
        finally:
            await connection.close()

    asyncio.run(run())
