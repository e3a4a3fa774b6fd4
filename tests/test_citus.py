"""The same exact counters on Citus, the tables distributed by user_id.

Runs when ``SELFOLOGY_TEST_CITUS_DSN`` names a Citus coordinator whose workers are added (at
least two); skipped otherwise. The module owns the ``selfology`` schema of that database: it
drops and migrates it once, and every test writes users of its own, then compares every
counter of the whole schema with COUNT(*). docs/SCALING.md says how to start such a cluster.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from selfology_counters import OnboardingDAO, health, objects
from selfology_counters.dao import RETRYABLE
from selfology_counters.deferred import set_mode
from selfology_counters.errors import (
    DistributedUnsupportedError,
    SessionNotActiveError,
    UnknownSessionError,
)
from selfology_counters.lifecycle import plan, revisions, run_sync, upgrade
from tests.test_cli import assert_one_line_error, cli

CITUS_DSN = os.environ.get("SELFOLOGY_TEST_CITUS_DSN", "")
pytestmark = pytest.mark.skipif(
    not CITUS_DSN,
    reason="SELFOLOGY_TEST_CITUS_DSN names no Citus coordinator (see docs/SCALING.md)",
)
TABLES = ("onboarding_sessions", "user_stats", "digital_personality", "user_answers_new")
WRITERS = 100
_users = itertools.count(1_000_001)


def fresh_users(n: int) -> list[int]:
    """User ids no other test of this module writes."""
    return [next(_users) for _ in range(n)]


async def _cluster_ready(connection: asyncpg.Connection) -> str | None:
    """Why this database cannot serve the tests, or None."""
    if not await connection.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'citus'"):
        return "the citus extension is not installed in SELFOLOGY_TEST_CITUS_DSN's database"
    workers = await connection.fetchval("SELECT count(*) FROM citus_get_active_worker_nodes()")
    return None if workers >= 2 else f"the coordinator has {workers} active workers, not 2"


EXISTING_USERS = (900_001, 900_002, 900_003)  # written before the tables are distributed


async def _single_node_database(dsn: str) -> None:
    """The tables local on the coordinator, with the plain objects and answers in them, one
    counter off by 3: what restoring a single node's dump there leaves."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(objects.install_sql())
        for user in EXISTING_USERS:
            session = await connection.fetchval(
                "INSERT INTO selfology.onboarding_sessions (user_id) VALUES ($1) RETURNING id",
                user,
            )
            await connection.execute(
                """INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)
                   SELECT $1, 'q' || g, 'before Citus' FROM generate_series(1, 4) g""",
                session,
            )
        await connection.execute(
            "INSERT INTO selfology.digital_personality (user_id) VALUES ($1)", EXISTING_USERS[0]
        )
        await connection.execute(
            "UPDATE selfology.user_stats SET total_answers_lifetime = 7 WHERE user_id = $1",
            EXISTING_USERS[1],
        )
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def citus_dsn() -> Iterator[str]:
    """The coordinator, its ``selfology`` schema dropped, built as a single node's, then
    migrated (which distributes it)."""

    async def reset() -> str | None:
        connection = await asyncpg.connect(CITUS_DSN)
        try:
            why = await _cluster_ready(connection)
            if why is None:
                await connection.execute("DROP SCHEMA IF EXISTS selfology CASCADE")
            return why
        finally:
            await connection.close()

    why = run_sync(reset())
    if why is not None:
        pytest.skip(why)
    revisions.run_upgrade(CITUS_DSN)  # the tables only, local
    run_sync(_single_node_database(CITUS_DSN))
    upgrade(CITUS_DSN)
    yield CITUS_DSN


