"""Real logical replication into our tables (issue 12, item 5).

The apply worker writes as ``session_replication_role = replica`` and fires row triggers
only, never statement triggers (ours that count are statement triggers). What
docs/COUNTER_ARCHITECTURE.md tells an operator is proven here, with a publication and a
subscription between two databases of one server:

- all four tables replicated from a publisher that runs our triggers: the counters arrive
  counted, our triggers on the subscriber stay silent, nothing is counted twice; also when
  the subscription first copies the rows the publisher already has (copy_data);
- only the answers (and the sessions their foreign key needs) replicated: ``check`` names
  the subscription as a problem, and the subscriber's own ``user_stats`` and
  ``digital_personality`` drift, ENABLE ALWAYS or not, until ``repair``.

A publisher needs ``wal_level = logical``: unless ``SELFOLOGY_TEST_DSN`` names a server with
it, these tests start a throwaway one of their own (tests/logical_server.py), of the same
major version when its binaries are installed.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager

import asyncpg
import pytest

from selfology_counters import deferred, health, model, stats
from selfology_counters.config import with_database
from selfology_counters.lifecycle import upgrade
from tests.conftest import _admin
from tests.logical_server import logical_server as start_logical_server
from tests.rows import new_session
from tests.truth import assert_exact, assert_exact_reads, mismatches

ALL_TABLES = model.COUNTED_TABLES
# The documented recipe: the four tables and the mode row, whose horizon says which of the
# answers the publisher's counters hold (deferred mode).
WITH_MODE = (*ALL_TABLES, model.MODE_TABLE)
# The answers, and the sessions their composite foreign key points at.
ANSWERS_ONLY = (model.ANSWERS, model.SESSIONS.table)
APPLY_DEADLINE_S = 30.0
PARTIAL = (
    f"subscription {{name}} applies {model.ANSWERS} without every counter table: its apply "
    "worker fires no statement trigger (not even ENABLE ALWAYS ones), so those answers are "
    f"not counted here; replicate all four tables and {model.MODE_TABLE}, or run repair"
)
PENDING = (
    "SELECT count(*) FROM selfology.user_answers_new"
    f" WHERE {model.XID} >= (SELECT horizon FROM selfology.{model.MODE_TABLE})"
)
TRIGGER_STATES = (
    "SELECT array_agg(tgenabled::text) FROM pg_trigger"
    " WHERE tgname = ANY ($1::text[]) AND NOT tgisinternal"
)

INSERT = (
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
    " SELECT $1, 'q' || g, 'a' FROM generate_series(1, $2) g"
)
# What the apply worker must have brought over: rows of the replicated tables, by key.
APPLIED = {
    model.ANSWERS: "SELECT id, session_id, user_id FROM selfology.user_answers_new ORDER BY id",
    model.SESSIONS.table: (
        "SELECT id, user_id, questions_answered FROM selfology.onboarding_sessions ORDER BY id"
    ),
    model.USER_STATS.table: (
        "SELECT user_id, total_answers_lifetime FROM selfology.user_stats ORDER BY user_id"
    ),
    model.PERSONALITY.table: (
        "SELECT user_id, total_answers_analyzed FROM selfology.digital_personality ORDER BY user_id"
    ),
    model.MODE_TABLE: f"SELECT mode, horizon FROM selfology.{model.MODE_TABLE}",
}


@pytest.fixture(scope="module")
def logical_server() -> Iterator[str]:
    """The maintenance DSN of a server with wal_level = logical (tests/logical_server.py)."""
    with ExitStack() as stack:
        try:
            dsn, _what = stack.enter_context(
                start_logical_server(os.environ.get("SELFOLOGY_TEST_DSN"))
            )
        except Exception as error:  # say why instead of failing every test
            pytest.skip(f"no server with wal_level = logical could be started: {error}")
        yield dsn


@asynccontextmanager
async def _migrated_database(server: str) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    name = f"sc_repl_{uuid.uuid4().hex[:12]}"  # generated, never input
    # Both run an event loop of their own: in a thread, beside this test's.
    await asyncio.to_thread(_admin, server, f'CREATE DATABASE "{name}"')
    try:
        dsn = with_database(server, name)
        await asyncio.to_thread(upgrade, dsn)
        connection = await asyncpg.connect(dsn)
        try:
            yield connection, dsn
        finally:
            await connection.close()
    finally:
        await asyncio.to_thread(_admin, server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def replicated(
    server: str,
    tables: tuple[str, ...],
    before: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    prepare: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection, str]]:
    """A publisher and a subscriber database (both migrated) with ``tables`` replicated from
    the first to the second; yields (publisher, subscriber, subscription name). ``before``
    writes to the publisher before the subscription exists, which then copies those rows
    (copy_data = true: the table sync workers COPY each table); ``prepare`` readies the
    subscriber for that copy."""
    name = f"sc_sub_{uuid.uuid4().hex[:12]}"  # generated, never input: names the slot too
    async with (
        _migrated_database(server) as (publisher, source),
        _migrated_database(server) as (
            subscriber,
            _,
        ),
    ):
        if before is not None:
            await before(publisher)
        if prepare is not None:
            await prepare(subscriber)
        published = ", ".join(f"selfology.{table}" for table in tables)
        await publisher.execute(f"CREATE PUBLICATION {name} FOR TABLE {published}")
        # By hand: CREATE SUBSCRIPTION with create_slot = true on the same cluster waits for
        # its own transaction to end (a documented deadlock).
        await publisher.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name)
        await subscriber.execute(
            # libpq takes the URL form as a connection string.
            f"CREATE SUBSCRIPTION {name} CONNECTION '{source}' PUBLICATION {name}"
            f" WITH (create_slot = false, slot_name = '{name}',"
            f" copy_data = {'true' if before is not None else 'false'})"
        )
        try:
            yield publisher, subscriber, name
        finally:
            await subscriber.execute(f"ALTER SUBSCRIPTION {name} DISABLE")
            await subscriber.execute(f"ALTER SUBSCRIPTION {name} SET (slot_name = NONE)")
            await subscriber.execute(f"DROP SUBSCRIPTION {name}")
            await _drop_slot(publisher, name)


async def _drop_slot(publisher: asyncpg.Connection, slot: str) -> None:
    """Drop the slot once the disabled subscription's walsender has let go of it."""
    deadline = time.monotonic() + APPLY_DEADLINE_S
    while await publisher.fetchval(
        "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot
    ):
        assert time.monotonic() < deadline, f"slot {slot} still in use"
        await asyncio.sleep(0.02)
    await publisher.execute("SELECT pg_drop_replication_slot($1)", slot)


