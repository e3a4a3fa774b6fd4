"""How to use the Selfology answer counters, and three ways not to.

The counters (``onboarding_sessions.questions_answered``, ``user_stats.total_answers_lifetime``
and ``digital_personality.total_answers_analyzed``) are kept exact by statement-level triggers
on ``selfology.user_answers_new``, in the same transaction as the answer. The application only
writes answers and reads counters. This script shows, against a real database:

* the right way: :class:`~selfology_counters.OnboardingDAO` records answers (one or many per
  statement), deletes one, completes the session and reads the counters; a typed error
  (an empty answer, an answer to a completed session) writes nothing;
* anti-pattern 1: incrementing a counter by hand after the insert would double-count, because
  the trigger has already counted the answer: the keep triggers undo such a write (the counter
  stays exact) and `check` counts it, so that the statement can be found and removed;
* anti-pattern 2: read-modify-write in the application (SELECT the count, write count + 1)
  from 20 concurrent connections loses updates (run on a scratch table, dropped afterwards);
* anti-pattern 3: COUNT(*) on every read, timed against reading the stored counter.

Everything is measured and printed, not asserted. Usage::

    python examples/counter_usage_examples.py [--dsn DSN]

Without ``--dsn`` the database is ``$SELFOLOGY_DSN``, else ``$DATABASE_URL``, else the embedded
PostgreSQL server; the schema is migrated first, so a fresh server works. The example users
are a block of ids drawn at random above 9,000,000 for each run, and everything they wrote is
deleted at the end. Exit code: 0 when every counter of the example users equals COUNT(*),
1 when one does not, 2 when the database cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from selfology_counters import (
    DatabaseUnavailableError,
    InvalidAnswerError,
    OnboardingDAO,
    SessionNotActiveError,
    health,
)
from selfology_counters.config import resolve
from selfology_counters.lifecycle import upgrade
from selfology_counters.sqlfiles import quote_ident

EXAMPLE_USER_BASE = 9_000_000
CONCURRENT_WRITERS = 20
INCREMENTS_PER_WRITER = 25
MANY_ANSWERS = 20_000
TIMED_READS = 50

WriterFunction = Callable[[asyncpg.Pool, str], Awaitable[None]]

# --- SQL used to look at the database next to the DAO (the DAO itself writes no counter) ---

# The package's view selfology.counter_consistency_check holds every counter next to its truth
# (COUNT(*) of the answers it counts); here one session and its user.
COUNTERS_VS_TRUTH = """
WITH c AS (
    SELECT counter, key, stored, actual FROM selfology.counter_consistency_check
     WHERE user_id = (SELECT user_id FROM selfology.onboarding_sessions WHERE id = $1)
)
SELECT (SELECT stored FROM c WHERE counter = 'onboarding_sessions.questions_answered'
                               AND key = $1) AS session_counter,
       (SELECT actual FROM c WHERE counter = 'onboarding_sessions.questions_answered'
                               AND key = $1) AS session_count_star,
       (SELECT stored FROM c WHERE counter = 'user_stats.total_answers_lifetime') AS user_counter,
       (SELECT stored FROM c WHERE counter = 'digital_personality.total_answers_analyzed')
           AS personality_counter,
       COALESCE((SELECT actual FROM c WHERE counter = 'user_stats.total_answers_lifetime'), 0)
           AS user_count_star
"""

# The personality row is created by the application; its trigger starts it at the user's
# true count, and the answer triggers keep it there.
CREATE_PERSONALITY = """
INSERT INTO selfology.digital_personality (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING
"""

# What the bot sends: user_id and answer_length are filled in by the database.
BOT_INSERT_ANSWER = """
INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)
VALUES ($1, $2, $3)
"""

# Anti-pattern 1. Do not do this: the insert trigger has already counted the answer (the keep
# triggers undo these writes, and check reports them).
MANUAL_SESSION_INCREMENT = """
UPDATE selfology.onboarding_sessions SET questions_answered = questions_answered + 1
 WHERE id = $1
"""
MANUAL_USER_INCREMENT = """
UPDATE selfology.user_stats SET total_answers_lifetime = total_answers_lifetime + 1
 WHERE user_id = $1
