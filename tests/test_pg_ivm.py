"""pg_ivm, the real alternative, beside ours: its IMMVs stay exact through every change kind,
its writers of different users wait for each other where ours do not, and ``compare``
measures it with the others and leaves the server as it found it.

Runs when ``SELFOLOGY_TEST_PGIVM_DSN`` names a server (a URL to its maintenance database)
where pg_ivm is installed: built from github.com/sraoss/pg_ivm against that server's
PostgreSQL, with ``session_preload_libraries`` (or ``shared_preload_libraries``) =
'pg_ivm'. Skipped otherwise, saying why. Each test gets a database of its own there.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import replace

import asyncpg
import pytest

from selfology_counters.bench.compare import run_compare
from selfology_counters.bench.compare_results import SMOKE
from selfology_counters.bench.scratch import scratch_schema
from selfology_counters.bench.strategies import Ours, PgIvm, Strategy
from tests.conftest import _database
from tests.test_benchmark import leftovers
from tests.waiting import wait_until_blocked

PGIVM_DSN = os.environ.get("SELFOLOGY_TEST_PGIVM_DSN", "")
pytestmark = pytest.mark.skipif(
    not PGIVM_DSN,
    reason="SELFOLOGY_TEST_PGIVM_DSN names no server with pg_ivm (build it from "
    "github.com/sraoss/pg_ivm and preload it; see the module's docstring)",
)

# The oracle, written here apart from the package's SQL: each IMMV against GROUP BY over the
# answers as they are now (a key without answers has no row in either). search_path is the
# strategy's schema.
IMMV_MISMATCHES = """
WITH per_user AS (SELECT user_id AS key, count(*) AS n FROM user_answers_new GROUP BY 1),
per_session AS (SELECT session_id AS key, count(*) AS n FROM user_answers_new GROUP BY 1),
per_personality AS (
    SELECT p.user_id AS key, count(*) AS n
      FROM digital_personality p JOIN user_answers_new a ON a.user_id = p.user_id GROUP BY 1)
SELECT 'per user' AS immv, coalesce(t.key, i.user_id) AS key, i.answers, t.n
  FROM per_user t FULL JOIN answers_per_user i ON i.user_id = t.key
 WHERE i.answers IS DISTINCT FROM t.n
UNION ALL
SELECT 'per session', coalesce(t.key, i.session_id), i.answers, t.n
  FROM per_session t FULL JOIN answers_per_session i ON i.session_id = t.key
 WHERE i.answers IS DISTINCT FROM t.n
UNION ALL
SELECT 'per personality', coalesce(t.key, i.user_id), i.answers, t.n
  FROM per_personality t FULL JOIN answers_per_personality i ON i.user_id = t.key
 WHERE i.answers IS DISTINCT FROM t.n
"""
ANSWERS = "SELECT count(*) FROM user_answers_new"
WAITING_FOR = """
SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
 WHERE l.pid = $1 AND NOT l.granted
