"""Citus: whether this database is a coordinator whose counted tables are distributed.

On Citus the four counted tables are distributed by ``model.SHARD_KEY`` and co-located, so
an answer, its session and its user's counter rows share a shard; the counter triggers fire
on the shards and every counter write in them names the shard key, which keeps it on that
shard (``objects.sql`` renders that variant when ``distributed`` is true). Distributing an
existing database is ``lifecycle/distribute.py``; docs/SCALING.md says when and how.
"""

from __future__ import annotations

import asyncpg

from selfology_counters.sqlfiles import SCHEMA, query


async def citus_installed(connection: asyncpg.Connection) -> bool:
    """The ``citus`` extension is installed in this database (a coordinator, or a worker)."""
    return bool(await connection.fetchval(query("distributed.sql", "citus_installed")))


async def is_distributed(connection: asyncpg.Connection, schema: str = SCHEMA) -> bool:
    """The answers of ``schema`` are a Citus distributed table (so are the counter tables)."""
    if not await citus_installed(connection):
        return False
    return bool(await connection.fetchval(query("distributed.sql", "answers_distributed"), schema))


def ddl_preamble(schema: str = SCHEMA) -> list[str]:
    """What a transaction that (re)creates our triggers and functions on the distributed
    tables runs first (distributing them, a reinstall, a benchmark's scratch schema): the
    unsafe-trigger and sequential settings for that transaction, and deferred mode's pending
    marker, which the distributed variant reads (idempotent)."""
    return [
        query("distributed.sql", "unsafe_triggers"),
        query("distributed.sql", "sequential"),
        query("distributed.sql", "pending", schema),
    ]