@pytest.fixture
async def coordinator(citus_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(citus_dsn)
    yield connection
    await connection.close()


@pytest.fixture
async def dao(citus_dsn: str) -> AsyncIterator[OnboardingDAO]:
    pool = await asyncpg.create_pool(citus_dsn, min_size=1, max_size=WRITERS)
    yield OnboardingDAO(pool)
    await pool.close()


# The oracle, sharing no code with the package: each count grouped once (Citus sends a
# GROUP BY to every shard), compared in Python.
async def mismatches(connection: asyncpg.Connection) -> list[tuple[str, int, int | None, int]]:
    per_session = dict(
        await connection.fetch(
            "SELECT session_id, count(*) FROM selfology.user_answers_new GROUP BY session_id"
        )
    )
    per_user = dict(
        await connection.fetch(
            "SELECT user_id, count(*) FROM selfology.user_answers_new GROUP BY user_id"
        )
    )
    sessions = dict(
        await connection.fetch("SELECT id, questions_answered FROM selfology.onboarding_sessions")
    )
    stats = dict(
        await connection.fetch("SELECT user_id, total_answers_lifetime FROM selfology.user_stats")
    )
    personality = dict(await connection.fetch(
        "SELECT user_id, total_answers_analyzed FROM selfology.digital_personality"))  # fmt: skip
    wrong = [
        ("sessions", k, v, per_session.get(k, 0))
        for k, v in sessions.items()
        if v != per_session.get(k, 0)
    ]
    wrong += [
        ("user_stats", k, stats.get(k), per_user.get(k, 0))
        for k in stats.keys() | per_user.keys()
        if stats.get(k) != per_user.get(k, 0)
    ]
    wrong += [("personality", k, v, per_user.get(k, 0))
              for k, v in personality.items() if v != per_user.get(k, 0)]  # fmt: skip
    wrong += [("answers without session", k, None, n)
              for k, n in per_session.items() if k not in sessions]  # fmt: skip
    return wrong


async def assert_exact(connection: asyncpg.Connection) -> None:
    wrong = await mismatches(connection)
    assert wrong == [], f"counters differ from COUNT(*): {wrong[:10]}"
    result = await health.check(connection)
    assert result.consistent, (result.issues[:5], result.problems, result.integrity)


async def stored(connection: asyncpg.Connection, user: int) -> tuple[int, int | None]:
    """(user_stats, digital_personality) of ``user``."""
    row = await connection.fetchrow(
        """SELECT (SELECT total_answers_lifetime FROM selfology.user_stats WHERE user_id = $1),
                  (SELECT total_answers_analyzed FROM selfology.digital_personality
                    WHERE user_id = $1)""",
        user,
    )
    return row[0], row[1]


async def worker_of(connection: asyncpg.Connection, table: str, user: int) -> int:
    """The port of the worker holding ``user``'s shard of ``table``."""
    return int(await connection.fetchval(
        """SELECT nodeport FROM citus_shards
            WHERE shardid = get_shard_id_for_distribution_column($1, $2::bigint)""",
        f"selfology.{table}", user))  # fmt: skip


async def test_an_existing_single_node_database_keeps_its_answers_and_exact_counts(
    coordinator: asyncpg.Connection,
) -> None:
    for user in EXISTING_USERS:
        assert (await stored(coordinator, user))[0] == 4
    assert await stored(coordinator, EXISTING_USERS[0]) == (4, 4)
    await assert_exact(coordinator)


async def test_migrate_distributes_the_four_tables_co_located(
    coordinator: asyncpg.Connection,
) -> None:
    rows = await coordinator.fetch(
        """SELECT logicalrelid::regclass::text AS name, partmethod::text, colocationid,
                  column_to_column_name(logicalrelid, partkey) AS column
             FROM pg_dist_partition WHERE logicalrelid::regclass::text LIKE 'selfology.%'"""
    )
    by_name = {r["name"].removeprefix("selfology."): r for r in rows}
    assert {by_name[t]["column"] for t in TABLES} == {"user_id"}
    assert len({by_name[t]["colocationid"] for t in TABLES}) == 1
    assert by_name["counter_mode"]["partmethod"] == "n"  # a reference table
    result = await health.check(coordinator)
    assert result.audit is not None and result.audit.distributed
    assert result.triggers_healthy, [o.as_dict() for o in result.objects if not o.healthy]
    assert (await plan(CITUS_DSN)).nothing_to_do


async def test_every_change_kind_keeps_every_counter_exact(
    coordinator: asyncpg.Connection, dao: OnboardingDAO
) -> None:
    users = fresh_users(8)
    a, b = users[0], users[1]
    sessions = {u: [await dao.start_session(u) for _ in range(2)] for u in users}
    await coordinator.execute(
        "INSERT INTO selfology.digital_personality (user_id) SELECT unnest($1::bigint[])",
        users[:4],
    )
    await dao.save_answer(sessions[a][0], "q1", "single row, through the DAO")
    await dao.save_answers(sessions[a][0], [("q2", "x"), ("q3", "y")])  # multi-row, one user
    # Multi-row, every user and session at once (every shard that holds one of them).
    await coordinator.execute(
        """INSERT INTO selfology.user_answers_new
                  (session_id, user_id, question_json_id, raw_answer)
           SELECT s.id, s.user_id, 'bulk', 'z' FROM selfology.onboarding_sessions s
            WHERE s.user_id = ANY ($1::bigint[])""",
        users,
    )
    await coordinator.copy_records_to_table(
        "user_answers_new", schema_name="selfology",
        columns=["session_id", "user_id", "question_json_id", "raw_answer"],
        records=[(sessions[u][1], u, "copied", "c") for u in users],
    )  # fmt: skip
    # INSERT ... SELECT from the answers themselves.
    await coordinator.execute(
        """INSERT INTO selfology.user_answers_new
                  (session_id, user_id, question_json_id, raw_answer)
           SELECT session_id, user_id, 'again', raw_answer FROM selfology.user_answers_new
            WHERE user_id = ANY ($1::bigint[]) AND question_json_id = 'copied'""",
        users,
    )
    await assert_exact(coordinator)
    assert await stored(coordinator, a) == (7, 7)

    # Moves within a user, one answer and many (the user's counters stay, the sessions' move).
    await coordinator.execute(
        "UPDATE selfology.user_answers_new SET session_id = $1 WHERE session_id = $2",
        sessions[a][1], sessions[a][0],
    )  # fmt: skip
    await coordinator.execute(
        """UPDATE selfology.user_answers_new a SET session_id = s.id
             FROM selfology.onboarding_sessions s
            WHERE s.user_id = a.user_id AND a.user_id = ANY ($1::bigint[])
              AND s.id <> a.session_id AND a.question_json_id = 'bulk'""",
        users[2:],
    )
    # Deletes: one answer, many across shards (2PC), a session with its answers (cascade).
    one = await coordinator.fetchval(
        "SELECT min(id) FROM selfology.user_answers_new WHERE user_id = $1", b
    )
    await dao.delete_answer(one)
    await coordinator.execute(
        """DELETE FROM selfology.user_answers_new
            WHERE user_id = ANY ($1::bigint[]) AND question_json_id = 'again'""",
        users,
    )
    await coordinator.execute(
        "DELETE FROM selfology.onboarding_sessions WHERE id = $1", sessions[users[3]][0]
    )
    # A user whose every answer is gone keeps a row at zero.
    await coordinator.execute("DELETE FROM selfology.user_answers_new WHERE user_id = $1", users[4])
    await assert_exact(coordinator)
    assert await stored(coordinator, users[4]) == (0, None)
    assert await dao.get_user_total_answers(a) == 6  # 'again' is gone
    assert await dao.get_personality_count(a) == 6


async def test_what_citus_forbids_is_refused_and_nothing_changes(
    coordinator: asyncpg.Connection, dao: OnboardingDAO
) -> None:
    a, b = fresh_users(2)
    mine, theirs = await dao.start_session(a), await dao.start_session(b)
    await dao.save_answers(mine, [("q1", "x"), ("q2", "y")])
    answer = await coordinator.fetchval(
        "SELECT min(id) FROM selfology.user_answers_new WHERE session_id = $1", mine
    )
    with pytest.raises(asyncpg.FeatureNotSupportedError, match="partition value"):
        await coordinator.execute(
            "UPDATE selfology.onboarding_sessions SET user_id = $1 WHERE id = $2", b, mine
        )
    with pytest.raises(asyncpg.NullValueNotAllowedError, match="partition column"):
        await coordinator.execute(
            """INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)
               VALUES ($1, 'q3', 'no user_id')""",
            mine,
        )
    with pytest.raises(asyncpg.FeatureNotSupportedError, match="stays with its user"):
        await coordinator.execute(
            "UPDATE selfology.user_answers_new SET session_id = $1 WHERE id = $2 AND user_id = $3",
            theirs, answer, a,
        )  # fmt: skip
    with pytest.raises(asyncpg.FeatureNotSupportedError, match=r"TRUNCATE .* refused on Citus"):
        await coordinator.execute("TRUNCATE selfology.user_answers_new")
    with pytest.raises(DistributedUnsupportedError, match="not available on Citus"):
        await set_mode(coordinator, "deferred")
    assert await stored(coordinator, a) == (2, None)
    assert await coordinator.fetchval("SELECT mode FROM selfology.counter_mode") == "immediate"
    await assert_exact(coordinator)


def test_the_cli_refuses_deferred_mode_in_one_line(citus_dsn: str) -> None:
    assert "not available on Citus" in assert_one_line_error(cli("mode", "deferred", dsn=citus_dsn))


async def test_a_distributed_deadlock_is_a_deadlock_error_the_dao_retries(
    coordinator: asyncpg.Connection, citus_dsn: str
) -> None:
    # Two users on different workers, locked in opposite orders by two transactions: only
    # Citus's distributed deadlock detection can see the cycle.
    users = fresh_users(200)
    ports = {u: await worker_of(coordinator, "user_stats", u) for u in users}
    a = users[0]
    b = next(u for u in users if ports[u] != ports[a])
    await coordinator.execute("INSERT INTO selfology.user_stats (user_id) VALUES ($1), ($2)", a, b)
    first, second = await asyncpg.connect(citus_dsn), await asyncpg.connect(citus_dsn)
    touch = "UPDATE selfology.user_stats SET updated_at = now() WHERE user_id = $1"
    try:
        first_tx, second_tx = first.transaction(), second.transaction()
        await first_tx.start()
        await second_tx.start()
        await first.execute(touch, a)
        await second.execute(touch, b)
        results = await asyncio.gather(
            first.execute(touch, b), second.execute(touch, a), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], asyncpg.DeadlockDetectedError), errors
        assert isinstance(errors[0], RETRYABLE)  # what OnboardingDAO retries
    finally:
        await first.close()
        await second.close()
    await coordinator.execute(
        "DELETE FROM selfology.user_stats WHERE user_id = ANY ($1::bigint[])", [a, b]
    )


