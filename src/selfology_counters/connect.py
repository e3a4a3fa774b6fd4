"""Opening asyncpg connections and pools, with unreachable-server errors made typed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from selfology_counters.config import DSN_FORMS, as_url, redact, scrub
from selfology_counters.errors import DatabaseUnavailableError, InvalidDsnError, SchemaMissingError
from selfology_counters.sqlfiles import SCHEMA, query

RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
"""What PostgreSQL asks a transaction to retry: a deadlock victim, a serialization failure."""
T = TypeVar("T")


async def retried(work: Callable[[], Awaitable[T]], attempts: int) -> T:
    """``work`` (one transaction), run again after a jittered backoff when PostgreSQL picked it
    as a deadlock or serialization victim, up to ``attempts`` times; the last failure raised."""
    for attempt in range(attempts):
        try:
            return await work()
        except RETRYABLE:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
    raise AssertionError("unreachable")


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


def _checked(dsn: object) -> str:
    """``dsn`` in URL form; :class:`InvalidDsnError` for one that is not a non-blank string
    (an empty DSN would silently mean libpq's defaults: some other database)."""
    if not isinstance(dsn, str) or not dsn.strip():
        given = "empty" if isinstance(dsn, str) else f"a {type(dsn).__name__}, not a string"
        raise InvalidDsnError(f"the DSN is {given}: give {DSN_FORMS}")
    return as_url(dsn)


def _unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailableError:
    # The driver's own message may quote the DSN it could not use: never with its password.
    reason = scrub(str(exc).strip(), [dsn]) or type(exc).__name__
    return DatabaseUnavailableError(f"cannot connect to {redact(dsn)}: {reason}")


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """One connection to ``dsn`` (a URL or libpq key=value pairs), or
    :class:`DatabaseUnavailableError`."""
    url = _checked(dsn)
    try:
        return await asyncpg.connect(url, timeout=10, **kwargs)
    except _UNAVAILABLE as exc:
        raise _unavailable(dsn, exc) from None


async def create_pool(dsn: str, **kwargs: Any) -> asyncpg.Pool:
    """A pool on ``dsn``, or :class:`DatabaseUnavailableError`."""
    kwargs.setdefault("min_size", 1)
    kwargs.setdefault("max_size", 10)
    url = _checked(dsn)
    try:
        pool = await asyncpg.create_pool(url, timeout=10, **kwargs)
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
