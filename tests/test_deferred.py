"""Deferred mode: every change kind reads exact before and after folding; 100 writers on one
user while two workers fold and the mode flips; a worker killed mid-fold; check, repair and
the audit understand the mode."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess

import asyncpg
import pytest

from selfology_counters import deferred, health, model
from tests.rows import new_session
from tests.test_cli import CLI
from tests.truth import assert_exact, assert_exact_reads, counters, write_counters_by_hand

FOLD = "SELECT * FROM selfology.selfology_counters_fold_v1()"
BOT_INSERT = (
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
    " SELECT $1, 'q' || g, 'a' FROM generate_series(1, $2) g"
)


async def first_answer(conn: asyncpg.Connection, session_id: int) -> int:
    return await conn.fetchval(
        "SELECT min(id) FROM selfology.user_answers_new WHERE session_id = $1", session_id
    )


async def test_every_change_kind_reads_exact_before_and_after_folding(
    conn: asyncpg.Connection,
) -> None:
    await deferred.set_mode(conn, model.DEFERRED)
    s1, s2, s3 = [await new_session(conn, user) for user in (1, 1, 2)]
    await conn.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (1)")

    async def step(statement: str, *args: object) -> None:
        for session in (s1, s2, s3):  # the newest answers of every session: pending
            await conn.execute(BOT_INSERT, session, 2)
        await conn.execute(statement, *args)
        await assert_exact_reads(conn)
        # ... and the same kind of change again on answers that are folded by now
        await conn.fetch(FOLD)
        await assert_exact(conn)
        await conn.execute(statement, *args)
        await assert_exact_reads(conn)
        await conn.fetch(FOLD)
        await assert_exact(conn)

    await step(BOT_INSERT, s1, 1)  # single-row, user_id filled in by the database
    await step(BOT_INSERT, s2, 5)  # multi-row
    await conn.copy_records_to_table(
        "user_answers_new",
        schema_name="selfology",
        records=[(s3, 2, "copy", "a", 1)] * 3,
        columns=["session_id", "user_id", "question_json_id", "raw_answer", "answer_length"],
    )
    await assert_exact_reads(conn)
    await step(
        "DELETE FROM selfology.user_answers_new WHERE id = (SELECT max(id) FROM "
        "selfology.user_answers_new WHERE session_id = $1)",
        s2,
    )
    move = (
        "UPDATE selfology.user_answers_new SET session_id = $2 WHERE id = (SELECT max(id)"
        " FROM selfology.user_answers_new WHERE session_id = $1)"
    )
    await step(move, s2, s1)  # to another session of the same user
    await step(move, s1, s3)  # to a session of another user
    await step("UPDATE selfology.onboarding_sessions SET user_id = 3 - user_id WHERE id = $1", s3)
    await conn.execute(BOT_INSERT, s2, 4)
    await conn.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (2)")
    await assert_exact_reads(conn)  # a late personality row, with answers pending
    await conn.execute("DELETE FROM selfology.onboarding_sessions WHERE id = $1", s2)  # cascade
    await assert_exact_reads(conn)
    await conn.fetch(FOLD)
    await assert_exact(conn)
    await conn.execute(BOT_INSERT, s1, 3)
    await conn.execute("TRUNCATE selfology.user_answers_new")
    await assert_exact_reads(conn)
    await conn.fetch(FOLD)
    await assert_exact(conn)
    assert await counters(conn, s1, 1) == (0, 0, 0)


async def test_switching_modes_keeps_every_count(conn: asyncpg.Connection) -> None:
    session = await new_session(conn, 7)
    await conn.execute(BOT_INSERT, session, 3)  # counted by the immediate triggers
    switched = await deferred.set_mode(conn, model.DEFERRED)
    assert switched.mode == model.DEFERRED
    await conn.execute(BOT_INSERT, session, 4)  # pending
    assert (await deferred.state(conn)).pending == 4
    assert await conn.fetchval("SELECT selfology.answers_of_user(7)") == 7
    assert (
        await conn.fetchval(
            "SELECT total_answers_lifetime FROM selfology.user_stats WHERE user_id = 7"
        )
        == 3
    )  # the raw column lags until a fold
    back = await deferred.set_mode(conn, model.IMMEDIATE)  # folds what is pending
    assert (back.mode, back.pending) == (model.IMMEDIATE, 0)
    await assert_exact(conn)
    assert (await deferred.set_mode(conn, model.IMMEDIATE)).mode == model.IMMEDIATE  # no-op


async def test_a_switch_keeps_a_subscribers_enable_always(conn: asyncpg.Connection) -> None:
    """Our triggers made ENABLE ALWAYS count the writes of sessions that set
    session_replication_role = replica (a data-only restore); a round trip through deferred
    mode must leave the insert trigger so, or those inserts stop being counted. (Logical
    replication's apply worker fires no statement trigger even so: test_replication.py.)"""
    for trigger in model.TRIGGERS:
        await conn.execute(
            f"ALTER TABLE selfology.{trigger.table} ENABLE ALWAYS TRIGGER {trigger.name}"
        )
    await deferred.set_mode(conn, model.DEFERRED)
    await deferred.set_mode(conn, model.IMMEDIATE)
    session = await new_session(conn, 8)
    await conn.execute("SET session_replication_role = replica")
    await conn.execute(
        "INSERT INTO selfology.user_answers_new (session_id, user_id, question_json_id, raw_answer)"
        " VALUES ($1, 8, 'q', 'a')",
        session,
    )
    await conn.execute("RESET session_replication_role")
    await assert_exact(conn)


async def test_check_and_repair_in_deferred_mode(conn: asyncpg.Connection) -> None:
    await deferred.set_mode(conn, model.DEFERRED)
    session = await new_session(conn, 5)
    await conn.execute(BOT_INSERT, session, 6)
    await conn.fetch(FOLD)
    await conn.execute(BOT_INSERT, session, 2)  # pending: not drift
    found = await health.check(conn)
    assert found.consistent and found.mode == model.DEFERRED
    await write_counters_by_hand(
        conn, "UPDATE selfology.user_stats SET total_answers_lifetime = 40 WHERE user_id = 5"
    )
    found = await health.check(conn)
    assert [(i.counter, i.stored, i.pending, i.actual, i.drift) for i in found.issues] == [
        (model.USER_STATS.name, 40, 2, 8, 34)
    ]
    repaired = await health.repair(conn)
    assert [(c.before, c.after) for c in repaired.changes] == [(40, 6)]  # the folded part
    assert (await health.check(conn)).consistent
    await assert_exact_reads(conn)


async def test_the_insert_trigger_on_in_deferred_mode_is_reported_and_repaired(
    conn: asyncpg.Connection,
) -> None:
    await deferred.set_mode(conn, model.DEFERRED)
    insert = model.TRIGGER["insert"]
    await conn.execute(f"ALTER TABLE selfology.user_answers_new ENABLE TRIGGER {insert.name}")
    session = await new_session(conn, 9)
    await conn.execute(BOT_INSERT, session, 2)  # counted now AND pending: twice
    found = await health.check(conn)
    assert [(o.name, o.state.value) for o in found.objects if not o.healthy] == [
        (insert.name, "enabled")
    ]
    assert not found.counters_consistent
    repaired = await health.repair(conn)
    assert repaired.triggers_disabled == [insert.label]
    assert (await health.check(conn)).consistent
    await assert_exact_reads(conn)


async def test_writers_on_one_user_while_workers_fold_and_the_mode_flips(db: str) -> None:
    """100 writers on one user; two workers fold; the mode is switched back and forth; a
    reader checks, in one snapshot each time, that the exact read equals COUNT(*)."""
    setup = await asyncpg.connect(db)
    sessions = [await new_session(setup, 1) for _ in range(10)]
    await setup.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (1)")
    await deferred.set_mode(setup, model.DEFERRED)
    # 100 writers where the server has room (the embedded one does); fewer on a smaller one.
    room = await setup.fetchval(
        "SELECT current_setting('max_connections')::int - count(*) - 6 FROM pg_stat_activity"
    )
    writers = min(100, room)
    pool = await asyncpg.create_pool(db, min_size=writers, max_size=writers)
    stop = asyncio.Event()
    workers = [deferred.Worker(db, interval_s=0.01) for _ in range(2)]
    worker_tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    reads: list[tuple[int, int]] = []

    async def writer(index: int) -> None:
        for k in range(5):
            await pool.execute(BOT_INSERT, sessions[(index + k) % 10], 1)

    async def reader() -> None:
        async with pool.acquire() as connection:
            while not stop.is_set():
                reads.append(
                    tuple(
                        await connection.fetchrow(
                            "SELECT selfology.answers_of_user(1), (SELECT count(*) FROM"
                            " selfology.user_answers_new WHERE user_id = 1)"
                        )
                    )
                )
                await asyncio.sleep(0)

    async def flipper() -> None:
        async with pool.acquire() as connection:
            for flip in range(6):
                mode = model.IMMEDIATE if flip % 2 == 0 else model.DEFERRED
                await deferred.set_mode(connection, mode)
                await asyncio.sleep(0.02)

    reading = asyncio.create_task(reader())
    try:
        await asyncio.gather(*(writer(i) for i in range(100)), flipper())
    finally:
        stop.set()
        await reading
        await asyncio.gather(*worker_tasks)
        await pool.close()
    try:
        assert reads and all(read == actual for read, actual in reads), [
            r for r in reads if r[0] != r[1]
        ][:5]
        assert sum(w.summary.folds for w in workers) > 0
        await deferred.set_mode(setup, model.IMMEDIATE)
        await assert_exact(setup)
        assert (
            await setup.fetchval(
                "SELECT total_answers_lifetime FROM selfology.user_stats WHERE user_id = 1"
            )
            == 100 * 5
        )
    finally:
        await setup.close()


@pytest.mark.parametrize("how", ["kill -9 the worker", "terminate its backend"])
async def test_a_worker_killed_mid_fold_loses_and_doubles_nothing(
    db: str, conn: asyncpg.Connection, how: str
) -> None:
    await deferred.set_mode(conn, model.DEFERRED)
    sessions = [await new_session(conn, user) for user in range(1, 51)]
    await conn.execute(
        "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
        " SELECT s, 'q' || g, 'a' FROM unnest($1::bigint[]) s, generate_series(1, 4000) g",
        sessions,
    )  # 200,000 pending answers: a fold that takes a moment
    env = {**os.environ, "SELFOLOGY_DSN": db}
    worker = subprocess.Popen([CLI, "worker"], env=env, stderr=subprocess.DEVNULL)
    try:
        backend = await wait_for_fold(conn)
        if how == "kill -9 the worker":
            worker.send_signal(signal.SIGKILL)
        else:
            await conn.execute("SELECT pg_terminate_backend($1)", backend)
    finally:
        if how != "kill -9 the worker":
            worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    await wait_until_gone(conn, backend)
    await assert_exact_reads(conn)  # folded entirely or not at all
    done = subprocess.run(
        [CLI, "worker", "--once", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    await assert_exact(conn)
    assert (await deferred.state(conn)).pending == 0


async def wait_for_fold(conn: asyncpg.Connection) -> int:
    """The backend pid of the worker once its fold is running."""
    for _ in range(600):
        pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
            " AND state = 'active' AND query LIKE '%fold%'",
            deferred.APPLICATION_NAME,
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.01 + random.random() * 0.01)
    raise AssertionError("the worker never started folding")


async def wait_until_gone(conn: asyncpg.Connection, pid: int) -> None:
    for _ in range(3000):
        if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} still there")
