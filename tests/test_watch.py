"""watch as a library: what each check finds, repairs and reports, and a database going away."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from selfology_counters import deferred, model, stats
from selfology_counters.metrics import WatchMetrics
from selfology_counters.watch import CheckOutcome, Scope, Watch, WatchSettings
from tests.processes import CLI, WatchProcess
from tests.proxy import TcpProxy
from tests.truth import assert_exact, mismatches, write_counters_by_hand
from tests.waiting import wait_until_blocked

BOT_INSERT = (
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
    " SELECT id, 'late', 'x' FROM selfology.onboarding_sessions WHERE user_id = $1"
)
INSERT_TRIGGER = model.TRIGGER["insert"].name


class Events:
    """The watch's log: every line kept, and awaitable by event."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def __call__(self, event: str, **fields: Any) -> None:
        line = {"event": event, **fields}
        self.lines.append(line)
        self._queue.put_nowait(line)

    async def next(self, event: str, **match: Any) -> dict[str, Any]:
        """The next line of ``event`` whose fields include ``match`` (earlier ones dropped)."""
        while True:
            line = await asyncio.wait_for(self._queue.get(), timeout=30)
            if line["event"] == event and match.items() <= line.items():
                return line


def sample(metrics: WatchMetrics, metric: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(metric, labels)


def inconsistent(metrics: WatchMetrics, scope: str) -> dict[str, float | None]:
    return {
        c.name: sample(metrics, "inconsistent_counters_total", scope=scope, counter=c.name)
        for c in model.COUNTERS
    }


async def populate(conn: asyncpg.Connection, users: int = 4) -> None:
    """One session of two answers per user, and a personality row for each."""
    await conn.execute(
        "INSERT INTO selfology.onboarding_sessions (user_id) SELECT generate_series(1, $1)", users
    )
    await conn.execute(
        "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
        " SELECT s.id, 'q' || g, 'a' FROM selfology.onboarding_sessions s, generate_series(1, 2) g"
    )
    await conn.execute(
        "INSERT INTO selfology.digital_personality (user_id) SELECT generate_series(1, $1)", users
    )


async def insert_past_the_trigger(conn: asyncpg.Connection, user_id: int) -> None:
    """An answer the counters never see (as while a trigger was disabled): drift in three."""
    await conn.execute(f"ALTER TABLE selfology.user_answers_new DISABLE TRIGGER {INSERT_TRIGGER}")
    await conn.execute(BOT_INSERT, user_id)
    await conn.execute(f"ALTER TABLE selfology.user_answers_new ENABLE TRIGGER {INSERT_TRIGGER}")


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def make_watch(db: str, events: Events) -> AsyncIterator[Any]:
    made: list[Watch] = []

    def make(auto_repair_max: int = 0, dsn: str = db) -> Watch:
        settings = WatchSettings(quick_interval=0.05, auto_repair_max=auto_repair_max)
        made.append(Watch(dsn, settings, WatchMetrics(), events))
        return made[-1]

    yield make
    for watch in made:
        await watch.close()


async def test_a_full_check_sets_every_gauge_and_logs_one_line(
    conn: asyncpg.Connection, make_watch: Any, events: Events
) -> None:
    await populate(conn)
    watch = make_watch()
    assert await watch.check(Scope.FULL) == CheckOutcome(Scope.FULL, True)
    m = watch.metrics
    assert sample(m, "counter_database_up") == 1
    assert sample(m, "counter_consistency_rate", scope="full") == 1
    assert set(inconsistent(m, "full").values()) == {0}
    checked = {
        c.name: sample(m, "counters_checked", scope="full", counter=c.name) for c in model.COUNTERS
    }
    assert checked == dict.fromkeys(checked, 4)
    for obj in model.OBJECTS:
        labels = {"kind": obj.kind, "name": obj.name, "table": obj.table or ""}
        for gauge in ("installed", "current", "enabled"):
            assert sample(m, f"counter_object_{gauge}", **labels) == 1, (gauge, labels)
        assert sample(m, "counter_object_state", **labels, state="current") == 1
        assert sample(m, "counter_object_state", **labels, state="missing") == 0
    assert sample(m, "counter_foreign_triggers") == 0
    assert sample(m, "counter_lock_waiters") == 0
    assert sample(m, "counter_last_check_success_timestamp_seconds", scope="full") is not None
    assert sample(m, "counter_last_repair_timestamp_seconds") == 0  # never (none was needed)
    [line] = events.lines
    assert line["event"] == "check" and line["ok"] and line["scope"] == "full"
    assert line["checked"] == {"sessions": 4, "users": 4, "personalities": 4}


async def test_the_deferred_backlog_and_the_last_fold_are_served(
    conn: asyncpg.Connection, make_watch: Any
) -> None:
    await populate(conn)
    await deferred.set_mode(conn, model.DEFERRED)
    session = await conn.fetchval("SELECT min(id) FROM selfology.onboarding_sessions")
    await conn.execute(
        "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
        " SELECT $1, 'p' || g, 'a' FROM generate_series(1, 3) g",
        session,
    )
    watch = make_watch()
    assert (await watch.check(Scope.FULL)).ok
    assert sample(watch.metrics, "counter_pending_deltas") == 3
    assert (sample(watch.metrics, "counter_oldest_pending_seconds") or 0) > 0
    assert sample(watch.metrics, "counter_worker_last_fold_timestamp_seconds") == 0
    await deferred.fold_once(conn)
    assert (await watch.check(Scope.FULL)).ok
    assert sample(watch.metrics, "counter_pending_deltas") == 0
    assert (sample(watch.metrics, "counter_worker_last_fold_timestamp_seconds") or 0) > 0


async def test_the_quick_check_sees_new_answers_that_slipped_past_a_trigger(
    conn: asyncpg.Connection, make_watch: Any, events: Events
) -> None:
    await populate(conn)
    watch = make_watch()
    await watch.check(Scope.FULL)
    await insert_past_the_trigger(conn, 2)
    # A hand edit of a counter with no new answer is the full check's to find.
    await write_counters_by_hand(
        conn, "UPDATE selfology.user_stats SET total_answers_lifetime = 7 WHERE user_id = 3"
    )
    quick = await watch.check(Scope.RECENT)
    assert (quick.ok, quick.inconsistent, quick.repaired) == (True, 3, None)
    assert "auto-repair-max 0" in quick.held_back
    assert events.lines[-2]["users"] == 1
    assert set(inconsistent(watch.metrics, "recent").values()) == {1}
    assert sample(watch.metrics, "counter_consistency_rate", scope="recent") == 0
    assert sample(watch.metrics, "counter_auto_repair_limit_exceeded", scope="recent") == 1
    full = await watch.check(Scope.FULL)
    assert full.inconsistent == 4
    assert inconsistent(watch.metrics, "full")["user_stats.total_answers_lifetime"] == 2
    assert sample(watch.metrics, "counter_consistency_rate", scope="full") == pytest.approx(8 / 12)
    assert len(await mismatches(conn)) == 4  # nothing was repaired
    # The next quick check still covers user 2's answer (one interval of overlap), then not.
    assert (await watch.check(Scope.RECENT)).inconsistent == 3
    assert (await watch.check(Scope.RECENT)).inconsistent == 0


async def test_drift_within_the_limit_is_repaired_and_the_gauges_return_to_one(
    conn: asyncpg.Connection, make_watch: Any, events: Events
) -> None:
    await populate(conn)
    watch = make_watch(auto_repair_max=4)
    await watch.check(Scope.FULL)
    await write_counters_by_hand(
        conn, "UPDATE selfology.onboarding_sessions SET questions_answered = 9"
    )
    await insert_past_the_trigger(conn, 1)  # its session is wrong already: 3 more counters
    outcome = await watch.check(Scope.FULL)
    assert outcome.inconsistent == 6  # four sessions, user 1's stats and personality
    assert outcome.repaired is None and "more than --auto-repair-max 4" in outcome.held_back
    await write_counters_by_hand(
        conn, "UPDATE selfology.onboarding_sessions SET questions_answered = 2 WHERE user_id > 1"
    )
    outcome = await watch.check(Scope.FULL)
    assert (outcome.inconsistent, outcome.repaired, outcome.held_back) == (3, 3, "")
    await assert_exact(conn)
    m = watch.metrics
    assert sample(m, "counter_consistency_rate", scope="full") == 1
    assert set(inconsistent(m, "full").values()) == {0}
    assert sample(m, "counter_repaired_counters_total") == 3
    assert sample(m, "counter_last_repair_timestamp_seconds") > 0
    assert sample(m, "counter_auto_repair_limit_exceeded", scope="full") == 0
    repair = await events.next("repair")
    assert (repair["changed"], repair["inconsistent_after"]) == (3, 0)


async def test_drift_beside_a_disabled_trigger_is_left_to_a_person(
    conn: asyncpg.Connection, make_watch: Any
) -> None:
    await populate(conn)
    watch = make_watch(auto_repair_max=100)
    delete = model.TRIGGER["delete"]
    # A trigger disabled on purpose (a data-only restore, say): watch must not turn it back on.
    await conn.execute(f"ALTER TABLE selfology.user_answers_new DISABLE TRIGGER {delete.name}")
    await conn.execute("DELETE FROM selfology.user_answers_new WHERE user_id = 4")
    outcome = await watch.check(Scope.FULL)
    assert outcome.inconsistent == 3 and outcome.repaired is None
    assert "not current and enabled" in outcome.held_back
    labels = {"kind": "trigger", "name": delete.name, "table": delete.table or ""}
    assert sample(watch.metrics, "counter_object_enabled", **labels) == 0
    assert sample(watch.metrics, "counter_object_current", **labels) == 1
    assert sample(watch.metrics, "counter_object_installed", **labels) == 1
    assert sample(watch.metrics, "counter_object_state", **labels, state="disabled") == 1
    assert sample(watch.metrics, "counter_object_state", **labels, state="current") == 0
    still_disabled = await conn.fetchval(
        "SELECT tgenabled = 'D' FROM pg_trigger WHERE tgname = $1", delete.name
    )
    assert still_disabled


async def test_lock_waits_on_the_counted_tables_are_sampled(
    db: str, conn: asyncpg.Connection, make_watch: Any
) -> None:
    await populate(conn)
    holder, waiter = await asyncpg.connect(db), await asyncpg.connect(db)
    try:
        async with holder.transaction():
            await holder.execute(
                "UPDATE selfology.user_stats SET updated_at = now() WHERE user_id = 1"
            )
            blocked = asyncio.ensure_future(waiter.execute(BOT_INSERT, 1))
            await wait_until_blocked(conn, waiter)
            watch = make_watch()
            assert (await watch.check(Scope.RECENT)).ok
            assert sample(watch.metrics, "counter_lock_waiters") == 1
            longest = sample(watch.metrics, "counter_lock_wait_max_seconds")
            assert longest is not None and longest >= 0
        await blocked
    finally:
        await holder.close()
        await waiter.close()
    await watch.check(Scope.RECENT)
    assert sample(watch.metrics, "counter_lock_waiters") == 0


async def test_lock_waits_in_another_database_are_not_ours(
    second_db: str, conn: asyncpg.Connection, make_watch: Any
) -> None:
    """A writer blocked in a copy of this database waits on a table with the same oid as
    ours: it is the other database's wait, not this one's (for watch and for stats)."""
    other = await asyncpg.connect(second_db)
    holder, waiter = await asyncpg.connect(second_db), await asyncpg.connect(second_db)
    try:
        await populate(other)
        async with holder.transaction():
            await holder.execute(
                "UPDATE selfology.user_stats SET updated_at = now() WHERE user_id = 1"
            )
            blocked = asyncio.ensure_future(waiter.execute(BOT_INSERT, 1))
            await wait_until_blocked(other, waiter)
            watch = make_watch()
            assert (await watch.check(Scope.RECENT)).ok
            assert sample(watch.metrics, "counter_lock_waiters") == 0
            assert (await stats.collect(conn)).lock_waiters == []
            assert len((await stats.collect(other)).lock_waiters) == 1
        await blocked
    finally:
        for connection in (holder, waiter, other):
            await connection.close()


async def test_a_database_that_goes_away_is_reported_and_retried_until_it_is_back(
    db: str, conn: asyncpg.Connection, make_watch: Any, events: Events
) -> None:
    await populate(conn)
    proxy = TcpProxy(db)
    await proxy.start()
    watch = make_watch(dsn=proxy.dsn)
    stop = asyncio.Event()
    running = asyncio.ensure_future(watch.run(stop))
    try:
        await events.next("check", scope="full", ok=True)
        assert sample(watch.metrics, "counter_database_up") == 1
        await proxy.stop()  # every connection cut, new ones refused
        failed = await events.next("check", ok=False)
        assert failed["database_up"] is False
        await events.next("check", ok=False)  # retried, still away
        assert sample(watch.metrics, "counter_database_up") == 0
        assert sample(watch.metrics, "counter_check_failures_total", scope="recent") >= 1
        await proxy.start()
        await events.next("check", ok=True)
        assert sample(watch.metrics, "counter_database_up") == 1
        assert not running.done()
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)
        await proxy.stop()