async def test_100_writers_on_one_user(coordinator: asyncpg.Connection, dao: OnboardingDAO) -> None:
    (user,) = fresh_users(1)
    sessions = [await dao.start_session(user) for _ in range(10)]
    await coordinator.execute(
        "INSERT INTO selfology.digital_personality (user_id) VALUES ($1)", user
    )
    start = asyncio.Event()

    async def writer(index: int) -> None:
        await start.wait()
        for round_ in range(5):
            await dao.save_answer(
                sessions[(index + round_) % 10], f"q{index}-{round_}", "same user"
            )

    tasks = [asyncio.create_task(writer(i)) for i in range(WRITERS)]
    start.set()
    await asyncio.gather(*tasks)
    assert await stored(coordinator, user) == (WRITERS * 5, WRITERS * 5)
    await assert_exact(coordinator)


async def test_100_writers_on_100_users_over_both_workers(
    coordinator: asyncpg.Connection, dao: OnboardingDAO
) -> None:
    users = fresh_users(WRITERS)
    assert len({await worker_of(coordinator, "user_answers_new", u) for u in users}) == 2
    sessions = {u: await dao.start_session(u) for u in users}
    await coordinator.execute(
        "INSERT INTO selfology.digital_personality (user_id) SELECT unnest($1::bigint[])",
        users[::2],
    )
    start = asyncio.Event()

    async def writer(user: int) -> None:
        await start.wait()
        for round_ in range(5):
            if round_ == 2:
                await dao.save_answers(sessions[user], [("m1", "a"), ("m2", "b")])
            else:
                await dao.save_answer(sessions[user], f"q{round_}", "one of many users")

    tasks = [asyncio.create_task(writer(u)) for u in users]
    start.set()
    await asyncio.gather(*tasks)
    assert {await stored(coordinator, u) for u in users[::2]} == {(6, 6)}
    assert {await stored(coordinator, u) for u in users[1::2]} == {(6, None)}
    await assert_exact(coordinator)


