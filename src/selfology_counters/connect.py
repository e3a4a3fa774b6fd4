"""Opening asyncpg connections and pools, with unreachable-server errors made typed."""

from __future__ import annotations

from typing import Any

import asyncpg

from selfology_counters.config import as_url, redact
from selfology_counters.errors import DatabaseUnavailableError, SchemaMissingError
from selfology_counters.sqlfiles import SCHEMA, query

_UNAVAILABLE = (
    OSError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidPasswordError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ClientConfigurationError,
    TimeoutError,
    ValueError,  # a DSN that does not parse
    OverflowError,  # a port out of range
)


def _unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailableError:
    reason = str(exc).strip() or type(exc).__name__
    return DatabaseUnavailableError(f"cannot connect to {redact(dsn)}: {reason}")


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """One connection to ``dsn`` (a URL or libpq key=value pairs), or
    :class:`DatabaseUnavailableError`."""
    try:
        return await asyncpg.connect(as_url(dsn), timeout=10, **kwargs)
    except _UNAVAILABLE as exc:
        raise _unavailable(dsn, exc) from None


async def create_pool(dsn: str, **kwargs: Any) -> asyncpg.Pool:
    """A pool on ``dsn``, or :class:`DatabaseUnavailableError`."""
    kwargs.setdefault("min_size", 1)
    kwargs.setdefault("max_size", 10)
    try:
        pool = await asyncpg.create_pool(as_url(dsn), timeout=10, **kwargs)
    except _UNAVAILABLE as exc:
        raise _unavailable(dsn, exc) from None
    assert pool is not None
    return pool


async def require_schema(connection: asyncpg.Connection, schema: str = SCHEMA) -> None:
    """:class:`SchemaMissingError` unless the answers table of ``schema`` exists."""
    found = await connection.fetchval(query("catalog.sql", "answers_table"), schema)
    if not found:
        raise SchemaMissingError(
            f"schema {schema!r} has no counter tables; run 'selfology-counters migrate' first"
        )
