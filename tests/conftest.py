"""Test servers and databases: real PostgreSQL only.

The server is ``SELFOLOGY_TEST_DSN`` (a URL) when set, else an embedded server started for
this run. A template database is migrated once; every test gets its own copy.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings

from selfology_counters import embedded
from selfology_counters.config import with_database
from selfology_counters.lifecycle import upgrade

# The fuzz and property tests draw the same examples on every run, so that a commit's verdict
# does not depend on the draw (CI runs once, in a fresh clone, right after the work stops).
# To look for new failures: pytest --hypothesis-profile=explore [--hypothesis-seed=N].
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("repeatable")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``chart`` skip, saying how to get it, where matplotlib (the ``compare``
    extra) is not installed: the bot's install leaves it out. On the pass against
    SELFOLOGY_TEST_DSN's server, tests marked ``server_independent`` skip: they exercise no
    server of the suite's, and the embedded pass has run them."""
    from selfology_counters.bench.compare_chart import can_draw, install_hint

    if os.environ.get("SELFOLOGY_TEST_DSN"):
        once = pytest.mark.skip(
            reason="needs no server of the suite's: run once, on the embedded pass"
        )
        for item in items:
            if item.get_closest_marker("server_independent"):
                item.add_marker(once)
    if can_draw():
        return
    skip = pytest.mark.skip(reason=f"matplotlib (the compare extra) is missing: {install_hint()}")
    for item in items:
        if "chart" in item.keywords:
            item.add_marker(skip)


def _admin(dsn: str, *statements: str) -> None:
    async def go() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(go())


@pytest.fixture(scope="session")
def server_dsn() -> str:
    """A DSN for the maintenance database of the server under test."""
    configured = os.environ.get("SELFOLOGY_TEST_DSN")
    if configured:
        return configured
    # Not under pytest's basetemp: another pytest run may prune that while this server runs.
    parent = Path(tempfile.mkdtemp(prefix="selfology-test-pg-"))
    # Registered before the server's own exit handler, so it runs after it (LIFO).
    atexit.register(shutil.rmtree, parent, ignore_errors=True)
    return embedded.dsn(parent / "pgdata", throwaway=True)


def _fresh_name(prefix: str) -> str:
    # Generated here, never taken from input: CREATE DATABASE cannot take a bind parameter.
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    """The name of a database with every migration applied."""
    name = _fresh_name("sc_template")
    _admin(server_dsn, f'CREATE DATABASE "{name}"')
    try:
        upgrade(with_database(server_dsn, name))
        yield name
    finally:
        _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _database(server_dsn: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """A new database (a copy of ``template``, else empty) for one test; dropped after it."""
    name = _fresh_name(prefix)
    copy = f' TEMPLATE "{template}"' if template else ""
    _admin(server_dsn, f'CREATE DATABASE "{name}"{copy}')
    try:
        yield with_database(server_dsn, name)
    finally:
        _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db(server_dsn: str) -> Iterator[str]:
    """The DSN of a new, empty database (no migrations)."""
    with _database(server_dsn, "sc_empty") as dsn:
        yield dsn


@pytest.fixture
def second_empty_db(server_dsn: str) -> Iterator[str]:
    """Another new, empty database, for tests that compare two."""
    with _database(server_dsn, "sc_empty") as dsn:
        yield dsn


@pytest.fixture
def db(server_dsn: str, template_db: str) -> Iterator[str]:
    """The DSN of a migrated database of this test's own."""
    with _database(server_dsn, "sc_test", template_db) as dsn:
        yield dsn


@pytest.fixture
def second_db(server_dsn: str, template_db: str) -> Iterator[str]:
    """Another migrated database: a copy of the same template, so its tables have the same
    oids as ``db``'s (as in any two databases made from one template)."""
    with _database(server_dsn, "sc_test", template_db) as dsn:
        yield dsn


@pytest.fixture
async def conn(db: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to this test's own migrated database."""
    connection = await asyncpg.connect(db)
    yield connection
    await connection.close()
