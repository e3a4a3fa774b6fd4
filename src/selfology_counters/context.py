"""Where the counters are kept and by which variant: chosen once, where a connection is made.

A :class:`Counters` names the schema and the variant that keeps its counters (one PostgreSQL,
or Citus with the tables distributed by ``model.SHARD_KEY``). Every SQL text an operation
runs is rendered through it, so the variant is asked of the database once per connection
(:func:`bind`), not again in each function, and a template's variant blocks are chosen by it.
The counter mode is not part of it: it changes live (``selfology-counters mode``), so each
operation reads it in its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from selfology_counters.distributed import is_distributed
from selfology_counters.sqlfiles import SCHEMA, query, render


@dataclass(frozen=True)
class Counters:
    schema: str = SCHEMA
    distributed: bool = False  # Citus: the counted tables are distributed (distributed.py)

    def sql(self, filename: str, name: str, **switches: Any) -> str:
        """The named query ``name`` of ``sql/<filename>``, rendered for this schema and variant."""
        return query(filename, name, self.schema, distributed=self.distributed, **switches)

    def script(self, filename: str, **switches: Any) -> str:
        """The whole of ``sql/<filename>``, rendered for this schema and variant."""
        return render(filename, self.schema, distributed=self.distributed, **switches)


Where = str | Counters
"""What an operation is given: a bound :class:`Counters`, or a schema name to bind."""


async def bind(connection: asyncpg.Connection, where: Where = SCHEMA) -> Counters:
    """``where`` bound: a :class:`Counters` as it is; a schema name with its variant asked of
    the database on ``connection``."""
    if isinstance(where, Counters):
        return where
    return Counters(where, await is_distributed(connection, where))