"""

# Anti-pattern 2, on a scratch table in a schema of its own (dropped afterwards).
CREATE_SCRATCH = """
CREATE SCHEMA {schema};
CREATE TABLE {schema}.answer_counter (id integer PRIMARY KEY, value integer NOT NULL);
INSERT INTO {schema}.answer_counter VALUES (1, 0);
"""
DROP_SCRATCH = "DROP SCHEMA IF EXISTS {schema} CASCADE"
RESET_SCRATCH = "UPDATE {schema}.answer_counter SET value = 0 WHERE id = 1"
READ_SCRATCH = "SELECT value FROM {schema}.answer_counter WHERE id = 1"
WRITE_SCRATCH = "UPDATE {schema}.answer_counter SET value = $1 WHERE id = 1"
ATOMIC_INCREMENT = "UPDATE {schema}.answer_counter SET value = value + 1 WHERE id = 1"

# Anti-pattern 3: the two ways to read a user's total.
COUNT_STAR_READ = "SELECT count(*) FROM selfology.user_answers_new WHERE user_id = $1"
COUNTER_READ = "SELECT total_answers_lifetime FROM selfology.user_stats WHERE user_id = $1"

# Every counter of the example users that differs from COUNT(*), from the same view (a missing
# user_stats row of a user with answers counts as one).
MISMATCHES = """
SELECT counter, key, stored, actual FROM selfology.counter_consistency_check
 WHERE user_id = ANY ($1::bigint[]) AND status <> 'CONSISTENT'
 ORDER BY counter, key
