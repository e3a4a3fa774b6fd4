"""Deferred mode as an operator meets it (issue 19): a transaction opened before a switch of
mode, a transaction in another database, an idle session holding a row the fold needs, a
switch stuck behind a long write, a database restart under the worker, a changed xid
default, a check during a switch. Counters stay exact; what cannot be counted right fails
with a serialization error; every wait of ours is bounded and named."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from selfology_counters import deferred, health, lifecycle, model
from selfology_counters.errors import FoldStalledError, SchemaMissingError
from tests.rows import new_session
from tests.test_roles import as_role
from tests.truth import assert_exact, assert_exact_reads

BOT_INSERT = (
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
    " SELECT $1, 'q' || g, 'a' FROM generate_series(1, $2) g"
)


async def pending(conn: asyncpg.Connection) -> int:
    return (await deferred.state(conn)).pending


@pytest.mark.parametrize("isolation", ["repeatable_read", "serializable"])
@pytest.mark.parametrize("to_mode", model.MODES)
async def test_a_transaction_older_than_a_switch_is_refused_or_counted_right(
    db: str, conn: asyncpg.Connection, isolation: str, to_mode: str
) -> None:
    s1, s2 = await new_session(conn, 1), await new_session(conn, 2)
    await conn.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (1)")
    await conn.execute(BOT_INSERT, s1, 2)
    await deferred.set_mode(conn, model.IMMEDIATE if to_mode == model.DEFERRED else model.DEFERRED)
    old = await asyncpg.connect(db)
    try:
        tx = old.transaction(isolation=isolation)
        await tx.start()
        await old.fetchval("SELECT count(*) FROM selfology.counter_mode")  # its snapshot
        await deferred.set_mode(conn, to_mode)  # the switch commits after that snapshot
        try:
            await old.execute(BOT_INSERT, s1, 2)
            await old.execute(
                "DELETE FROM selfology.user_answers_new WHERE id ="
                " (SELECT max(id) FROM selfology.user_answers_new WHERE session_id = $1)",
                s1,
            )
            await old.execute(
                "UPDATE selfology.user_answers_new SET session_id = $2 WHERE id ="
                " (SELECT min(id) FROM selfology.user_answers_new WHERE session_id = $1)",
                s1,
                s2,
            )
            await old.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (2)")
            await tx.commit()
        except asyncpg.SerializationError:
            await tx.rollback()  # refused: the application retries, nothing was counted
    finally:
        await old.close()
    await assert_exact_reads(conn)
    await deferred.set_mode(conn, model.IMMEDIATE)  # folds whatever is pending
    await assert_exact(conn)


async def test_a_transaction_in_another_database_does_not_hold_the_fold_back(
    conn: asyncpg.Connection, second_db: str
) -> None:
    elsewhere = await asyncpg.connect(second_db)
    try:
        tx = elsewhere.transaction()
        await tx.start()
        await elsewhere.fetchval("SELECT pg_current_xact_id()")  # an xid, held open
        await deferred.set_mode(conn, model.DEFERRED)
        session = await new_session(conn, 1)
        await conn.execute(BOT_INSERT, session, 5)
        folded = await deferred.fold_once(conn)
        assert (folded.folded, await pending(conn)) == (5, 0)
        assert (await deferred.state(conn)).held_back_by is None
        await assert_exact(conn)
        await tx.rollback()
    finally:
        await elsewhere.close()


async def test_a_transaction_of_this_database_holds_the_fold_and_is_named(
    db: str, conn: asyncpg.Connection
) -> None:
    await deferred.set_mode(conn, model.DEFERRED)
    session = await new_session(conn, 1)
    holder = await asyncpg.connect(db)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(BOT_INSERT, session, 1)  # an answer not final yet
        await conn.execute(BOT_INSERT, session, 3)
        assert (await deferred.fold_once(conn)).folded == 0  # held back by the older writer
        stuck_at = (await deferred.state(conn)).last_fold_at
        await asyncio.sleep(1.1)
        assert (await deferred.fold_once(conn)).folded == 0
        state = await deferred.state(conn)
        assert (
            state.held_back_by is not None and state.held_back_by["pid"] == holder.get_server_pid()
        )
        assert state.last_fold_at == stuck_at  # a held-back fold does not look alive
        await tx.commit()
    finally:
        await holder.close()
    assert (await deferred.fold_once(conn)).folded == 4
    await assert_exact(conn)


async def test_a_prepared_transaction_holding_the_fold_is_named(
    db: str, conn: asyncpg.Connection
) -> None:
    if int(await conn.fetchval("SHOW max_prepared_transactions")) == 0:
        pytest.skip("max_prepared_transactions is 0 on this server")
    await deferred.set_mode(conn, model.DEFERRED)
    session = await new_session(conn, 1)
    holder = await asyncpg.connect(db)
    gid = f"sc_held_{holder.get_server_pid()}"
    try:
        await holder.execute(
            f"BEGIN; {BOT_INSERT.replace('$1', str(session)).replace('$2', '2')};"
            f" PREPARE TRANSACTION '{gid}'"
        )
        await asyncio.sleep(1.1)
        state = await deferred.state(conn)
        assert state.held_back_by is not None and state.held_back_by["gid"] == gid
        await conn.execute(f"COMMIT PREPARED '{gid}'")
    finally:
        if await conn.fetchval("SELECT count(*) FROM pg_prepared_xacts WHERE gid = $1", gid):
            await conn.execute(f"ROLLBACK PREPARED '{gid}'")  # the test failed midway
        await holder.close()
    assert (await deferred.fold_once(conn)).folded == 2
    await assert_exact(conn)


async def test_an_idle_session_holding_a_row_the_fold_needs_stops_no_delete(
    db: str, conn: asyncpg.Connection
) -> None:
    await deferred.set_mode(conn, model.DEFERRED)
    session, other = await new_session(conn, 1), await new_session(conn, 2)
    await conn.execute(BOT_INSERT, session, 3)
    await conn.execute(BOT_INSERT, other, 3)
    await deferred.fold_once(conn)
    await conn.execute(BOT_INSERT, session, 2)  # pending, for a session that will be held
    idle = await asyncpg.connect(db)
    try:
        tx = idle.transaction()
        await tx.start()
        await idle.execute(
            "UPDATE selfology.onboarding_sessions SET status = 'active' WHERE id = $1", session
        )
        started = time.perf_counter()
        assert (await deferred.fold_once(conn)).busy  # gives up after its lock_timeout
        # A delete of another user's answer does not wait behind the fold.
        await conn.execute(
            "DELETE FROM selfology.user_answers_new WHERE id ="
            " (SELECT min(id) FROM selfology.user_answers_new WHERE session_id = $1)",
            other,
        )
        assert time.perf_counter() - started < 5
        await tx.commit()
    finally:
        await idle.close()
    assert (await deferred.fold_once(conn)).folded == 2
    await assert_exact(conn)


async def test_a_switch_behind_a_long_write_lets_writers_through(
    db: str, conn: asyncpg.Connection
) -> None:
    session, other = await new_session(conn, 1), await new_session(conn, 2)
    long_writer = await asyncpg.connect(db)
    try:
        tx = long_writer.transaction()
        await tx.start()
        await long_writer.execute(BOT_INSERT, session, 1)  # holds the answers' ROW EXCLUSIVE
        switch = asyncio.create_task(deferred.set_mode(conn, model.DEFERRED))
        await asyncio.sleep(0.5)  # the switch waits (and gives way, retrying)
        writer = await asyncpg.connect(db)
        try:
            started = time.perf_counter()
            # Another user's answer (the long write holds its own user's counter rows): not
            # queued behind the switch for longer than its lock_timeout.
            await writer.execute(BOT_INSERT, other, 1)
            assert time.perf_counter() - started < 2
        finally:
            await writer.close()
        await tx.commit()
        assert (await switch).mode == model.DEFERRED
    finally:
        await long_writer.close()
    await assert_exact_reads(conn)


async def test_worker_once_says_why_it_cannot_fold(db: str, conn: asyncpg.Connection) -> None:
    await conn.execute("DROP SCHEMA selfology CASCADE")
    with pytest.raises((SchemaMissingError, asyncpg.InvalidSchemaNameError)):
        await asyncio.wait_for(deferred.Worker(db).run(asyncio.Event(), once=True), 30)


async def test_worker_once_gives_up_on_a_busy_fold(
    db: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deferred, "ONCE_GIVES_UP_AFTER_S", 1.0)
    await deferred.set_mode(conn, model.DEFERRED)
    async with conn.transaction():
        await conn.execute("SELECT * FROM selfology.counter_mode FOR UPDATE")  # a fold's turn
        with pytest.raises(FoldStalledError, match="busy"):
            await asyncio.wait_for(
                deferred.Worker(db, interval_s=0.05).run(asyncio.Event(), once=True), 30
            )


async def test_the_worker_outlives_a_database_that_goes_away(
    server_dsn: str, db: str, conn: asyncpg.Connection
) -> None:
    """An outage: the worker's connection killed, and for a while no login is possible (as
    while the server restarts); the worker waits it out and folds everything."""
    await deferred.set_mode(conn, model.DEFERRED)
    session = await new_session(conn, 1)
    role = f"sc_w{uuid.uuid4().hex[:10]}"  # generated here, never from input
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    errors: list[str] = []
    stop = asyncio.Event()
    try:
        worker = deferred.Worker(
            as_role(db, role, "unused"), interval_s=0.05, on_error=errors.append
        )
        running = asyncio.create_task(worker.run(stop))
        await conn.execute(BOT_INSERT, session, 2)
        await admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
        # Until the worker has met the outage (its connection killed, a new one refused):
        # waited for as an event, not for a time, so that a loaded machine changes nothing.
        for _ in range(600):
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1 AND datname = current_database()",
                deferred.APPLICATION_NAME,
            )
            if any("DatabaseUnavailableError" in e for e in errors):
                break
            await asyncio.sleep(0.05)
        await admin.execute(f'ALTER ROLE "{role}" LOGIN')
        await conn.execute(BOT_INSERT, session, 3)
        for _ in range(600):
            if await pending(conn) == 0:
                break
            await asyncio.sleep(0.05)
        stop.set()
        summary = await asyncio.wait_for(running, 30)
    finally:
        stop.set()
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
        await asyncio.sleep(0.2)
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
    assert any("DatabaseUnavailableError" in e for e in errors), errors
    assert summary.folded == 5
    await assert_exact(conn)


async def test_an_xid_default_changed_by_hand_is_a_problem_and_migrate_restores_it(
    db: str, conn: asyncpg.Connection
) -> None:
    await conn.execute("ALTER TABLE selfology.user_answers_new ALTER COLUMN xid SET DEFAULT 0")
    found = await health.check(conn)
    assert not found.consistent
    assert any("xid defaults to 0" in p for p in found.problems)
    await lifecycle.apply(db)
    assert (await health.check(conn)).consistent
    await deferred.set_mode(conn, model.DEFERRED)
    await conn.execute(BOT_INSERT, await new_session(conn, 1), 2)
    assert await pending(conn) == 2


async def test_check_during_switches_never_sees_half_a_switch(
    db: str, conn: asyncpg.Connection
) -> None:
    switcher = await asyncpg.connect(db)
    verdicts: list[bool] = []
    try:

        async def flip() -> None:
            for i in range(20):
                await deferred.set_mode(switcher, model.MODES[i % 2])

        async def look() -> None:
            for _ in range(40):
                verdicts.append((await health.check(conn)).triggers_healthy)

        await asyncio.gather(flip(), look())
    finally:
        await switcher.close()
    assert all(verdicts), verdicts.count(False)


async def test_repair_acting_on_an_audit_from_before_a_switch_follows_the_switch(
    conn: asyncpg.Connection,
) -> None:
    session = await new_session(conn, 1)
    insert = model.TRIGGER["insert"]
    await conn.execute(f"ALTER TABLE selfology.{insert.table} DISABLE TRIGGER {insert.name}")
    found = await health.check(conn)  # immediate mode: the insert trigger should be on
    assert not found.triggers_healthy
    await deferred.set_mode(conn, model.DEFERRED)  # ... and now it should be off
    await health.repair(conn, found=found)  # the audit it was given is stale
    after = await health.check(conn)
    assert after.triggers_healthy, [o.as_dict() for o in after.objects if not o.healthy]
    await conn.execute(BOT_INSERT, session, 3)
    await assert_exact_reads(conn)
    await deferred.fold_once(conn)
    await assert_exact(conn)


async def test_a_horizon_restored_from_another_cluster_is_refused_with_the_way_out(
    conn: asyncpg.Connection,
) -> None:
    """A restore copies the mode row as it was: into a cluster whose transaction ids are
    lower, its horizon lies above every new answer's id. Simulated by moving the horizon (and
    the folded answers' ids) past this cluster's ids, as such a restore leaves them."""
    await deferred.set_mode(conn, model.DEFERRED)
    session = await new_session(conn, 1)
    await conn.execute(BOT_INSERT, session, 3)
    await deferred.fold_once(conn)
    await conn.execute(BOT_INSERT, session, 2)  # pending when the dump was taken
    await conn.execute(
        "UPDATE selfology.user_answers_new SET xid = xid + 1000000000;"
        "UPDATE selfology.counter_mode SET horizon = horizon + 1000000000"
    )
    await conn.execute(BOT_INSERT, session, 4)  # written after the restore: never counted
    found = await health.check(conn)
    assert not found.consistent
    assert any("restored from another cluster" in p for p in found.problems)
    with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="another cluster"):
        await deferred.fold_once(conn)
    # The way out the message names.
    await deferred.set_mode(conn, model.IMMEDIATE)
    await health.repair(conn)
    await deferred.set_mode(conn, model.DEFERRED)
    assert (await health.check(conn)).consistent
    await conn.execute(BOT_INSERT, session, 5)
    await assert_exact_reads(conn)
    assert (await deferred.fold_once(conn)).folded == 5
    await assert_exact(conn)


async def test_updates_that_move_nothing_never_keep_the_fold_waiting(
    db: str, conn: asyncpg.Connection
) -> None:
    """The bot marks every answer analysed (UPDATE ... SET analysis_status): such an update
    changes no count, so it takes no lock on the mode row that a fold would find busy."""
    await deferred.set_mode(conn, model.DEFERRED)
    session = await new_session(conn, 1)
    await conn.execute(BOT_INSERT, session, 3)
    await deferred.fold_once(conn)
    await conn.execute(BOT_INSERT, session, 2)
    updater = await asyncpg.connect(db)
    try:
        async with updater.transaction():
            await updater.execute(
                "UPDATE selfology.user_answers_new SET raw_answer = raw_answer || '!'"
                " WHERE session_id = $1",
                session,
            )
            folded = await deferred.fold_once(conn)  # while that transaction is open
            assert (folded.busy, folded.folded) == (False, 2)
    finally:
        await updater.close()
    await assert_exact(conn)


async def test_a_storm_of_deletes_does_not_starve_the_fold(
    db: str, conn: asyncpg.Connection
) -> None:
    """Deletes read the horizon under the fold's turn taken shared; eight deleters whose
    transactions overlap hold it all the time. A fold waiting for the turn queues the next
    deletes behind it, so it gets its turn (a share lock on the mode row let them starve it)."""
    await deferred.set_mode(conn, model.DEFERRED)
    sessions = [await new_session(conn, user) for user in range(1, 9)]
    for session in sessions:
        await conn.execute(BOT_INSERT, session, 200)
    await deferred.fold_once(conn)
    stop = asyncio.Event()

    async def delete_slowly(session: int) -> None:
        deleter = await asyncpg.connect(db)
        try:
            while not stop.is_set():
                async with deleter.transaction():
                    await deleter.execute(
                        "DELETE FROM selfology.user_answers_new WHERE id ="
                        " (SELECT min(id) FROM selfology.user_answers_new WHERE session_id = $1)",
                        session,
                    )
                    await asyncio.sleep(0.05)  # holds what the delete took until it commits
        finally:
            await deleter.close()

    storm = [asyncio.create_task(delete_slowly(s)) for s in sessions]
    try:
        await asyncio.sleep(0.3)
        outcomes = []
        for _ in range(15):
            await conn.execute(BOT_INSERT, sessions[0], 1)
            outcomes.append(await deferred.fold_once(conn))
        stop.set()
        await asyncio.gather(*storm)
    finally:
        stop.set()
    folds = [o for o in outcomes if not o.busy]
    assert len(folds) >= 10, f"{len(outcomes) - len(folds)} of {len(outcomes)} folds were busy"
    await deferred.fold_once(conn)
    assert await pending(conn) == 0
    await assert_exact(conn)


# A session's cascades (delete, or a move to another user) lock the session row first and the
# answers after; a fold or a switch locks the answers' side first and the counter rows after.
HOLD_SESSION = "UPDATE selfology.onboarding_sessions SET status = 'active' WHERE id = $1"
CASCADES = {
    "delete": "DELETE FROM selfology.onboarding_sessions WHERE id = $1",
    "user-change": "UPDATE selfology.onboarding_sessions SET user_id = user_id + 100 WHERE id = $1",
}


async def _waits_for_a_lock(conn: asyncpg.Connection, pid: int) -> None:
    """Until backend ``pid`` waits for a lock (an event, not a time)."""
    for _ in range(2000):
        if await conn.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        ):
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"backend {pid} never waited for a lock")


# Long enough that a cycle lasting until the deadlock detector breaks it shows as a wait far
# longer than the lock_timeout with which ours gives way.
SLOW_DETECTOR_S = 20
SLOW_DETECTOR = {"deadlock_timeout": f"{SLOW_DETECTOR_S}s"}


async def _cascade_meets(
    db: str, conn: asyncpg.Connection, cascade: str, ours: Callable[[asyncpg.Connection], Any]
) -> Any:
    """The bot's transaction holds a session row, our operation (``ours``, on a connection of
    its own) comes to wait for that row, then the bot's cascade needs what ours holds: a
    deadlock unless ours gives way. The bot's statements must all succeed, without waiting
    for the deadlock detector."""
    session = await conn.fetchval("SELECT min(id) FROM selfology.onboarding_sessions")
    bot = await asyncpg.connect(db, server_settings=SLOW_DETECTOR)
    operator = await asyncpg.connect(db, server_settings=SLOW_DETECTOR)
    try:
        tx = bot.transaction()
        await tx.start()
        await bot.execute(HOLD_SESSION, session)
        running = asyncio.create_task(ours(operator))
        await _waits_for_a_lock(conn, operator.get_server_pid())
        started = time.perf_counter()
        await bot.execute(CASCADES[cascade], session)
        waited = time.perf_counter() - started
        await tx.commit()
        assert waited < SLOW_DETECTOR_S / 2, f"the bot's cascade waited {waited:.1f} s"
        return await asyncio.wait_for(running, 60)
    finally:
        await bot.close()
        await operator.close()


@pytest.mark.parametrize("cascade", CASCADES)
async def test_a_fold_gives_way_to_a_sessions_cascade(
    db: str, conn: asyncpg.Connection, cascade: str
) -> None:
    await deferred.set_mode(conn, model.DEFERRED)
    session = await new_session(conn, 1)
    await conn.execute(BOT_INSERT, session, 3)
    await deferred.fold_once(conn)
    await conn.execute(BOT_INSERT, session, 2)  # pending: the fold must write the session
    result = await _cascade_meets(db, conn, cascade, deferred.fold_once)
    assert result.busy  # gave way after its lock_timeout; the next fold folds
    assert not (await deferred.fold_once(conn)).busy
    assert await pending(conn) == 0
    await assert_exact(conn)


@pytest.mark.parametrize("cascade", CASCADES)
async def test_a_switch_to_immediate_gives_way_to_a_sessions_cascade(
    db: str, conn: asyncpg.Connection, cascade: str
) -> None:
    await deferred.set_mode(conn, model.DEFERRED)
    session = await new_session(conn, 1)
    await conn.execute(BOT_INSERT, session, 3)  # pending: the switch folds them
    await conn.execute(BOT_INSERT, await new_session(conn, 2), 2)

    async def switch(operator: asyncpg.Connection) -> deferred.ModeState:
        return await deferred.set_mode(operator, model.IMMEDIATE)

    result = await _cascade_meets(db, conn, cascade, switch)
    assert result.mode == model.IMMEDIATE  # retried until it got its locks
    await assert_exact(conn)