async def wait_until_applied(
    publisher: asyncpg.Connection, subscriber: asyncpg.Connection, tables: tuple[str, ...]
) -> None:
    """Until the subscriber's rows of the replicated ``tables`` equal the publisher's: the
    event is the apply worker's commit of the last transaction (each is applied whole)."""
    deadline = time.monotonic() + APPLY_DEADLINE_S
    wanted = [await publisher.fetch(APPLIED[table]) for table in tables]
    while [await subscriber.fetch(APPLIED[table]) for table in tables] != wanted:
        if time.monotonic() > deadline:
            state = await subscriber.fetch("SELECT * FROM pg_stat_subscription")
            raise AssertionError(f"not applied within {APPLY_DEADLINE_S}s: {state}")
        await asyncio.sleep(0.02)


async def make_way(subscriber: asyncpg.Connection) -> None:
    """The documented step before a subscription copies the mode row: the subscriber's own
    row (which ``migrate`` made) gives way to the publisher's."""
    await subscriber.execute(f"DELETE FROM selfology.{model.MODE_TABLE}")


async def write_every_kind(publisher: asyncpg.Connection) -> None:
    """Inserts, a delete, moves (to a session of the same and of another user, and a whole
    session to another user) and a cascaded session delete, each its own transaction."""
    a1, a2 = await new_session(publisher, 1), await new_session(publisher, 1)
    b1, gone = await new_session(publisher, 2), await new_session(publisher, 3)
    await publisher.execute(INSERT, a1, 10)
    await publisher.execute(INSERT, b1, 4)
    await publisher.execute(INSERT, gone, 3)
    await publisher.execute(
        "DELETE FROM selfology.user_answers_new WHERE session_id = $1 AND question_json_id = 'q1'",
        a1,
    )
    await publisher.execute(
        "UPDATE selfology.user_answers_new SET session_id = $1"
        " WHERE session_id = $2 AND question_json_id IN ('q2', 'q3')",
        a2,
        a1,
    )
    await publisher.execute(
        "UPDATE selfology.user_answers_new SET session_id = $1"
        " WHERE session_id = $2 AND question_json_id = 'q4'",
        b1,
        a1,
    )
    await publisher.execute(
        "UPDATE selfology.onboarding_sessions SET user_id = 4 WHERE id = $1", a2
    )
    await publisher.execute("DELETE FROM selfology.onboarding_sessions WHERE id = $1", gone)


