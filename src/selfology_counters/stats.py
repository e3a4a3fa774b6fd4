"""What an operator asks when counters look wrong or inserts slow down."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from selfology_counters import counters
from selfology_counters.connect import require_schema
from selfology_counters.health import TriggerStatus, trigger_status
from selfology_counters.sqlfiles import SCHEMA, query

TRACK_FUNCTIONS_HINT = (
    "track_functions is off, so per-function calls and time are not collected; turn it on with "
    "ALTER DATABASE <db> SET track_functions = 'pl' (new sessions) or, server-wide, "
    "ALTER SYSTEM SET track_functions = 'pl'; SELECT pg_reload_conf();"
)


@dataclass(frozen=True)
class FunctionStats:
    name: str
    installed: bool
    current: bool
    calls: int | None
    total_ms: float | None
    self_ms: float | None


@dataclass(frozen=True)
class TableStats:
    table: str
    total_bytes: int
    live_tuples: int
    dead_tuples: int
    updates: int
    hot_updates: int

    @property
    def hot_ratio(self) -> float | None:
        return None if self.updates == 0 else self.hot_updates / self.updates


@dataclass(frozen=True)
class StatsResult:
    server_version: str
    database: str
    synchronous_commit: str
    track_functions: str
    triggers: list[TriggerStatus]
    foreign_triggers: list[str]
    functions: list[FunctionStats]
    answers_last_hour: int
    lock_waiters: list[dict[str, Any]]
    tables: list[TableStats]

    @property
    def hints(self) -> list[str]:
        return [TRACK_FUNCTIONS_HINT] if self.track_functions == "none" else []

    @property
    def healthy(self) -> bool:
        return all(t.healthy for t in self.triggers) and not self.foreign_triggers

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tables"] = [{**asdict(t), "hot_ratio": t.hot_ratio} for t in self.tables]
        data["hints"] = self.hints
        data["healthy"] = self.healthy
        return data


async def collect(connection: asyncpg.Connection, schema: str = SCHEMA) -> StatsResult:
    await require_schema(connection, schema)
    settings = await connection.fetchrow(query("health.sql", "settings", schema))
    triggers, foreign = await trigger_status(connection, schema)
    tables = list(counters.COUNTED_TABLES)
    waiters = await connection.fetch(query("health.sql", "lock_waiters", schema), schema, tables)
    table_rows = await connection.fetch(query("health.sql", "table_stats", schema), schema, tables)
    return StatsResult(
        server_version=settings["version"],
        database=settings["database"],
        synchronous_commit=settings["synchronous_commit"],
        track_functions=settings["track_functions"],
        triggers=triggers,
        foreign_triggers=foreign,
        functions=await _functions(connection, schema),
        answers_last_hour=await connection.fetchval(
            query("health.sql", "answers_last_hour", schema)
        ),
        lock_waiters=[
            {**dict(w), "waiting_for": str(w["waiting_for"])} for w in waiters
        ],
        tables=[
            TableStats(
                r["table_name"], r["total_bytes"], r["live_tuples"], r["dead_tuples"],
                r["updates"], r["hot_updates"],
            )
            for r in table_rows
        ],
    )  # fmt: skip


async def _functions(connection: asyncpg.Connection, schema: str) -> list[FunctionStats]:
    rows = {
        r["name"]: r
        for r in await connection.fetch(query("health.sql", "functions", schema), schema)
    }
    stamp = counters.expected_stamp()
    result = []
    for name in counters.FUNCTIONS:
        row = rows.get(name)
        result.append(
            FunctionStats(
                name=name,
                installed=row is not None,
                current=row is not None and row["stamp"] == stamp,
                calls=None if row is None else row["calls"],
                total_ms=None if row is None else row["total_time"],
                self_ms=None if row is None else row["self_time"],
            )
        )
    return result