"""
HAS_PG_IVM = "SELECT count(*) FROM pg_extension WHERE extname = 'pg_ivm'"


async def _why_not(dsn: str) -> str | None:
    async with PgIvm.available(dsn) as why_not:
        return why_not


@pytest.fixture
def ivm_db() -> Iterator[str]:
    """A new database on the pg_ivm server; the tests are skipped if pg_ivm cannot be had."""
    with _database(PGIVM_DSN, "sc_pgivm") as dsn:
        why_not = asyncio.run(_why_not(dsn))
        if why_not is not None:
            pytest.skip(f"SELFOLOGY_TEST_PGIVM_DSN: {why_not}")
        yield dsn


@pytest.fixture
async def pg_ivm(ivm_db: str) -> AsyncIterator[tuple[PgIvm, asyncpg.Connection]]:
    """The pg_ivm strategy built in a scratch schema, and a connection that sees it."""
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(PgIvm.available(ivm_db))
        strategy = PgIvm(await stack.enter_async_context(scratch_schema(ivm_db, PgIvm.install)))
        connection = await asyncpg.connect(ivm_db)
        stack.push_async_callback(connection.close)
        await connection.execute("SELECT set_config('search_path', $1, false)", strategy.schema)
        yield strategy, connection


async def assert_immvs_exact(connection: asyncpg.Connection, step: str) -> None:
    wrong = [tuple(r) for r in await connection.fetch(IMMV_MISMATCHES)]
    assert wrong == [], f"after {step}: IMMVs differ from COUNT(*): {wrong}"


INSERT = """INSERT INTO user_answers_new (session_id, user_id, question_json_id, raw_answer,
                                       answer_length)
            SELECT $1, $2, 'q' || g, 'a', 1 FROM generate_series(1, $3) g"""
FIRST_OF_SESSION = "(SELECT min(id) FROM user_answers_new WHERE session_id = $1)"


async def test_every_change_kind_keeps_the_immvs_exact(
    pg_ivm: tuple[PgIvm, asyncpg.Connection],
) -> None:
    strategy, c = pg_ivm
    (s1, u1), (s2, u2), (s3, u1_again) = await strategy.setup_users(c, [1, 2, 1])
    assert u1_again == u1
    steps: list[tuple[str, str, tuple[int, ...]]] = [
        ("a single-row insert", INSERT, (s1, u1, 1)),
        ("another", INSERT, (s1, u1, 1)),
        ("a multi-row insert", INSERT, (s2, u2, 7)),
        ("a delete", f"DELETE FROM user_answers_new WHERE id = {FIRST_OF_SESSION}", (s1,)),
        (
            "a move to another session of the user",
            f"UPDATE user_answers_new SET session_id = $2 WHERE id = {FIRST_OF_SESSION}",
            (s1, s3),
        ),
        (
            "a move to another user's session",
            f"UPDATE user_answers_new SET session_id = $2, user_id = $3 WHERE id = "
            f"{FIRST_OF_SESSION}",
            (s2, s1, u1),
        ),
        (
            "a session moved to another user (its answers follow)",
            "UPDATE onboarding_sessions SET user_id = 3 WHERE id = $1",
            (s3,),
        ),
        ("a personality row deleted", "DELETE FROM digital_personality WHERE user_id = $1", (u2,)),
        (
            "a personality row added late",
            "INSERT INTO digital_personality (user_id) VALUES (3)",
            (),
        ),
        (
            "a session deleted (its answers cascade)",
            "DELETE FROM onboarding_sessions WHERE id = $1",
            (s2,),
        ),
        ("TRUNCATE", "TRUNCATE user_answers_new", ()),
        ("an insert after TRUNCATE", INSERT, (s1, u1, 4)),
    ]
    for step, statement, args in steps:
        status = await c.execute(statement, *args)
        assert not status.endswith(" 0"), f"{step} changed nothing: {status}"
        await assert_immvs_exact(c, step)
    await c.copy_records_to_table(
        "user_answers_new",
        records=[(s1, u1, f"c{k}", "a", 1) for k in range(5)],
        columns=["session_id", "user_id", "question_json_id", "raw_answer", "answer_length"],
    )
    await assert_immvs_exact(c, "COPY")
    assert await c.fetchval(ANSWERS) == 9


async def test_writers_of_different_users_wait_for_each_other_with_pg_ivm_only(
    ivm_db: str,
) -> None:
    """Two answers of two users, the first writer's transaction still open: with pg_ivm the
    second waits for the first one's commit, for an ExclusiveLock on an IMMV; with ours it
    finishes at once (its counter rows are the other user's)."""
    async with AsyncExitStack() as stack:
        first, second, observer = [await asyncpg.connect(ivm_db) for _ in range(3)]
        for connection in (first, second, observer):
            stack.push_async_callback(connection.close)
        for cls in (PgIvm, Ours):
            await stack.enter_async_context(cls.available(ivm_db))
            strategy: Strategy = cls(
                await stack.enter_async_context(scratch_schema(ivm_db, cls.install))
            )
            (s1, u1), (s2, u2) = await strategy.setup_users(observer, [1, 2])
            async with first.transaction():
                await strategy.write(first, s1, u1, "q1")
                writing = asyncio.create_task(strategy.write(second, s2, u2, "q2"))
                if cls is PgIvm:
                    await wait_until_blocked(observer, second)
                    waiting = await observer.fetch(WAITING_FOR, second.get_server_pid())
                    assert [(r["relname"], r["mode"]) for r in waiting] == [
                        ("answers_per_user", "ExclusiveLock")
                    ]
                    assert not writing.done()
                else:
                    await asyncio.wait_for(writing, 30)  # done while the first is open
            await writing
            assert await strategy.reflected(observer, [u1, u2]) == 2, cls.key


async def test_compare_measures_pg_ivm_beside_the_others_and_leaves_nothing(
    ivm_db: str,
) -> None:
    connection = await asyncpg.connect(ivm_db)
    try:
        assert await connection.fetchval(HAS_PG_IVM) == 0
        result = await run_compare(ivm_db, replace(SMOKE, writers=8, per_writer=5))
        assert await connection.fetchval(HAS_PG_IVM) == 0  # created for the run, dropped after
    finally:
        await connection.close()
    assert result.skipped == {} and "pg_ivm" in result.strategies
    assert [e.split(" ")[0] for e in result.server.extensions] == ["pg_ivm"]
    sequential = result.sequential_of("pg_ivm")
    assert sequential is not None and sequential.accounting.lost == 0
    for same_user in (True, False):
        c = result.concurrent_of("pg_ivm", same_user=same_user)
        assert c is not None and c.errors == 0 and c.accounting.inserted == 40
        assert c.accounting.lost == 0
    bulk = result.bulk_of("pg_ivm")
    assert bulk is not None and bulk.accounting.lost == 0
    for state in ("cold", "warm"):
        read = result.read_of("pg_ivm", state)
        assert read is not None and read.value == read.expected == SMOKE.read_answers
    assert await leftovers(ivm_db) == []


async def test_a_pg_ivm_that_was_there_stays(ivm_db: str) -> None:
    connection = await asyncpg.connect(ivm_db)
    try:
        await connection.execute("CREATE EXTENSION pg_ivm")
        async with PgIvm.available(ivm_db) as why_not:
            assert why_not is None
        assert await connection.fetchval(HAS_PG_IVM) == 1
    finally:
        await connection.close()