async def test_a_missing_schema_is_a_failed_check_not_a_dead_watch(
    empty_db: str, make_watch: Any
) -> None:
    watch = make_watch(dsn=empty_db)
    outcome = await watch.check(Scope.FULL)
    assert not outcome.ok and "migrate" in outcome.error
    assert sample(watch.metrics, "counter_database_up") == 1
    assert sample(watch.metrics, "counter_check_failures_total", scope="full") == 1


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        WatchSettings(quick_interval=0)
    with pytest.raises(ValueError):
        WatchSettings(auto_repair_max=-1)


# --- the console script, run as systemd runs it ---


def with_password(dsn: str, password: str) -> str:
    """``dsn`` with a password the test server ignores (trust), to prove it is never shown."""
    parts = urlsplit(dsn)
    if parts.password or not parts.username:
        return dsn
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{password}@{host}"))


async def test_the_command_serves_metrics_and_exits_0_on_sigterm(db: str) -> None:
    watch = await WatchProcess.start(with_password(db, "s3cret"), "--quick-interval", "0.05")
    try:
        port = (await watch.next("serving"))["port"]
        await watch.next("check", scope="full", ok=True)
        metrics = await watch.scrape(port)
        assert metrics[("counter_consistency_rate", (("scope", "full"),))] == 1
        assert metrics[("counter_database_up", ())] == 1
        await watch.next("check", scope="recent", ok=True)
    finally:
        code = await watch.stop()  # SIGTERM
    assert code == 0, watch.lines
    events = [json.loads(line)["event"] for line in watch.lines]  # every line is JSON
    assert events[-2:] == ["stopping", "stopped"]
    assert "s3cret" not in "".join(watch.lines)
    assert watch.process.stdout is not None
    assert await watch.process.stdout.read() == b""  # results on stdout; watch has none