async def test_all_four_tables_arrive_counted_and_are_not_counted_again(
    logical_server: str,
) -> None:
    async with replicated(logical_server, WITH_MODE) as (publisher, subscriber, name):
        await publisher.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (1)")
        await write_every_kind(publisher)
        await wait_until_applied(publisher, subscriber, WITH_MODE)
        await assert_exact(publisher)
        # Our triggers stayed silent under the apply worker's replica role: were they not,
        # the counters here would hold every answer twice.
        await assert_exact(subscriber)
        found = await health.check(subscriber)
        assert found.subscriptions == [f"{name}: {table}" for table in sorted(WITH_MODE)]
        # A listed subscription is a note, not a failure: this is the documented setup.
        assert found.consistent and found.problems == [], found.as_dict()
        assert (await stats.collect(subscriber)).subscriptions == found.subscriptions


async def test_a_subscription_that_copies_existing_rows_arrives_exact(logical_server: str) -> None:
    """copy_data = true: the table sync workers COPY each table's existing rows, the counters
    with them, as the replica role (as the apply worker does), so our triggers stay silent and
    the answers copied are not counted again on top of the counters copied; what the
    publisher writes after the copy arrives counted too."""

    async def existing(publisher: asyncpg.Connection) -> None:
        await publisher.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (1)")
        await write_every_kind(publisher)

    async with replicated(logical_server, WITH_MODE, before=existing, prepare=make_way) as (
        publisher,
        subscriber,
        _name,
    ):
        await wait_until_applied(publisher, subscriber, WITH_MODE)
        assert await subscriber.fetchval("SELECT count(*) FROM selfology.user_answers_new") > 0
        await assert_exact(subscriber)
        await write_every_kind(publisher)
        await wait_until_applied(publisher, subscriber, WITH_MODE)
        await assert_exact(publisher)
        await assert_exact(subscriber)
        found = await health.check(subscriber)
        assert found.consistent and found.problems == [], found.as_dict()


@pytest.mark.parametrize("enable_always", [False, True], ids=["as-installed", "enable-always"])
async def test_answers_only_are_not_counted_on_the_subscriber_and_check_says_so(
    logical_server: str, enable_always: bool
) -> None:
    """The apply worker fires row triggers only; ours that count are statement triggers, so
    not even ENABLE ALWAYS makes it count (the PostgreSQL manual, Logical Replication,
    Architecture). ``check`` names the subscription as a problem; ``repair`` recounts."""
    async with replicated(logical_server, ANSWERS_ONLY) as (publisher, subscriber, name):
        if enable_always:
            for trigger in model.TRIGGERS:
                await subscriber.execute(
                    f"ALTER TABLE selfology.{trigger.table} ENABLE ALWAYS TRIGGER {trigger.name}"
                )
            assert set(
                await subscriber.fetchval(TRIGGER_STATES, [t.name for t in model.TRIGGERS])
            ) == {"A"}
        await subscriber.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (1)")
        found = await health.check(subscriber)
        # Said before any answer arrives: the setup itself cannot count.
        assert [p for p in found.problems if name in p] == [PARTIAL.format(name=name)]
        await write_every_kind(publisher)
        await wait_until_applied(publisher, subscriber, ANSWERS_ONLY)
        # The sessions' counter arrives counted by the publisher; the subscriber's own
        # counters saw none of the apply worker's answers.
        assert {counter for counter, *_ in await mismatches(subscriber)} == {
            "user_stats.total_answers_lifetime",
            "digital_personality.total_answers_analyzed",
        }
        found = await health.check(subscriber)
        assert {i.counter for i in found.issues} == {model.USER_STATS.name, model.PERSONALITY.name}
        assert found.subscriptions == [f"{name}: {table}" for table in sorted(ANSWERS_ONLY)]
        assert found.problems == [PARTIAL.format(name=name)] and not found.consistent
        assert (await stats.collect(subscriber)).problems == found.problems
        await health.repair(subscriber)
        await assert_exact(subscriber)
        assert (await health.check(subscriber)).issues == []


