"""The same exact counters on Citus, the tables distributed by user_id.

Runs when ``SELFOLOGY_TEST_CITUS_DSN`` names a Citus coordinator whose workers are added (at
least two); skipped otherwise. The module owns the ``selfology`` schema of that database: it
drops and migrates it once, and every test writes users of its own, then compares every
counter of the whole schema with COUNT(*). docs/SCALING.md says how to start such a cluster.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from selfology_counters import OnboardingDAO, deferred, health, model, objects
from selfology_counters.dao import RETRYABLE
from selfology_counters.deferred import set_mode
from selfology_counters.errors import SessionNotActiveError, UnknownSessionError
from selfology_counters.lifecycle import plan, revisions, run_sync, upgrade
from selfology_counters.sqlfiles import query
from tests.test_cli import CLI, cli

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
        async with (
            connection.transaction()
        ):  # drift on purpose: marked, or the keep trigger undoes it
            await connection.execute("SELECT set_config('selfology_counters.counting', 'on', true)")
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
    distributed = upgrade(CITUS_DSN)
    # migrate said "installed 0 functions, triggers and views" here: distributing installs them.
    assert distributed.distributed and distributed.installed == len(model.OBJECTS)
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
    personality = dict(
        await connection.fetch(
            "SELECT user_id, total_answers_analyzed FROM selfology.digital_personality"
        )
    )
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
    wrong += [
        ("personality", k, v, per_user.get(k, 0))
        for k, v in personality.items()
        if v != per_user.get(k, 0)
    ]
    wrong += [
        ("answers without session", k, None, n) for k, n in per_session.items() if k not in sessions
    ]
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
    return int(
        await connection.fetchval(
            """SELECT nodeport FROM citus_shards
            WHERE shardid = get_shard_id_for_distribution_column($1, $2::bigint)""",
            f"selfology.{table}",
            user,
        )
    )


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


async def insert_every_way(
    coordinator: asyncpg.Connection, dao: OnboardingDAO
) -> tuple[list[int], dict[int, list[int]]]:
    """Eight new users with two sessions each (four with a personality row), answers inserted
    every way: one row and several through the DAO, a multi-shard INSERT ... SELECT, COPY, and
    an INSERT ... SELECT from the answers themselves. Returns the users and their sessions."""
    users = fresh_users(8)
    a = users[0]
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
        "user_answers_new",
        schema_name="selfology",
        columns=["session_id", "user_id", "question_json_id", "raw_answer"],
        records=[(sessions[u][1], u, "copied", "c") for u in users],
    )
    # INSERT ... SELECT from the answers themselves.
    await coordinator.execute(
        """INSERT INTO selfology.user_answers_new
                  (session_id, user_id, question_json_id, raw_answer)
           SELECT session_id, user_id, 'again', raw_answer FROM selfology.user_answers_new
            WHERE user_id = ANY ($1::bigint[]) AND question_json_id = 'copied'""",
        users,
    )
    return users, sessions


async def test_every_change_kind_keeps_every_counter_exact(
    coordinator: asyncpg.Connection, dao: OnboardingDAO
) -> None:
    users, sessions = await insert_every_way(coordinator, dao)
    a, b = users[0], users[1]
    await assert_exact(coordinator)
    assert await stored(coordinator, a) == (7, 7)

    # Moves within a user, one answer and many (the user's counters stay, the sessions' move).
    await coordinator.execute(
        "UPDATE selfology.user_answers_new SET session_id = $1 WHERE session_id = $2",
        sessions[a][1],
        sessions[a][0],
    )
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
            theirs,
            answer,
            a,
        )
    with pytest.raises(asyncpg.FeatureNotSupportedError, match=r"TRUNCATE .* refused on Citus"):
        await coordinator.execute("TRUNCATE selfology.user_answers_new")
    assert await stored(coordinator, a) == (2, None)
    assert await coordinator.fetchval("SELECT mode FROM selfology.counter_mode") == "immediate"
    await assert_exact(coordinator)


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


async def shard_move_of(coordinator: asyncpg.Connection, user: int) -> tuple[int, int, int]:
    """The answers' shard that holds ``user``, the worker port it is on, and the other
    worker's port (where a test moves it)."""
    shard = await coordinator.fetchval(
        "SELECT get_shard_id_for_distribution_column('selfology.user_answers_new', $1::bigint)",
        user,
    )
    source = await worker_of(coordinator, "user_answers_new", user)
    target = await coordinator.fetchval(
        "SELECT node_port FROM citus_get_active_worker_nodes() WHERE node_port <> $1 LIMIT 1",
        source,
    )
    return shard, source, target