def test_a_taken_port_is_one_line_and_exit_2(db: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            [CLI, "watch", "--dsn", db, "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stderr
    [error] = [line for line in result.stderr.splitlines() if "error" in line]
    assert f"127.0.0.1:{port}" in error and "Traceback" not in result.stderr


def test_help_names_the_environment_variable_of_every_option() -> None:
    wide = {**os.environ, "COLUMNS": "300"}  # rich wraps the help to the terminal's width
    result = subprocess.run(
        [CLI, "watch", "--help"], capture_output=True, text=True, timeout=60, env=wide
    )
    for variable in ("PORT", "LISTEN", "QUICK_INTERVAL", "FULL_INTERVAL", "AUTO_REPAIR_MAX"):
        assert f"SELFOLOGY_WATCH_{variable}" in result.stdout


def test_before_the_first_check_the_database_is_not_reported_down() -> None:
    # The first scrape came before the first check and said counter_database_up 0, which
    # CounterWatchDatabaseDown (== 0) reads as down. Unknown is NaN, which it does not match.
    fresh = WatchMetrics()
    up = sample(fresh, "counter_database_up")
    assert up is not None and math.isnan(up)
    fresh.database_reached(False)
    assert sample(fresh, "counter_database_up") == 0
    fresh.database_reached(True)
    assert sample(fresh, "counter_database_up") == 1