# Deferred mode (issue 19, item 3): the publisher's horizon travels with its answers.
NO_MODE = (
    f"subscription {{name}} applies {model.ANSWERS} without {model.MODE_TABLE}: answers its "
    "publisher has not folded yet (deferred mode) are not counted here; add "
    f"{model.MODE_TABLE} to the publication"
)


@pytest.mark.parametrize("subscriber_mode", [model.IMMEDIATE, model.DEFERRED])
async def test_a_deferred_publisher_reads_exact_on_a_subscriber_of_either_mode(
    logical_server: str, subscriber_mode: str
) -> None:
    """The documented recipe (the four tables and the mode row): the subscriber reads the
    publisher's horizon with its answers, so its exact reads count what is pending there and
    nothing twice; it neither folds nor switches (the publisher's fold and switch arrive)."""

    async def subscriber_in_its_mode(subscriber: asyncpg.Connection) -> None:
        await deferred.set_mode(subscriber, subscriber_mode)

    async with replicated(logical_server, WITH_MODE, prepare=subscriber_in_its_mode) as (
        publisher,
        subscriber,
        _name,
    ):
        await deferred.set_mode(publisher, model.DEFERRED)
        await publisher.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (1)")
        await write_every_kind(publisher)
        await wait_until_applied(publisher, subscriber, WITH_MODE)
        assert await subscriber.fetchval(PENDING) > 0
        await assert_exact_reads(subscriber)
        found = await health.check(subscriber)
        assert found.consistent and found.problems == [], found.as_dict()
        # Folding or switching here would count the publisher's answers a second time.
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="subscription"):
            await deferred.fold_once(subscriber)
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="publisher"):
            await deferred.set_mode(subscriber, model.IMMEDIATE)
        assert not (await deferred.fold_once(publisher)).busy
        await write_every_kind(publisher)
        await wait_until_applied(publisher, subscriber, WITH_MODE)
        await assert_exact_reads(subscriber)
        await deferred.set_mode(publisher, model.IMMEDIATE)  # folds what is pending
        await wait_until_applied(publisher, subscriber, WITH_MODE)
        await assert_exact(subscriber)
        await assert_exact_reads(subscriber)
        assert (await health.check(subscriber)).consistent


async def test_a_copied_subscription_of_a_deferred_publisher_reads_exact(
    logical_server: str,
) -> None:
    """copy_data = true: the subscriber's own mode row makes way for the publisher's (the
    documented step), and what was pending there is read as pending here."""

    async def existing(publisher: asyncpg.Connection) -> None:
        await deferred.set_mode(publisher, model.DEFERRED)
        await publisher.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (1)")
        await write_every_kind(publisher)

    async with replicated(logical_server, WITH_MODE, before=existing, prepare=make_way) as (
        publisher,
        subscriber,
        _name,
    ):
        await wait_until_applied(publisher, subscriber, WITH_MODE)
        assert await subscriber.fetchval(PENDING) > 0
        await assert_exact_reads(subscriber)
        await write_every_kind(publisher)
        assert not (await deferred.fold_once(publisher)).busy
        await wait_until_applied(publisher, subscriber, WITH_MODE)
        await assert_exact(subscriber)
        await assert_exact_reads(subscriber)
        found = await health.check(subscriber)
        assert found.consistent and found.problems == [], found.as_dict()


async def test_the_four_tables_without_the_mode_row_are_a_problem(logical_server: str) -> None:
    """Exact today (the publisher counts immediately), wrong from the publisher's first
    switch to deferred: said before that happens."""
    async with replicated(logical_server, ALL_TABLES) as (publisher, subscriber, name):
        await write_every_kind(publisher)
        await wait_until_applied(publisher, subscriber, ALL_TABLES)
        found = await health.check(subscriber)
        assert found.problems == [NO_MODE.format(name=name)] and not found.consistent
