"""Adopting the original Selfology database, live, without losing a row.

The original system's schema (integer ids, no ``user_id`` in the answers, the counter
trigger of its migration 004 or 007, counters that drifted) is brought to ours in steps that
never hold a long ACCESS EXCLUSIVE lock: columns added without a rewrite, indexes built
CONCURRENTLY, ``user_id`` back-filled in batches of their own transactions, constraints
added NOT VALID and validated afterwards, and one short transaction that swaps the original
trigger for ours. Then every counter is recounted exactly with ``repair``, and our Alembic
version table is stamped. Every step checks whether it is done already, so an interrupted
adoption is finished by running it again. See docs/ADOPTING.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, NamedTuple

import asyncpg

from selfology_counters import health, model, objects
from selfology_counters.connect import connect
from selfology_counters.errors import LockWaitExhaustedError
from selfology_counters.lifecycle.ddl import retrying, run_ddl, set_local_lock_timeout
from selfology_counters.lifecycle.revisions import VERSION_TABLE, stamp
from selfology_counters.sqlfiles import SCHEMA, query

BACKFILL_BATCH = 10_000
ADOPTED_REVISION = "0003_consistency_view_v1"
"""The revision whose schema adoption produces; `migrate` applies the ones after it."""
INDEX_ATTEMPTS = 5
# (index, statement that builds it, (table, column) of an existing index that serves as well)
INDEXES = (
    (
        f"{model.ANSWERS}_user_id_idx",
        "create_index_answers_user_id",
        (model.ANSWERS, model.USER_STATS.source),
    ),
    (
        f"{model.ANSWERS}_session_id_idx",
        "create_index_answers_session_id",
        (model.ANSWERS, model.SESSIONS.source),
    ),
    (
        f"{model.SESSIONS.table}_user_id_idx",
        "create_index_sessions_user_id",
        (model.SESSIONS.table, model.SHARD_KEY),
    ),
    (f"{model.SESSIONS.table}_id_user_id_key", "create_index_sessions_id_user_id", None),
)
# The columns counting depends on, made NOT NULL: the answers' user_id and every counter.
NOT_NULL = (
    (model.ANSWERS, model.USER_STATS.source),
    *((c.table, c.column) for c in model.COUNTERS),
)
Progress = Callable[[str], None]


def sql(name: str) -> str:
    return query("adopt.sql", name)


@dataclass(frozen=True)
class Drift:
    counter: str
    wrong: int
    largest_drift: int
    missing_rows: int


@dataclass
class AdoptionReport:
    dry_run: bool
    drift: list[Drift] = field(default_factory=list)
    original_triggers: list[str] = field(default_factory=list)
    steps: list[tuple[str, str]] = field(default_factory=list)  # (step, done | skipped | planned)
    plan_sql: list[str] = field(default_factory=list)
    counters_corrected: int = 0
    backfilled_answers: int = 0
    elapsed_s: float = 0.0

    @property
    def counters_wrong(self) -> int:
        return sum(d.wrong for d in self.drift)

    @property
    def largest_drift(self) -> int:
        return max((d.largest_drift for d in self.drift), default=0)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counters_wrong"] = self.counters_wrong
        data["largest_drift"] = self.largest_drift
        return data


async def survey(connection: asyncpg.Connection, report: AdoptionReport) -> None:
    """What is wrong now, and which original triggers are installed."""
    report.drift = [
        Drift(r["counter"], r["wrong"], r["largest_drift"], r["missing_rows"])
        for r in await connection.fetch(sql("original_drift"))
    ]
    report.original_triggers = [
        f"{r['table_name']}.{r['trigger_name']} ({r['function_name']}())"
        for r in await connection.fetch(sql("original_triggers"), SCHEMA)
    ]


class Step(NamedTuple):
    name: str
    pending: bool  # False: done already (by an earlier, interrupted run)
    statements: list[str]  # what it runs, for the dry run
    run: Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Catalog:
    """What is installed now; each step decides from it whether it still has work."""

    columns: dict[tuple[str, str], asyncpg.Record]
    swapped: bool
    indexes_valid: bool
    constraints: set[str]
    drop_original: list[str]  # DROP TRIGGER / DROP FUNCTION of the original's counter triggers
    not_null: list[str]  # the statements that set NOT NULL without a table scan

    @classmethod
    async def read(cls, connection: asyncpg.Connection) -> Catalog:
        columns = await connection.fetch(sql("table_columns"), SCHEMA)
        states = [await index_in_place(connection, name, serves) for name, _, serves in INDEXES]
        names = ("onboarding_sessions_id_user_id_key", "user_answers_new_session_fk")
        constraints = {
            n for n in names if await connection.fetchval(sql("constraint_exists"), SCHEMA, n)
        }
        return cls(
            columns={(r["table_name"], r["column_name"]): r for r in columns},
            swapped=await connection.fetchval(sql("our_trigger_count"), SCHEMA) > 0,
            indexes_valid=all(states),
            constraints=constraints,
            drop_original=await drop_original_statements(connection),
            not_null=[
                statement
                for table, column in NOT_NULL
                for statement in await not_null_statements(connection, table, column)
            ],
        )

    @property
    def user_id_type(self) -> str:
        kind = self.columns[("onboarding_sessions", "user_id")]["type"]
        return "bigint" if kind == "bigint" else "integer"

    @property
    def nullable(self) -> bool:
        return any(key not in self.columns or not self.columns[key]["not_null"] for key in NOT_NULL)


class Adoption:
    """The steps, in order. Each has a name, a test for remaining work, the SQL it runs (shown
    by the dry run) and the coroutine that runs it."""

    def __init__(self, connection: asyncpg.Connection, dsn: str, say: Progress) -> None:
        self.connection = connection
        self.dsn = dsn
        self.say = say
        self.report = AdoptionReport(dry_run=False)

    def steps(self, cat: Catalog) -> list[Step]:
        # The statements are what the dry run prints: a script psql can run as it stands
        # (the swap in its own transaction; the back-fill's batches as a comment, the swap's
        # catch-up fills every answer; the recount by the functions the swap installs).
        swap_sql = [
            "BEGIN;",
            sql("lock_for_swap"),
            sql("catch_up_user_id"),
            *cat.drop_original,
            sql("drop_original_view"),
            objects.install_sql(),
            "COMMIT;",
        ]
        batches = "\n".join(f"--   {line}" for line in sql("backfill_user_id").splitlines())
        checks = [sql("add_counter_checks")]
        return [
            Step(
                "add user_id and missing columns (no rewrite)",
                ("user_answers_new", "user_id") not in cat.columns,
                [
                    sql(f"add_answers_user_id_{cat.user_id_type}"),
                    sql("add_missing_columns"),
                    query("deferred_v1.sql", "columns"),
                ],
                lambda: self.add_columns(cat.user_id_type),
            ),
            Step(
                "build indexes concurrently",
                not cat.indexes_valid,
                [sql(statement) for _name, statement, _serves in INDEXES],
                self.build_indexes,
            ),
            Step(
                "back-fill user_id in batches",
                not cat.swapped,
                [f"-- in batches of {BACKFILL_BATCH} ids, each its own transaction:\n{batches}"],
                self.backfill,
            ),
            Step(
                "swap the original counter triggers for ours (one short transaction)",
                not cat.swapped,
                swap_sql,
                self.swap,
            ),
            Step(
                "unique (id, user_id) on onboarding_sessions",
                "onboarding_sessions_id_user_id_key" not in cat.constraints,
                [sql("add_unique_constraint")],
                self.unique,
            ),
            Step(
                "foreign key (session_id, user_id): NOT VALID, then validated",
                "user_answers_new_session_fk" not in cat.constraints,
                [sql("add_session_fk"), sql("resync_user_id"), sql("validate_session_fk")],
                self.foreign_key,
            ),
            Step(
                "recount every counter exactly (repair, batches of 500)",
                True,
                [
                    sql("counter_defaults"),
                    "-- health.repair(): lock rows in order, recount, write differences; "
                    "by hand, user by user:",
                    sql("recount_by_hand"),
                ],
                self.recount,
            ),
            Step(
                "NOT NULL and CHECK (>= 0) on user_id and the counters, without a rewrite",
                cat.nullable,
                [*checks, sql("validate_counter_checks"), *cat.not_null],
                self.constraints,
            ),
            Step(
                f"record our version in {SCHEMA}.{VERSION_TABLE} ({ADOPTED_REVISION}; "
                "the later revisions follow)",
                True,
                ["-- alembic stamp head: run 'selfology-counters migrate' after a script"],
                self.stamp,
            ),
        ]

    async def run(self) -> AdoptionReport:
        started = time.perf_counter()
        await survey(self.connection, self.report)
        for step in self.steps(await Catalog.read(self.connection)):
            if step.pending:
                self.say(f"adopt: {step.name}")
                await step.run()
            state = "done" if step.pending else "skipped: done already"
            self.report.steps.append((step.name, state))
        self.report.elapsed_s = time.perf_counter() - started
        return self.report

    async def add_columns(self, user_id_type: str) -> None:
        await self.ddl(sql(f"add_answers_user_id_{user_id_type}"))
        await self.ddl(sql("add_missing_columns"))
        # What our objects read besides (revision 0004's columns, no rewrite); its indexes
        # are built concurrently by that revision, which runs after the adoption.
        await self.ddl(query("deferred_v1.sql", "columns"))

    async def build_indexes(self) -> None:
        for index, statement, serves in INDEXES:
            for _attempt in range(INDEX_ATTEMPTS):
                if await index_in_place(self.connection, index, serves):
                    break
                state = await self.connection.fetchval(sql("index_state"), SCHEMA, index)
                if state is False:
                    # Left INVALID by an interrupted CREATE INDEX CONCURRENTLY: build it again.
                    drop = await self.connection.fetchval(sql("drop_invalid_index"), SCHEMA, index)
                    await self.ddl(drop)
                await self.ddl(sql(statement))
            else:
                raise LockWaitExhaustedError(f"could not build index {index}; retry later")

    async def backfill(self) -> None:
        lo, hi = await self.connection.fetchrow(sql("id_range"))
        for start in range(lo, hi + 1, BACKFILL_BATCH):
            batch = partial(
                self.connection.execute, sql("backfill_user_id"), start, start + BACKFILL_BATCH
            )
            status = await retrying(batch)
            self.report.backfilled_answers += int(status.split()[-1])
            done = min(start + BACKFILL_BATCH, hi)
            self.say(f"adopt: user_id back-filled up to answer id {done} of {hi}")

    async def swap(self) -> None:
        await retrying(self._swap_once)

    async def _swap_once(self) -> None:
        connection = self.connection
        async with connection.transaction():
            await set_local_lock_timeout(connection)
            await connection.execute(sql("lock_for_swap"))
            status = await connection.execute(sql("catch_up_user_id"))
            self.report.backfilled_answers += int(status.split()[-1])
            for statement in await drop_original_statements(connection):
                await connection.execute(statement)
            # The original's view has other columns: dropped, not replaced.
            await connection.execute(sql("drop_original_view"))
            await connection.execute(objects.install_sql())

    async def unique(self) -> None:
        await self.ddl(sql("add_unique_constraint"))

    async def foreign_key(self) -> None:
        await self.ddl(sql("add_session_fk"))
        await retrying(lambda: self.connection.execute(sql("resync_user_id")))
        await self.ddl(sql("validate_session_fk"))

    async def recount(self) -> None:
        # Defaults first, so no new row arrives with a NULL counter after the recount.
        await self.ddl(sql("counter_defaults"))
        result = await health.repair(self.connection, batch_size=500)
        self.report.counters_corrected = len(result.changes)

    async def constraints(self) -> None:
        await self.ddl(sql("add_counter_checks"))
        await self.ddl(sql("validate_counter_checks"))
        for table, column in NOT_NULL:
            await self.set_not_null(table, column)

    async def set_not_null(self, table: str, column: str) -> None:
        add, validate, set_not_null, drop = await not_null_statements(
            self.connection, table, column
        )
        name = not_null_check_name(table, column)
        if not await self.connection.fetchval(sql("constraint_exists"), SCHEMA, name):
            await self.ddl(add)
        for statement in (validate, set_not_null, drop):
            await self.ddl(statement)

    async def stamp(self) -> None:
        await asyncio.to_thread(stamp, self.dsn, ADOPTED_REVISION)

    async def ddl(self, statement: str) -> None:
        await run_ddl(self.connection, statement)


async def index_in_place(
    connection: asyncpg.Connection, index: str, serves: tuple[str, str] | None
) -> bool:
    """Our index is built and valid, or another index leads with the same column."""
    if await connection.fetchval(sql("index_state"), SCHEMA, index):
        return True
    if serves is None:
        return False
    return bool(await connection.fetchval(sql("leading_column_index"), SCHEMA, *serves))


async def drop_original_statements(connection: asyncpg.Connection) -> list[str]:
    """DROP TRIGGER for each counter trigger of the original system, then DROP FUNCTION for
    each of their functions (migration 008's three triggers share one)."""
    rows = await connection.fetch(sql("original_triggers"), SCHEMA)
    triggers = [
        await connection.fetchval(
            sql("drop_trigger_sql"), r["trigger_name"], SCHEMA, r["table_name"]
        )
        for r in rows
    ]
    functions = [
        await connection.fetchval(sql("drop_function_sql"), SCHEMA, name)
        for name in dict.fromkeys(r["function_name"] for r in rows)
    ]
    return triggers + functions


def not_null_check_name(table: str, column: str) -> str:
    return f"{table}_{column}_not_null"[:63]


async def not_null_statements(
    connection: asyncpg.Connection, table: str, column: str
) -> tuple[str, str, str, str]:
    """ADD CHECK (col IS NOT NULL) NOT VALID, VALIDATE, SET NOT NULL, DROP the CHECK."""
    row = await connection.fetchrow(
        sql("not_null_check_sql"), SCHEMA, table, column, not_null_check_name(table, column)
    )
    return row["add_check"], row["validate"], row["set_not_null"], row["drop_check"]


async def plan(dsn: str) -> AdoptionReport:
    """The dry run: what adoption would do and correct. Changes nothing."""
    connection = await connect(dsn)
    try:
        adoption = Adoption(connection, dsn, lambda _message: None)
        report = adoption.report
        report.dry_run = True
        await survey(connection, report)
        for step in adoption.steps(await Catalog.read(connection)):
            state = "planned" if step.pending else "skipped: done already"
            report.steps.append((step.name, state))
            if step.pending:
                report.plan_sql += [f"-- step: {step.name}", *step.statements]
        return report
    finally:
        await connection.close()


async def adopt(dsn: str, progress: Progress | None = None) -> AdoptionReport:
    """Adopt the original database at ``dsn``; safe to rerun after an interruption."""
    connection = await connect(dsn)
    try:
        return await Adoption(connection, dsn, progress or (lambda _message: None)).run()
    finally:
        await connection.close()
