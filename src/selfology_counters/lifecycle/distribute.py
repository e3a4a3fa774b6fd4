"""Distributing the counted tables on a Citus coordinator (``migrate`` does it once).

One transaction: our triggers are dropped (Citus would copy the rows into the shards
through them, and they are not the distributed variant yet), the keys are made to include
the shard key, the tables are distributed and co-located, and every counter object is
installed in its distributed variant. The recount that follows in ``lifecycle.settle``
corrects whatever a write committed before the tables changed hands left behind.
"""

from __future__ import annotations

import asyncpg

from selfology_counters import distributed, model, objects
from selfology_counters.errors import DistributedUnsupportedError
from selfology_counters.lifecycle.ddl import retrying, set_local_lock_timeout
from selfology_counters.sqlfiles import SCHEMA, query


async def needs_distributing(connection: asyncpg.Connection, schema: str = SCHEMA) -> bool:
    """Citus is installed here and the counted tables are still local ones."""
    if not await distributed.citus_installed(connection):
        return False
    return not await distributed.is_distributed(connection, schema)


async def distribute(connection: asyncpg.Connection, schema: str = SCHEMA) -> None:
    """Distribute the four counted tables by ``model.SHARD_KEY`` and install the distributed
    variant of every counter object, in one transaction."""
    if await objects.current_mode(connection, schema) != model.IMMEDIATE:
        raise DistributedUnsupportedError(
            "switch to immediate mode (selfology-counters mode immediate) before distributing: "
            "a single node's pending answers are told apart by transaction ids, which mean "
            "nothing on Citus; switch back to deferred mode once distributed"
        )

    async def once() -> None:
        async with connection.transaction():
            await set_local_lock_timeout(connection)
            for statement in distributed.ddl_preamble(schema):
                await connection.execute(statement)
            await connection.execute(objects.drop_sql(model.TRIGGERS, schema))
            await connection.execute(query("distributed.sql", "keys", schema))
            await connection.execute(query("distributed.sql", "distribute", schema))
            for statement in objects.install_statements(schema=schema, distributed=True):
                await connection.execute(statement)

    await retrying(once)