async def test_a_shard_moves_to_the_other_worker_under_writes(
    coordinator: asyncpg.Connection, dao: OnboardingDAO
) -> None:
    users = fresh_users(20)
    (moved_user,) = users[:1]
    shard = await coordinator.fetchval(
        "SELECT get_shard_id_for_distribution_column('selfology.user_answers_new', $1::bigint)",
        moved_user,
    )
    source = await worker_of(coordinator, "user_answers_new", moved_user)
    target = await coordinator.fetchval(
        "SELECT node_port FROM citus_get_active_worker_nodes() WHERE node_port <> $1 LIMIT 1",
        source,
    )
    sessions = {u: await dao.start_session(u) for u in users}
    stop = asyncio.Event()
    written = dict.fromkeys(users, 0)

    async def writer(user: int) -> None:
        while not stop.is_set():
            await dao.save_answer(sessions[user], "q", "while the shard moves")
            written[user] += 1

    tasks = [asyncio.create_task(writer(u)) for u in users]
    # Writes are under way before the move starts, and go on after it ends.
    while written[moved_user] < 5:
        await asyncio.sleep(0.01)
    await coordinator.execute(
        "SELECT citus_move_shard_placement($1, '127.0.0.1', $2, '127.0.0.1', $3)",
        shard, source, target,
    )  # fmt: skip
    after_move = written[moved_user]
    while written[moved_user] < after_move + 5:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*tasks)
    assert await worker_of(coordinator, "user_answers_new", moved_user) == target
    assert await worker_of(coordinator, "user_stats", moved_user) == target  # co-located
    for user in users:
        assert (await stored(coordinator, user))[0] == written[user]
    await assert_exact(coordinator)