async def test_a_shard_moves_to_the_other_worker_under_writes(
    coordinator: asyncpg.Connection, dao: OnboardingDAO
) -> None:
    users = fresh_users(20)
    (moved_user,) = users[:1]
    shard, source, target = await shard_move_of(coordinator, moved_user)
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
        shard,
        source,
        target,
    )
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


async def write_counters_by_hand(connection: asyncpg.Connection, sql: str, *args: object) -> None:
    """Drift made on purpose, as tests/truth.py makes it on one node: ``sql`` in a transaction
    marked as the owner's own counter work, the mark sent to the workers (where the keep
    triggers fire) with a propagated SET LOCAL. Unmarked, the write is undone."""
    async with connection.transaction():
        await connection.execute("SET LOCAL citus.propagate_set_commands = 'local'")
        await connection.execute("SET LOCAL selfology_counters.counting = 'on'")
        await connection.execute(sql, *args)


async def test_check_finds_and_repair_fixes_drift_one_user_at_a_time(
    coordinator: asyncpg.Connection, dao: OnboardingDAO
) -> None:
    users = fresh_users(6)
    sessions = {u: await dao.start_session(u) for u in users}
    for user in users:
        await dao.save_answers(sessions[user], [("q1", "x"), ("q2", "y")])
    await write_counters_by_hand(
        coordinator,
        """UPDATE selfology.user_stats SET total_answers_lifetime = 40
            WHERE user_id = ANY ($1::bigint[])""",
        users[:3],
    )
    await write_counters_by_hand(
        coordinator,
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
    # The original's repair function, which marks its writes inside the function.
    await write_counters_by_hand(
        coordinator,
        "UPDATE selfology.onboarding_sessions SET questions_answered = 9 WHERE id = $1",
        sessions[users[5]],
    )
    await write_counters_by_hand(
        coordinator,
        "UPDATE selfology.user_stats SET total_answers_lifetime = 9 WHERE user_id = $1",
        users[5],
    )
    assert not (await health.check(coordinator)).consistent
    assert (
        await coordinator.fetchval("SELECT selfology.recalculate_answer_count($1)", users[5]) == 2
    )
    await assert_exact(coordinator)


# The bot's own counter writes (docs/ADOPTING.md), from the coordinator as the bot sends them.
BOT_PLUS_ONE = """UPDATE selfology.onboarding_sessions
                     SET questions_answered = questions_answered + 1
                   WHERE id = $1 AND user_id = $2"""
BOT_ANALYZED = (
    "UPDATE selfology.digital_personality SET total_answers_analyzed = $1 WHERE user_id = $2"
)


async def overridden(connection: asyncpg.Connection) -> dict[str, int]:
    """The undone writes per counter, as check reports them (every node's, added up)."""
    found = await health.check(connection)
    assert found.audit is not None
    return {o.counter: o.writes for o in found.audit.overridden}


async def users_on_both_workers(connection: asyncpg.Connection) -> list[int]:
    users = fresh_users(40)
    ports = {u: await worker_of(connection, "onboarding_sessions", u) for u in users}
    return [users[0], next(u for u in users if ports[u] != ports[users[0]])]


@pytest.mark.parametrize("mode", model.MODES)
async def test_the_bots_own_counter_writes_are_undone_and_counted_on_citus(
    coordinator: asyncpg.Connection, dao: OnboardingDAO, mode: str
) -> None:
    users = await users_on_both_workers(coordinator)
    before = await overridden(coordinator)
    await set_mode(coordinator, mode)
    try:
        sessions = {u: await dao.start_session(u) for u in users}
        await coordinator.execute(
            "INSERT INTO selfology.digital_personality (user_id) SELECT unnest($1::bigint[])",
            users,
        )
        for user in users:
            await dao.save_answers(sessions[user], [("q1", "x"), ("q2", "y"), ("q3", "z")])
            for _ in range(2):  # the bot's save_user_answer, after each INSERT
                assert await coordinator.execute(BOT_PLUS_ONE, sessions[user], user) == "UPDATE 1"
            # The bot's update_personality: a read, then the read value + 1 written back.
            read = await coordinator.fetchval(
                "SELECT total_answers_analyzed FROM selfology.digital_personality"
                " WHERE user_id = $1",
                user,
            )
            assert await coordinator.execute(BOT_ANALYZED, read + 1, user) == "UPDATE 1"
            folded = 3 if mode == model.IMMEDIATE else 0  # deferred: the answers are pending
            assert await stored(coordinator, user) == (folded, folded)
            assert (
                await coordinator.fetchval(
                    "SELECT questions_answered FROM selfology.onboarding_sessions WHERE id = $1",
                    sessions[user],
                )
                == folded
            )
        await assert_exact_reads(coordinator, users)
        found = await health.check(coordinator)
        assert found.consistent, (found.issues, found.problems)
        after = {o.counter: o.writes for o in found.audit.overridden} if found.audit else {}
        assert {c: after[c] - before[c] for c in after} == {
            model.SESSIONS.name: 4,
            model.USER_STATS.name: 0,
            model.PERSONALITY.name: 2,
        }
        for counter in (model.SESSIONS.name, model.PERSONALITY.name):
            assert any(
                f"the application wrote {counter} {after[counter]} times" in n for n in found.notes
            ), found.notes
    finally:
        await set_mode(coordinator, model.IMMEDIATE)
    assert {await stored(coordinator, u) for u in users} == {(3, 3)}
    await assert_exact(coordinator)


APP_ROLE = "selfology_citus_test_app"


@pytest.fixture
async def refusing_app(coordinator: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A connection of an application role (not the tables' owner) whose counter writes are
    refused: ``selfology_counters.counter_writes = 'refuse'`` set for the role (Citus sends
    ALTER ROLE ... SET to the workers)."""
    if not await coordinator.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", APP_ROLE):
        await coordinator.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
    await coordinator.execute(f"GRANT USAGE ON SCHEMA selfology TO {APP_ROLE}")
    await coordinator.execute(
        f"GRANT SELECT, UPDATE ON selfology.onboarding_sessions, selfology.digital_personality"
        f" TO {APP_ROLE}"
    )
    await coordinator.execute(
        f"ALTER ROLE {APP_ROLE} SET selfology_counters.counter_writes = 'refuse'"
    )
    connection = await asyncpg.connect(CITUS_DSN, user=APP_ROLE)
    yield connection
    await connection.close()


async def test_refuse_makes_the_bots_counter_writes_fail_on_citus(
    coordinator: asyncpg.Connection, dao: OnboardingDAO, refusing_app: asyncpg.Connection
) -> None:
    users = await users_on_both_workers(coordinator)
    before = await overridden(coordinator)
    for user in users:
        session = await dao.start_session(user)
        await coordinator.execute(
            "INSERT INTO selfology.digital_personality (user_id) VALUES ($1)", user
        )
        await dao.save_answers(session, [("q1", "x"), ("q2", "y")])
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="may not write it"):
            await refusing_app.execute(BOT_PLUS_ONE, session, user)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="may not write it"):
            await refusing_app.execute(BOT_ANALYZED, 99, user)
        # The application role cannot pass its write off as ours: the mark, sent to the
        # workers as our repair sends it, is honoured only for the tables' owner.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="may not write it"):
            async with refusing_app.transaction():
                await refusing_app.execute("SET LOCAL citus.propagate_set_commands = 'local'")
                await refusing_app.execute("SET LOCAL selfology_counters.counting = 'on'")
                await refusing_app.execute(BOT_PLUS_ONE, session, user)
        assert await stored(coordinator, user) == (2, 2)
    assert await overridden(coordinator) == before  # refused, not undone
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
                    await retried(
                        connection,
                        """
                        DELETE FROM selfology.user_answers_new WHERE id IN (
                            SELECT min(id) FROM selfology.user_answers_new
                             WHERE user_id = ANY ($1::bigint[]) GROUP BY user_id)""",
                        [mine, other],
                    )
                else:  # every answer of one user to its other session
                    await retried(
                        connection,
                        """
                        UPDATE selfology.user_answers_new SET session_id = $1
                         WHERE user_id = $2 AND session_id = $3""",
                        sessions[mine][1],
                        mine,
                        sessions[mine][0],
                    )
        finally:
            await connection.close()

    await asyncio.gather(*(client(i) for i in range(8)))
    await assert_exact(coordinator)
    print(f"distributed deadlocks cancelled and retried: {deadlocks}")


# Deferred mode on Citus: answers written in deferred mode are marked pending, the fold clears
# the mark shard by shard and the update trigger counts what it cleared (model.PENDING).

# The DAO's exact read of a user, as an expression: read with COUNT(*) in one statement, which
# Citus sends to the user's shard alone (one snapshot there).
EXACT_OF_USER = " ".join(
    line
    for line in query("dao.sql", "user_total_answers", distributed=True).splitlines()
    if not line.startswith("--")
).removeprefix("SELECT ")
EXACT_AND_COUNT = (
    "SELECT (" + EXACT_OF_USER + "),"
    " (SELECT count(*) FROM selfology.user_answers_new WHERE user_id = $1)"
)


@pytest.fixture
async def deferred_mode(coordinator: asyncpg.Connection) -> AsyncIterator[None]:
    """Deferred mode for the test; back to immediate after it (which folds what is left),
    every counter then equal to COUNT(*)."""
    await set_mode(coordinator, model.DEFERRED)
    yield
    await set_mode(coordinator, model.IMMEDIATE)
    await assert_exact(coordinator)
    assert (
        await coordinator.fetchval("SELECT count(*) FROM selfology.user_answers_new WHERE pending")
        == 0
    )


async def assert_exact_reads(connection: asyncpg.Connection, users: list[int]) -> None:
    """Every exact read of these users and their sessions equals COUNT(*)."""
    for user in users:
        exact, actual = await connection.fetchrow(EXACT_AND_COUNT, user)
        assert exact == actual, (user, exact, actual)
        analyzed = await connection.fetchval("SELECT selfology.answers_analyzed_of_user($1)", user)
        has_row = await connection.fetchval(
            "SELECT count(*) FROM selfology.digital_personality WHERE user_id = $1", user
        )
        assert analyzed == (actual if has_row else None), (user, analyzed, actual)
    for session, actual in await connection.fetch(
        """SELECT s.id, (SELECT count(*) FROM selfology.user_answers_new a
                          WHERE a.session_id = s.id AND a.user_id = s.user_id)
             FROM selfology.onboarding_sessions s WHERE s.user_id = ANY ($1::bigint[])""",
        users,
    ):
        assert (
            await connection.fetchval("SELECT selfology.answers_of_session($1)", session) == actual
        ), session


async def fold(connection: asyncpg.Connection) -> int:
    result = await deferred.fold_once(connection)
    assert not result.busy
    return result.folded


async def test_every_change_kind_in_deferred_mode_reads_exact_before_and_after_folding(
    coordinator: asyncpg.Connection, dao: OnboardingDAO, deferred_mode: None
) -> None:
    users, sessions = await insert_every_way(coordinator, dao)
    a = users[0]
    # Nothing counted yet: every answer is pending, and the reads are exact all the same.
    assert await stored(coordinator, a) == (0, 0)  # the personality row created it at 0
    assert await dao.get_user_total_answers(a) == 7
    await assert_exact_reads(coordinator, users)
    assert await fold(coordinator) == 3 + 2 * 8 + 8 + 8
    await assert_exact(coordinator)
    assert await stored(coordinator, a) == (7, 7)

    # Pending answers beside folded ones, then every other change kind on both.
    await coordinator.execute(
        """INSERT INTO selfology.user_answers_new
                  (session_id, user_id, question_json_id, raw_answer)
           SELECT s.id, s.user_id, 'late', 'p' FROM selfology.onboarding_sessions s
            WHERE s.user_id = ANY ($1::bigint[])""",
        users,
    )
    await coordinator.execute(  # moves within a user, folded and pending answers
        "UPDATE selfology.user_answers_new SET session_id = $1 WHERE session_id = $2",
        sessions[a][1],
        sessions[a][0],
    )
    await coordinator.execute(
        """UPDATE selfology.user_answers_new a SET session_id = s.id
             FROM selfology.onboarding_sessions s
            WHERE s.user_id = a.user_id AND a.user_id = ANY ($1::bigint[])
              AND s.id <> a.session_id AND a.question_json_id IN ('bulk', 'late')""",
        users[2:],
    )
    one = await coordinator.fetchval(
        "SELECT min(id) FROM selfology.user_answers_new WHERE user_id = $1", users[1]
    )
    await dao.delete_answer(one)  # a folded one
    await coordinator.execute(  # multi-shard, folded ('again') and pending ('late') alike
        """DELETE FROM selfology.user_answers_new
            WHERE user_id = ANY ($1::bigint[]) AND question_json_id IN ('again', 'late')
              AND session_id = (SELECT min(id) FROM selfology.onboarding_sessions s
                                 WHERE s.user_id = user_answers_new.user_id)""",
        users,
    )
    await coordinator.execute(  # cascade
        "DELETE FROM selfology.onboarding_sessions WHERE id = $1", sessions[users[3]][0]
    )
    await coordinator.execute("DELETE FROM selfology.user_answers_new WHERE user_id = $1", users[4])
    # A late personality row starts at the folded count; the exact read adds the pending.
    await coordinator.execute(
        "INSERT INTO selfology.digital_personality (user_id) VALUES ($1)", users[5]
    )
    assert (
        await coordinator.fetchval("SELECT count(*) FROM selfology.user_answers_new WHERE pending")
        > 0
    )
    await assert_exact_reads(coordinator, users)
    assert (await health.check(coordinator)).consistent  # stored + pending = COUNT(*)
    # check finds drift beside pending answers, and repair recounts the folded part alone.
    await write_counters_by_hand(
        coordinator,
        """UPDATE selfology.user_stats SET total_answers_lifetime = total_answers_lifetime + 40
            WHERE user_id = $1""",
        users[6],
    )
    found = await health.check(coordinator)
    assert [(i.counter, i.key) for i in found.issues] == [
        ("user_stats.total_answers_lifetime", users[6])
    ]
    assert len((await health.repair(coordinator, found=found)).changes) == 1
    await assert_exact_reads(coordinator, users)
    await fold(coordinator)
    await assert_exact(coordinator)
    await assert_exact_reads(coordinator, users)
    assert await stored(coordinator, users[4]) == (0, None)


async def test_an_answer_a_writer_marks_folded_itself_is_counted_in_deferred_mode(
    coordinator: asyncpg.Connection, dao: OnboardingDAO, deferred_mode: None
) -> None:
    """pending = false in the INSERT itself: no fold would ever take it, so the insert
    trigger, on in both modes on Citus, counts it at once (issue 19, item 14)."""
    users = await users_on_both_workers(coordinator)
    for user in users:
        session = await dao.start_session(user)
        await coordinator.execute(
            "INSERT INTO selfology.digital_personality (user_id) VALUES ($1)", user
        )
        await coordinator.execute(
            f"""INSERT INTO selfology.user_answers_new
                    (session_id, user_id, question_json_id, raw_answer, {model.PENDING})
                VALUES ($1, $2, 'q1', 'marked folded', false),
                       ($1, $2, 'q2', 'default', DEFAULT)""",
            session,
            user,
        )
    await assert_exact_reads(coordinator, users)
    assert await fold(coordinator) >= len(users)  # the pending ones only
    await assert_exact_reads(coordinator, users)
    await assert_exact(coordinator)
    found = await health.check(coordinator)
    assert found.consistent, found.as_dict()


async def test_the_cli_switches_modes_and_shows_the_backlog_on_citus(
    coordinator: asyncpg.Connection, dao: OnboardingDAO, citus_dsn: str
) -> None:
    (user,) = fresh_users(1)
    session = await dao.start_session(user)
    switched = cli("mode", "deferred", "--json", dsn=citus_dsn)
    assert switched.returncode == 0, switched.stderr
    try:
        await dao.save_answers(session, [("q1", "x"), ("q2", "y"), ("q3", "z")])
        shown = json.loads(cli("mode", "--json", dsn=citus_dsn).stdout)
        assert (shown["mode"], shown["pending"]) == ("deferred", 3)
        assert shown["oldest_pending_age_s"] >= 0
        stats = cli("stats", dsn=citus_dsn)
        assert stats.returncode == 0 and "pending answers: 3" in stats.stdout, stats
        folded = cli("worker", "--once", "--json", dsn=citus_dsn)
        assert folded.returncode == 0 and json.loads(folded.stdout)["folded"] == 3, folded
        assert await stored(coordinator, user) == (3, None)
    finally:
        assert cli("mode", "immediate", dsn=citus_dsn).returncode == 0
    await dao.save_answer(session, "q4", "immediate again")
    assert await stored(coordinator, user) == (4, None)
    await assert_exact(coordinator)


@pytest.mark.parametrize("spread", ["one user", "100 users"])
async def test_100_writers_while_two_workers_fold_and_the_mode_flips(
    coordinator: asyncpg.Connection, dao: OnboardingDAO, citus_dsn: str, spread: str
) -> None:
    """Every exact read during the run equals COUNT(*) read in the same statement; at the
    end every counter equals COUNT(*)."""
    users = fresh_users(1 if spread == "one user" else WRITERS)
    sessions = [await dao.start_session(users[i % len(users)]) for i in range(max(10, len(users)))]
    await coordinator.execute(
        "INSERT INTO selfology.digital_personality (user_id) SELECT unnest($1::bigint[])",
        users[::2],
    )
    await set_mode(coordinator, model.DEFERRED)
    stop = asyncio.Event()
    workers = [deferred.Worker(citus_dsn, interval_s=0.01) for _ in range(2)]
    folding = [asyncio.create_task(w.run(stop)) for w in workers]
    reads: list[tuple[int, int]] = []
    flips = 0
    written = dict.fromkeys(users, 0)

    async def writer(index: int) -> None:
        # At least 5 rounds each, and on until the mode has flipped 4 times under the writes.
        round_ = 0
        while round_ < 5 or flips < 4:
            session = sessions[(index + round_) % len(sessions)]
            user = users[(index + round_) % len(sessions) % len(users)]
            if round_ % 5 == 2:
                await dao.save_answers(session, [("m1", "a"), ("m2", "b")])
                written[user] += 2
            else:
                await dao.save_answer(session, f"q{index}-{round_}", spread)
                written[user] += 1
            round_ += 1

    async def reader() -> None:
        connection = await asyncpg.connect(citus_dsn)
        try:
            while not stop.is_set():
                for user in users[:5]:
                    reads.append(tuple(await connection.fetchrow(EXACT_AND_COUNT, user)))
        finally:
            await connection.close()

    async def flipper() -> None:
        nonlocal flips
        connection = await asyncpg.connect(citus_dsn)
        try:
            while not stop.is_set():
                mode = model.IMMEDIATE if flips % 2 == 0 else model.DEFERRED
                await set_mode(connection, mode)
                flips += 1
        finally:
            await connection.close()

    side = [asyncio.create_task(reader()), asyncio.create_task(flipper())]
    try:
        await asyncio.gather(*(writer(i) for i in range(WRITERS)))
    finally:
        stop.set()
        await asyncio.gather(*side, *folding)
    wrong = [r for r in reads if r[0] != r[1]]
    assert reads and not wrong, wrong[:5]
    assert flips >= 4, flips
    assert sum(w.summary.folds for w in workers) > 0
    assert sum(w.summary.errors for w in workers) == 0
    await set_mode(coordinator, model.IMMEDIATE)
    assert [(await stored(coordinator, u))[0] for u in users] == [written[u] for u in users]
    assert [(await stored(coordinator, u))[1] for u in users[::2]] == [
        written[u] for u in users[::2]
    ]
    await assert_exact(coordinator)


async def test_a_shard_moves_under_writes_in_deferred_mode(
    coordinator: asyncpg.Connection, dao: OnboardingDAO, citus_dsn: str, deferred_mode: None
) -> None:
    users = fresh_users(20)
    moved_user = users[0]
    shard, source, target = await shard_move_of(coordinator, moved_user)
    sessions = {u: await dao.start_session(u) for u in users}
    stop = asyncio.Event()
    written = dict.fromkeys(users, 0)
    worker = deferred.Worker(citus_dsn, interval_s=0.01)
    folding = asyncio.create_task(worker.run(stop))

    async def writer(user: int) -> None:
        while not stop.is_set():
            await dao.save_answer(sessions[user], "q", "while the shard moves")
            written[user] += 1

    tasks = [asyncio.create_task(writer(u)) for u in users]
    while written[moved_user] < 5 or worker.summary.folded == 0:
        await asyncio.sleep(0.01)
    await coordinator.execute(
        "SELECT citus_move_shard_placement($1, '127.0.0.1', $2, '127.0.0.1', $3)",
        shard,
        source,
        target,
    )
    after_move, folded = written[moved_user], worker.summary.folded
    while written[moved_user] < after_move + 5 or worker.summary.folded == folded:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*tasks, folding)
    assert await worker_of(coordinator, "user_answers_new", moved_user) == target
    assert worker.summary.errors == 0
    await assert_exact_reads(coordinator, users)
    for user in users:
        assert await dao.get_user_total_answers(user) == written[user]
    await fold(coordinator)
    for user in users:
        assert (await stored(coordinator, user))[0] == written[user]
    await assert_exact(coordinator)


@pytest.mark.parametrize("how", ["kill -9 the worker", "terminate its backend"])
async def test_a_worker_killed_mid_fold_on_citus_loses_and_doubles_nothing(
    coordinator: asyncpg.Connection,
    dao: OnboardingDAO,
    citus_dsn: str,
    deferred_mode: None,
    how: str,
) -> None:
    users = fresh_users(50)
    sessions = [await dao.start_session(u) for u in users]
    await coordinator.execute(
        """INSERT INTO selfology.user_answers_new
                  (session_id, user_id, question_json_id, raw_answer)
           SELECT s.id, s.user_id, 'q' || g, 'a'
             FROM selfology.onboarding_sessions s, generate_series(1, 1000) g
            WHERE s.id = ANY ($1::bigint[])""",
        sessions,
    )  # 50,000 pending answers on every shard: a fold that takes a moment
    env = {k: v for k, v in os.environ.items() if k not in ("SELFOLOGY_DSN", "DATABASE_URL")}
    worker = subprocess.Popen(
        [CLI, "worker"], env={**env, "SELFOLOGY_DSN": citus_dsn}, stderr=subprocess.DEVNULL
    )
    try:
        backend = await wait_for_fold(coordinator)
        if how == "kill -9 the worker":
            worker.send_signal(signal.SIGKILL)
        else:
            await coordinator.execute("SELECT pg_terminate_backend($1::integer)", backend)
    finally:
        if how != "kill -9 the worker":
            worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    await wait_until_gone(coordinator, backend)
    await assert_exact_reads(coordinator, users)  # each shard folded entirely or not at all
    assert (await health.check(coordinator)).consistent
    done = cli("worker", "--once", "--json", dsn=citus_dsn)
    assert done.returncode == 0, done.stderr
    assert (await deferred.state(coordinator)).pending == 0
    await assert_exact(coordinator)
    assert {(await stored(coordinator, u))[0] for u in users} == {1000}


async def wait_for_fold(connection: asyncpg.Connection) -> int:
    """The coordinator backend of the worker once it is clearing a shard's pending marks."""
    for _ in range(3000):
        pid = await connection.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
            " AND state = 'active' AND query LIKE '%SET pending = false%'",
            deferred.APPLICATION_NAME,
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.005)
    raise AssertionError("the worker never started folding")


async def wait_until_gone(connection: asyncpg.Connection, pid: int) -> None:
    for _ in range(3000):
        if not await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} still there")


@pytest.mark.parametrize("mode", model.MODES)
async def test_the_exact_reads_work_inside_queries_on_the_distributed_tables(
    coordinator: asyncpg.Connection, dao: OnboardingDAO, mode: str
) -> None:
    users = await users_on_both_workers(coordinator)
    sessions = {u: await dao.start_session(u) for u in users}
    await coordinator.execute(
        "INSERT INTO selfology.digital_personality (user_id) SELECT unnest($1::bigint[])", users
    )
    for user in users:
        await dao.save_answers(sessions[user], [("q1", "x"), ("q2", "y")])
    await set_mode(coordinator, mode)
    try:
        for user in users:  # pending in deferred mode: the reads add them
            await dao.save_answer(sessions[user], "q3", "z")
        for user in users:
            # The call runs in the query on the user's shard, on a worker.
            assert tuple(
                await coordinator.fetchrow(
                    """SELECT selfology.answers_of_user(user_id),
                              selfology.answers_analyzed_of_user(user_id)
                         FROM selfology.user_stats WHERE user_id = $1""",
                    user,
                )
            ) == (3, 3)
            assert (
                await coordinator.fetchval(
                    """SELECT selfology.answers_of_session(id) FROM selfology.onboarding_sessions
                    WHERE user_id = $1 AND id = $2""",
                    user,
                    sessions[user],
                )
                == 3
            )
            # Called alone from the coordinator: delegated to the user's node.
            assert await coordinator.fetchval("SELECT selfology.answers_of_user($1)", user) == 3
        # Several users at once: each call on its own user's shard, on both workers.
        rows = await coordinator.fetch(
            """SELECT user_id, selfology.answers_of_user(user_id) AS n
                 FROM selfology.digital_personality WHERE user_id = ANY ($1::bigint[])""",
            users,
        )
        assert {r["user_id"]: r["n"] for r in rows} == dict.fromkeys(users, 3)
        await assert_exact_reads(coordinator, users)
    finally:
        await set_mode(coordinator, model.IMMEDIATE)
    await assert_exact(coordinator)