"""

# Deleting a session deletes its answers (ON DELETE CASCADE); the delete trigger counts them
# down. The users' own counter rows go last.
CLEANUP = (
    "DELETE FROM selfology.onboarding_sessions WHERE user_id = ANY ($1::bigint[])",
    "DELETE FROM selfology.digital_personality WHERE user_id = ANY ($1::bigint[])",
    "DELETE FROM selfology.user_stats WHERE user_id = ANY ($1::bigint[])",
)


@dataclass(frozen=True)
class ExampleUsers:
    """The three users of one run: a block of ids of its own above EXAMPLE_USER_BASE."""

    right_way: int
    double_count: int
    count_star: int

    @classmethod
    def pick(cls) -> ExampleUsers:
        base = EXAMPLE_USER_BASE + secrets.randbelow(90_000) * 10
        return cls(base + 1, base + 2, base + 3)

    @property
    def ids(self) -> list[int]:
        return [self.right_way, self.double_count, self.count_star]


@dataclass(frozen=True)
class Snapshot:
    """One session's and its user's counters, next to COUNT(*) of the answers."""

    session_counter: int
    session_count_star: int
    user_counter: int | None
    personality_counter: int | None
    user_count_star: int

    @property
    def exact(self) -> bool:
        return (
            self.session_counter == self.session_count_star
            and (self.user_counter or 0) == self.user_count_star
            and self.personality_counter in (None, self.user_count_star)
        )

    def describe(self) -> str:
        verdict = "exact" if self.exact else "WRONG"
        return (
            f"session counter {self.session_counter} (COUNT(*) {self.session_count_star}), "
            f"user_stats {self.user_counter}, digital_personality {self.personality_counter} "
            f"(COUNT(*) {self.user_count_star}): {verdict}"
        )


def section(title: str) -> None:
    print()
    print(f"=== {title} ===")


def say(text: str) -> None:
    print(f"  {text}")


async def snapshot(connection: asyncpg.Connection, session_id: int) -> Snapshot:
    row = await connection.fetchrow(COUNTERS_VS_TRUTH, session_id)
    return Snapshot(**dict(row))


# --- The right way ----------------------------------------------------------------------------


async def show_right_way(dao: OnboardingDAO, connection: asyncpg.Connection, user_id: int) -> None:
    section("The right way: OnboardingDAO writes answers, the triggers keep the counters")
    session_id = await dao.start_session(user_id)
    await connection.execute(CREATE_PERSONALITY, user_id)
    say(f"user {user_id}: started session {session_id} and created a digital_personality row")

    first = await dao.save_answer(session_id, "q_intro", "I like long walks.")
    pairs = [(f"q_{n}", f"answer number {n}") for n in range(1, 6)]
    ids = await dao.save_answers(session_id, pairs)
    say(f"save_answer -> id {first}; save_answers (one statement) -> {len(ids)} ids")
    say((await snapshot(connection, session_id)).describe())

    await dao.delete_answer(first)
    say(f"delete_answer({first}): {(await snapshot(connection, session_id)).describe()}")

    await show_refused(dao, connection, session_id, "   ", InvalidAnswerError)
    await dao.complete_session(session_id)
    say(f"complete_session({session_id})")
    await show_refused(dao, connection, session_id, "one answer too many", SessionNotActiveError)

    total = await dao.get_user_total_answers(user_id)
    personality = await dao.get_personality_count(user_id)
    say(f"get_user_total_answers -> {total}, get_personality_count -> {personality}")


async def show_refused(
    dao: OnboardingDAO,
    connection: asyncpg.Connection,
    session_id: int,
    text: str,
    expected: type[Exception],
) -> None:
    """Try one answer the DAO refuses, and show that nothing was written."""
    before = await snapshot(connection, session_id)
    try:
        await dao.save_answer(session_id, "q_refused", text)
    except expected as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    else:
        outcome = f"no error (expected {expected.__name__})"
    after = await snapshot(connection, session_id)
    written = "nothing written" if after == before else "SOMETHING WAS WRITTEN"
    say(f"save_answer({text!r}) -> {outcome}; {written}")


# --- Anti-pattern 1: counting by hand ---------------------------------------------------------


async def show_double_count(
    dao: OnboardingDAO, connection: asyncpg.Connection, user_id: int
) -> None:
    section("Anti-pattern 1: UPDATE ... + 1 after the insert (would double count)")
    session_id = await dao.start_session(user_id)
    async with connection.transaction():
        await connection.execute(BOT_INSERT_ANSWER, session_id, "q_intro", "hello")
        await connection.execute(MANUAL_SESSION_INCREMENT, session_id)
        await connection.execute(MANUAL_USER_INCREMENT, user_id)
    after = await snapshot(connection, session_id)
    say(f"user {user_id}: inserted 1 answer, then incremented the counters by hand")
    say(after.describe())
    say(
        f"undone: the counter says {after.session_counter}, COUNT(*) says "
        f"{after.session_count_star}; the trigger had already counted the answer, and the "
        "keep triggers left the counters as they were"
    )
    for note in (await health.check(connection, user_id)).notes:
        say(f"check says: {note}")
    # The operator's repair (`selfology-counters repair --user N`): locks the rows in the
    # triggers' order and recounts under the lock, so it is exact even while answers arrive.
    repaired = await health.repair(connection, user_id=user_id)
    say(f"repair changed {len(repaired.changes)} counters")
    say(f"after the repair: {(await snapshot(connection, session_id)).describe()}")
    say("fix: never write a counter from the application; insert the answer and stop")


# --- Anti-pattern 2: read-modify-write in the application -------------------------------------


async def show_lost_updates(dsn: str) -> None:
    section(f"Anti-pattern 2: read-modify-write from {CONCURRENT_WRITERS} connections")
    schema = f"selfology_example_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(CREATE_SCRATCH.format(schema=quote_ident(schema)))
        pool = await asyncpg.create_pool(
            dsn, min_size=CONCURRENT_WRITERS, max_size=CONCURRENT_WRITERS
        )
        try:
            await compare_increments(pool, admin, schema)
        finally:
            await pool.close()
    finally:
        await admin.execute(DROP_SCRATCH.format(schema=quote_ident(schema)))
        await admin.close()
    say(f"scratch schema {schema} dropped")


async def compare_increments(pool: asyncpg.Pool, admin: asyncpg.Connection, schema: str) -> None:
    expected = CONCURRENT_WRITERS * INCREMENTS_PER_WRITER
    say(f"{CONCURRENT_WRITERS} writers x {INCREMENTS_PER_WRITER} increments = {expected} expected")

    final = await run_writers(pool, admin, schema, read_modify_write)
    say(
        f"SELECT value, then UPDATE SET value = value_read + 1: ended at {final}; "
        f"lost updates: {expected - final} of {expected} increments were lost"
    )
    final = await run_writers(pool, admin, schema, atomic_increment)
    say(
        f"UPDATE SET value = value + 1 (one statement): ended at {final}; "
        f"lost updates: {expected - final}"
    )
    say("the answer counters need neither: the triggers count inside the answer's statement")


async def run_writers(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    schema: str,
    writer: WriterFunction,
) -> int:
    """Reset the scratch counter, run every writer at once, and return the final value."""
    await admin.execute(RESET_SCRATCH.format(schema=quote_ident(schema)))
    await asyncio.gather(*(writer(pool, schema) for _ in range(CONCURRENT_WRITERS)))
    return int(await admin.fetchval(READ_SCRATCH.format(schema=quote_ident(schema))))


async def read_modify_write(pool: asyncpg.Pool, schema: str) -> None:
    """The anti-pattern: the value can change between the SELECT and the UPDATE."""
    read, write = (
        READ_SCRATCH.format(schema=quote_ident(schema)),
        WRITE_SCRATCH.format(schema=quote_ident(schema)),
    )
    async with pool.acquire() as connection:
        for _ in range(INCREMENTS_PER_WRITER):
            value = await connection.fetchval(read)
            await connection.execute(write, value + 1)


async def atomic_increment(pool: asyncpg.Pool, schema: str) -> None:
    statement = ATOMIC_INCREMENT.format(schema=quote_ident(schema))
    async with pool.acquire() as connection:
        for _ in range(INCREMENTS_PER_WRITER):
            await connection.execute(statement)


# --- Anti-pattern 3: COUNT(*) on every read ---------------------------------------------------


async def show_count_star_cost(
    dao: OnboardingDAO, connection: asyncpg.Connection, user_id: int
) -> None:
    section(f"Anti-pattern 3: COUNT(*) on every read ({MANY_ANSWERS:,} answers)")
    session_id = await dao.start_session(user_id)
    pairs = [(f"q_{n}", f"answer {n}") for n in range(MANY_ANSWERS)]
    started = time.perf_counter()
    await dao.save_answers(session_id, pairs)
    say(
        f"user {user_id}: save_answers wrote {MANY_ANSWERS:,} answers in one statement "
        f"in {(time.perf_counter() - started) * 1000:.0f} ms"
    )

    count_ms, count_value = await time_reads(connection, COUNT_STAR_READ, user_id)
    counter_ms, counter_value = await time_reads(connection, COUNTER_READ, user_id)
    say(f"COUNT(*) of the answers:            {count_value:>7,}  median {count_ms:8.3f} ms/read")
    say(f"user_stats.total_answers_lifetime: {counter_value:>7,}  median {counter_ms:8.3f} ms/read")
    ratio = count_ms / counter_ms if counter_ms > 0 else float("inf")
    say(f"COUNT(*) took {ratio:.1f}x the time of the counter ({TIMED_READS} reads each)")


async def time_reads(
    connection: asyncpg.Connection, statement: str, user_id: int
) -> tuple[float, int]:
    """Median milliseconds per read over TIMED_READS reads (after one warm-up), and the value."""
    value = int(await connection.fetchval(statement, user_id) or 0)
    timings: list[float] = []
    for _ in range(TIMED_READS):
        started = time.perf_counter()
        await connection.fetchval(statement, user_id)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), value


# --- The check, the cleanup and the driver ----------------------------------------------------


async def check_exact(connection: asyncpg.Connection, user_ids: Sequence[int]) -> list[str]:
    section("Check: every counter of the example users against COUNT(*)")
    rows = await connection.fetch(MISMATCHES, list(user_ids))
    problems = [
        f"{r['counter']} of {r['key']}: stored {r['stored']}, COUNT(*) {r['actual']}" for r in rows
    ]
    for problem in problems:
        say(f"MISMATCH {problem}")
    if not problems:
        say("all counters match COUNT(*)")
    return problems


async def cleanup(connection: asyncpg.Connection, user_ids: Sequence[int]) -> None:
    async with connection.transaction():
        for statement in CLEANUP:
            await connection.execute(statement, list(user_ids))
    say(f"deleted the sessions, answers and counter rows of users {', '.join(map(str, user_ids))}")


async def run(dsn: str) -> int:
    """Every section in turn; returns the exit code."""
    users = ExampleUsers.pick()
    connection = await asyncpg.connect(dsn)
    try:
        async with await OnboardingDAO.connect(dsn) as dao:
            await show_right_way(dao, connection, users.right_way)
            await show_double_count(dao, connection, users.double_count)
            await show_lost_updates(dsn)
            await show_count_star_cost(dao, connection, users.count_star)
        problems = await check_exact(connection, users.ids)
    finally:
        await cleanup(connection, users.ids)
        await connection.close()
    return 1 if problems else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dsn",
        help="PostgreSQL DSN (default: $SELFOLOGY_DSN, $DATABASE_URL, else the embedded server)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        target = resolve(args.dsn)
        print(f"database: {target.redacted} ({target.source})")
        result = upgrade(target.dsn)
    except Exception as exc:  # no server, bad credentials, the embedded server did not start
        print(f"error: cannot prepare the database: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"schema: {result.before or 'empty'} -> {result.after}")
    started = time.perf_counter()
    try:
        code = asyncio.run(run(target.dsn))
    except DatabaseUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\ndone in {time.perf_counter() - started:.1f} s; exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