async def test_check_finds_and_repair_fixes_drift_one_user_at_a_time(
    coordinator: asyncpg.Connection, dao: OnboardingDAO
) -> None:
    users = fresh_users(6)
    sessions = {u: await dao.start_session(u) for u in users}
    for user in users:
        await dao.save_answers(sessions[user], [("q1", "x"), ("q2", "y")])
    await coordinator.execute(
        """UPDATE selfology.user_stats SET total_answers_lifetime = 40
            WHERE user_id = ANY ($1::bigint[])""",
        users[:3],
    )
    await coordinator.execute(
        "UPDATE selfology.onboarding_sessions SET questions_answered = 9 WHERE id = $1",
        sessions[users[4]],
    )
    found = await health.check(coordinator)
    assert {(i.counter, i.key) for i in found.issues} == {
        *(("user_stats.total_answers_lifetime", u) for u in users[:3]),
        ("onboarding_sessions.questions_answered", sessions[users[4]]),
    }
    repaired = await health.repair(coordinator, found=found)
    assert len(repaired.changes) == 4
    await assert_exact(coordinator)


async def test_the_dao_refuses_a_closed_or_unknown_session_on_citus(
    coordinator: asyncpg.Connection, dao: OnboardingDAO
) -> None:
    (user,) = fresh_users(1)
    session = await dao.start_session(user)
    await dao.save_answer(session, "q1", "before completion")
    await dao.complete_session(session)
    with pytest.raises(SessionNotActiveError):
        await dao.save_answer(session, "q2", "after completion")
    with pytest.raises(SessionNotActiveError):
        await dao.save_answers(session, [("q3", "x"), ("q4", "y")])
    missing = await coordinator.fetchval("SELECT max(id) + 1000 FROM selfology.onboarding_sessions")
    with pytest.raises(UnknownSessionError):
        await dao.save_answer(missing, "q1", "nobody's")
    assert await stored(coordinator, user) == (1, None)
    await assert_exact(coordinator)


async def test_mixed_multi_shard_load_keeps_counters_exact_through_cancelled_deadlocks(
    coordinator: asyncpg.Connection, dao: OnboardingDAO, citus_dsn: str
) -> None:
    """Inserts, multi-shard deletes and moves at once: Citus may cancel some as distributed
    deadlocks; what is rolled back leaves the counters exact, what is retried is counted."""
    users = fresh_users(16)
    sessions = {u: [await dao.start_session(u) for _ in range(2)] for u in users}
    for user in users:
        await dao.save_answers(sessions[user][0], [(f"seed{i}", "x") for i in range(4)])
    deadlocks = 0

    async def retried(connection: asyncpg.Connection, sql: str, *args: object) -> None:
        nonlocal deadlocks
        for _ in range(20):
            try:
                await connection.execute(sql, *args)
                return
            except asyncpg.DeadlockDetectedError:
                deadlocks += 1
        raise AssertionError("a statement kept deadlocking")

    async def client(index: int) -> None:
        connection = await asyncpg.connect(citus_dsn)
        try:
            for step in range(12):
                mine = users[(index + step) % len(users)]
                other = users[(index + 3 * step + 5) % len(users)]
                if step % 3 == 0:
                    await dao.save_answer(sessions[mine][step % 2], f"c{index}-{step}", "new")
                elif step % 3 == 1:  # the oldest answer of two users on any shards: 2PC
                    await retried(connection, """
                        DELETE FROM selfology.user_answers_new WHERE id IN (
                            SELECT min(id) FROM selfology.user_answers_new
                             WHERE user_id = ANY ($1::bigint[]) GROUP BY user_id)""",
                        [mine, other])  # fmt: skip
                else:  # every answer of one user to its other session
                    await retried(connection, """
                        UPDATE selfology.user_answers_new SET session_id = $1
                         WHERE user_id = $2 AND session_id = $3""",
                        sessions[mine][1], mine, sessions[mine][0])  # fmt: skip
        finally:
            await connection.close()

    await asyncio.gather(*(client(i) for i in range(8)))
    await assert_exact(coordinator)
    print(f"distributed deadlocks cancelled and retried: {deadlocks}")
