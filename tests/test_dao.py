"""OnboardingDAO: the API, and bad input that raises a typed error and writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from selfology_counters import (
    DatabaseUnavailableError,
    InvalidAnswerError,
    InvalidIdError,
    InvalidInputError,
    InvalidQuestionIdError,
    OnboardingDAO,
    SchemaMissingError,
    SessionNotActiveError,
    UnknownAnswerError,
    UnknownSessionError,
)
from selfology_counters.errors import InvalidDsnError
from tests.truth import assert_exact

SNAPSHOT = """
SELECT (SELECT count(*) FROM selfology.user_answers_new) AS answers,
       (SELECT count(*) FROM selfology.onboarding_sessions) AS sessions,
       (SELECT coalesce(sum(questions_answered), 0) FROM selfology.onboarding_sessions) AS qa,
       (SELECT count(*) FROM selfology.user_stats) AS stats_rows,
       (SELECT coalesce(sum(total_answers_lifetime), 0) FROM selfology.user_stats) AS lifetime
"""


@pytest.fixture
async def pool(db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
def dao(pool: asyncpg.Pool) -> OnboardingDAO:
    return OnboardingDAO(pool, max_answer_length=50)


async def test_record_and_read(dao: OnboardingDAO, pool: asyncpg.Pool) -> None:
    session = await dao.start_session(11)
    first = await dao.save_answer(session, "q_1", "first")
    ids = await dao.save_answers(session, [("q_2", "second"), ("q_3", "third")])
    assert len(ids) == 2 and first < ids[0] < ids[1]
    answers = await dao.get_session_answers(session)
    assert [a.raw_answer for a in answers] == ["first", "second", "third"]
    assert [a.id for a in answers] == [first, *ids]
    assert await dao.get_user_total_answers(11) == 3
    assert await dao.get_personality_count(11) is None
    await pool.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (11)")
    assert await dao.get_personality_count(11) == 3
    await dao.delete_answer(first)
    assert await dao.get_user_total_answers(11) == 2
    assert await dao.get_personality_count(11) == 2
    assert await dao.get_user_total_answers(12) == 0
    assert await dao.save_answers(session, []) == []
    async with pool.acquire() as connection:
        await assert_exact(connection)


async def test_connect_owns_its_pool_but_not_a_given_one(db: str, pool: asyncpg.Pool) -> None:
    async with await OnboardingDAO.connect(db) as own:
        await own.start_session(1)
    assert own._pool.is_closing()  # the DAO closed the pool it opened (asyncpg public API)
    await OnboardingDAO(pool).close()
    assert await pool.fetchval("SELECT 1") == 1  # a pool passed in stays open


async def test_unreachable_database_is_a_typed_error(db: str) -> None:
    with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
        await OnboardingDAO.connect(db.rsplit("/", 1)[0] + "/no_such_database_here")


async def test_a_database_without_our_schema_is_a_typed_error(empty_db: str) -> None:
    async with await OnboardingDAO.connect(empty_db) as dao:
        with pytest.raises(SchemaMissingError, match="migrate"):
            await dao.start_session(1)
        with pytest.raises(SchemaMissingError):
            await dao.get_user_total_answers(1)


async def test_bad_settings_are_typed_errors_before_anything_opens(pool: asyncpg.Pool) -> None:
    for settings in (
        {"max_retries": -1},
        {"max_answer_length": 0},
        {"schema": "Bad Name"},
        {"metrics": "yes"},
        {"max_retries": "3"},
    ):
        with pytest.raises(InvalidInputError):
            OnboardingDAO(pool, **settings)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="pool_size"):
        await OnboardingDAO.connect("postgresql://nobody@127.0.0.1:1/x", pool_size=2**70)
    with pytest.raises(InvalidDsnError):
        await OnboardingDAO.connect("")


async def test_completed_session_refuses_answers(dao: OnboardingDAO, pool: asyncpg.Pool) -> None:
    session = await dao.start_session(3)
    await dao.save_answer(session, "q", "before")
    await dao.complete_session(session)
    before = await pool.fetchrow(SNAPSHOT)
    with pytest.raises(SessionNotActiveError, match="completed"):
        await dao.save_answer(session, "q", "after")
    with pytest.raises(SessionNotActiveError):
        await dao.save_answers(session, [("q", "after")])
    assert await pool.fetchrow(SNAPSHOT) == before


async def _session(dao: OnboardingDAO) -> int:
    session = await dao.start_session(5)
    await dao.save_answer(session, "q0", "seed")
    return session


BAD_SAVE_ANSWER = [
    ((999_999, "q", "x"), UnknownSessionError),
    ((0, "q", "x"), InvalidIdError),
    ((-3, "q", "x"), InvalidIdError),
    ((2**63, "q", "x"), InvalidIdError),
    (("1", "q", "x"), InvalidIdError),
    ((True, "q", "x"), InvalidIdError),
    ((None, "q", "answer"), InvalidIdError),
    (("SESSION", "", "x"), InvalidQuestionIdError),
    (("SESSION", "   ", "x"), InvalidQuestionIdError),
    (("SESSION", "q" * 256, "x"), InvalidQuestionIdError),
    (("SESSION", "q\x00", "x"), InvalidQuestionIdError),
    (("SESSION", 42, "x"), InvalidQuestionIdError),
    (("SESSION", "q", ""), InvalidAnswerError),
    (("SESSION", "q", " \n\t"), InvalidAnswerError),
    (("SESSION", "q", "x" * 51), InvalidAnswerError),
    (("SESSION", "q", "nul\x00byte"), InvalidAnswerError),
    (("SESSION", "q", b"bytes"), InvalidAnswerError),
    (("SESSION", "q", None), InvalidAnswerError),
]


@pytest.mark.parametrize(("args", "error"), BAD_SAVE_ANSWER)
async def test_bad_save_answer_writes_nothing(
    dao: OnboardingDAO, pool: asyncpg.Pool, args: tuple, error: type[Exception]
) -> None:
    session = await _session(dao)
    args = tuple(session if a == "SESSION" else a for a in args)
    before = await pool.fetchrow(SNAPSHOT)
    with pytest.raises(error):
        await dao.save_answer(*args)
    assert await pool.fetchrow(SNAPSHOT) == before


BAD_BATCHES = [
    [("q1", "fine"), ("q2", "")],
    [("q1", "fine"), ("", "text")],
    [("q1", "fine"), ("q2", "x" * 51)],
    [("q1", "fine"), ("q2",)],
    [("q1", "fine"), "q2"],
    "not a list",
]


@pytest.mark.parametrize("batch", BAD_BATCHES)
async def test_bad_batch_writes_nothing(
    dao: OnboardingDAO, pool: asyncpg.Pool, batch: object
) -> None:
    session = await _session(dao)
    before = await pool.fetchrow(SNAPSHOT)
    with pytest.raises((InvalidAnswerError, InvalidQuestionIdError)):
        await dao.save_answers(session, batch)  # type: ignore[arg-type]
    assert await pool.fetchrow(SNAPSHOT) == before


async def test_unknown_ids_on_delete_complete_and_read(dao: OnboardingDAO) -> None:
    with pytest.raises(UnknownAnswerError):
        await dao.delete_answer(123_456)
    with pytest.raises(UnknownSessionError):
        await dao.complete_session(123_456)
    with pytest.raises(UnknownSessionError):
        await dao.get_session_answers(123_456)
    with pytest.raises(UnknownSessionError):
        await dao.save_answers(123_456, [("q", "x")])
    with pytest.raises(InvalidIdError):
        await dao.start_session(0)


async def test_deadlocks_are_retried_then_reported(dao: OnboardingDAO) -> None:
    from selfology_counters import RetriesExhaustedError

    attempts = 0

    async def always_deadlocks(_connection: asyncpg.Connection) -> None:
        nonlocal attempts
        attempts += 1
        raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")

    dao.max_retries = 3
    with pytest.raises(RetriesExhaustedError, match="4 attempts"):
        await dao._write(always_deadlocks)
    assert attempts == 4


def insert_count(registry: CollectorRegistry, operation: str) -> float:
    name = "answer_insert_duration_seconds_count"
    return registry.get_sample_value(name, {"operation": operation}) or 0.0


async def test_the_insert_histogram_is_off_unless_asked_for(dao: OnboardingDAO) -> None:
    # Off, an insert goes straight to the retrying write: no clock read, no histogram.
    assert dao._insert_one == dao._write
    assert dao._insert_many == dao._write


async def test_the_insert_histogram_times_every_insert_of_every_dao_on_a_registry(
    pool: asyncpg.Pool,
) -> None:
    registry = CollectorRegistry()
    dao = OnboardingDAO(pool, metrics=registry)
    other = OnboardingDAO(pool, metrics=registry)  # a second DAO shares the histogram
    session = await dao.start_session(1)
    await dao.save_answer(session, "q1", "a")
    await other.save_answer(session, "q2", "b")
    await dao.save_answers(session, [("q3", "c"), ("q4", "d")])
    with pytest.raises(InvalidAnswerError):  # refused before any write: not timed
        await dao.save_answer(session, "q5", "")
    with pytest.raises(SessionNotActiveError):  # written and refused by the database: timed
        await dao.complete_session(session)
        await dao.save_answer(session, "q6", "e")
    assert (insert_count(registry, "save_answer"), insert_count(registry, "save_answers")) == (3, 1)
    everything = {"operation": "save_answer", "le": "+Inf"}
    assert registry.get_sample_value("answer_insert_duration_seconds_bucket", everything) == 3


async def test_metrics_true_records_in_the_default_registry(pool: asyncpg.Pool) -> None:
    before = insert_count(REGISTRY, "save_answer")
    dao = OnboardingDAO(pool, metrics=True)
    await dao.save_answer(await dao.start_session(1), "q", "a")
    assert insert_count(REGISTRY, "save_answer") == before + 1


@pytest.mark.parametrize("mode", ["immediate", "deferred"])
async def test_a_sessions_exact_answer_count(
    dao: OnboardingDAO, conn: asyncpg.Connection, mode: str
) -> None:
    from selfology_counters import deferred

    session = await dao.start_session(21)
    other = await dao.start_session(21)
    await dao.save_answers(session, [("q_1", "a"), ("q_2", "b")])
    await deferred.set_mode(conn, mode)
    await dao.save_answer(session, "q_3", "c")  # in deferred mode: pending, not folded
    await dao.save_answer(other, "q_1", "d")
    assert await dao.get_session_answer_count(session) == 3
    assert await dao.get_session_answer_count(other) == 1
    stored = await conn.fetchval(
        "SELECT questions_answered FROM selfology.onboarding_sessions WHERE id = $1", session
    )
    assert stored == (3 if mode == "immediate" else 2)  # the stored column lags; the read not
    with pytest.raises(UnknownSessionError):
        await dao.get_session_answer_count(session + 1000)
    with pytest.raises(InvalidIdError):
        await dao.get_session_answer_count(0)


@pytest.mark.parametrize("mode", ["immediate", "deferred"])
async def test_create_personality_starts_at_the_true_count(
    dao: OnboardingDAO, conn: asyncpg.Connection, mode: str
) -> None:
    from selfology_counters import deferred

    session = await dao.start_session(22)
    await dao.save_answers(session, [("q_1", "a"), ("q_2", "b")])
    await deferred.set_mode(conn, mode)
    await dao.save_answer(session, "q_3", "c")
    assert await dao.get_personality_count(22) is None
    assert await dao.create_personality(22) is True
    assert await dao.get_personality_count(22) == 3
    assert await dao.create_personality(22) is False  # there already: left as it is
    await dao.save_answer(session, "q_4", "d")
    assert await dao.get_personality_count(22) == 4
    assert await dao.create_personality(23) is True  # a user with no answers yet
    assert await dao.get_personality_count(23) == 0
    if mode == "deferred":
        await deferred.set_mode(conn, "immediate")  # folds what is pending
    await assert_exact(conn)
    with pytest.raises(InvalidIdError):
        await dao.create_personality(-1)
