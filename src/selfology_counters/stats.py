"""What an operator asks when counters look wrong or inserts slow down."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import asyncpg

from selfology_counters import deferred, model, objects
from selfology_counters.connect import require_schema
from selfology_counters.context import Where, bind
from selfology_counters.deferred import ModeState
from selfology_counters.leftovers import leftover_scratch_schemas
from selfology_counters.objects import Audit, HoldsAudit
from selfology_counters.sqlfiles import SCHEMA, query

TRACK_FUNCTIONS_HINT = (
    "track_functions is off, so per-function calls and time are not collected; turn it on with "
    "ALTER DATABASE <db> SET track_functions = 'pl' (new sessions) or, server-wide, "
    "ALTER SYSTEM SET track_functions = 'pl'; SELECT pg_reload_conf();"
)


@dataclass(frozen=True)
class FunctionStats:
    """Calls and time of one counter function (None: not tracked, or not installed)."""

    name: str
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
        """HOT updates among the updates; None without updates, or when the two counts
        disagree (more HOT updates than updates: collected across a statistics reset, as
        after a crash restart) rather than a ratio above 100%."""
        if self.updates == 0 or not 0 <= self.hot_updates <= self.updates:
            return None
        return self.hot_updates / self.updates


@dataclass(frozen=True)
class StatsResult(HoldsAudit):
    server_version: str
    database: str
    synchronous_commit: str
    track_functions: str
    mode: ModeState  # the counter mode, deferred mode's backlog and its last fold
    audit: Audit  # the objects, what stops or bends the counting, what is only said
    functions: list[FunctionStats]
    answers_last_hour: int
    lock_waiters: list[dict[str, Any]]
    tables: list[TableStats]
    leftover_scratch_schemas: list[str]  # left by a killed benchmark; the next one drops them

    @property
    def hints(self) -> list[str]:
        return [TRACK_FUNCTIONS_HINT] if self.track_functions == "none" else []

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "audit"}
        data["functions"] = [asdict(f) for f in self.functions]
        data.update(self.audit_dict())
        data["mode"] = self.mode.as_dict()
        data["tables"] = [{**asdict(t), "hot_ratio": t.hot_ratio} for t in self.tables]
        data["hints"] = self.hints
        data["healthy"] = self.healthy
        return data


async def collect(connection: asyncpg.Connection, where: Where = SCHEMA) -> StatsResult:
    counters = await bind(connection, where)
    schema = counters.schema
    await require_schema(connection, schema)
    settings = await connection.fetchrow(counters.sql("health.sql", "settings"))
    audit = await objects.audit(connection, counters)
    tables = list(model.COUNTED_TABLES)
    waiters = await connection.fetch(counters.sql("health.sql", "lock_waiters"), schema, tables)
    table_rows = await connection.fetch(counters.sql("health.sql", "table_stats"), schema, tables)
    return StatsResult(
        server_version=settings["version"],
        database=settings["database"],
        synchronous_commit=settings["synchronous_commit"],
        track_functions=settings["track_functions"],
        mode=await deferred.state(connection, counters),
        audit=audit,
        functions=await _functions(connection, schema),
        answers_last_hour=await connection.fetchval(
            counters.sql("health.sql", "answers_last_hour")
        ),
        lock_waiters=[{**dict(w), "waiting_for": str(w["waiting_for"])} for w in waiters],
        tables=[
            TableStats(
                r["table_name"],
                r["total_bytes"],
                r["live_tuples"],
                r["dead_tuples"],
                r["updates"],
                r["hot_updates"],
            )
            for r in table_rows
        ],
        leftover_scratch_schemas=await leftover_scratch_schemas(connection),
    )


async def _functions(connection: asyncpg.Connection, schema: str) -> list[FunctionStats]:
    names = [f.name for f in model.FUNCTIONS]
    rows = {
        r["name"]: r
        for r in await connection.fetch(query("health.sql", "function_calls"), schema, names)
    }
    return [
        FunctionStats(
            name=name,
            calls=rows[name]["calls"] if name in rows else None,
            total_ms=rows[name]["total_time"] if name in rows else None,
            self_ms=rows[name]["self_time"] if name in rows else None,
        )
        for name in names
    ]
