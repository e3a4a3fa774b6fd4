"""A throwaway PostgreSQL server with ``wal_level = logical``, for the replication tests.

A publisher needs ``wal_level = logical``, which takes effect only at start. The servers the
suite runs on may not have it (the shared system server has ``replica`` and must not be
restarted), so the tests start one of their own: of the same major version as
``SELFOLOGY_TEST_DSN``'s server when its binaries are installed (Debian's layout), else the
embedded one.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from selfology_counters import embedded

SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    # Up to PostgreSQL 15 the launcher starts no apply worker sooner than this after the
    # last one it started (5 s by default): each test's new subscription would wait for it.
    "wal_retrieve_retry_interval": "100ms",
}
DEBIAN_BINARIES = "/usr/lib/postgresql/{major}/bin"
# initdb and postgres refuse to run as root: as root, run them as this system user.
SERVER_USER = "postgres"


async def _fetch_settings(dsn: str) -> tuple[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        level = await connection.fetchval("SHOW wal_level")
        version = await connection.fetchval("SHOW server_version_num")
        return str(level), int(version) // 10000
    finally:
        await connection.close()


@contextmanager
def logical_server(configured: str | None) -> Iterator[tuple[str, str]]:
    """Yields (maintenance DSN, what it is) of a server with wal_level = logical."""
    if configured:
        level, major = asyncio.run(_fetch_settings(configured))
        if level == "logical":
            yield configured, "the configured server"
            return
        bindir = Path(DEBIAN_BINARIES.format(major=major))
        if (bindir / "initdb").exists():
            with _versioned_server(bindir) as dsn:
                yield dsn, f"a throwaway PostgreSQL {major}"
            return
    with _embedded_server() as dsn:
        yield dsn, "a throwaway embedded PostgreSQL"


@contextmanager
def _embedded_server() -> Iterator[str]:
    parent = Path(tempfile.mkdtemp(prefix="selfology-test-logical-"))
    pgdata = parent / "pgdata"
    try:
        dsn = embedded.dsn(pgdata, throwaway=True)
        embedded.configure(pgdata, SETTINGS)
        try:
            yield dsn
        finally:
            embedded.discard(pgdata)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def _versioned_server(bindir: Path) -> Iterator[str]:
    """initdb, start on a free port of the loopback (and a socket in the directory), stop
    fast and delete at the end."""
    parent = Path(tempfile.mkdtemp(prefix="selfology-test-logical-"))
    as_root = os.geteuid() == 0
    if as_root:
        account = pwd.getpwnam(SERVER_USER)
        os.chown(parent, account.pw_uid, account.pw_gid)
    pgdata = parent / "pgdata"

    def run(*command: str) -> None:
        prefix = ["runuser", "-u", SERVER_USER, "--"] if as_root else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    port = _free_port()
    options = " ".join(f"-c {k}={v}" for k, v in SETTINGS.items())
    try:
        run(str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust")
        run(
            str(bindir / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-l",
            str(parent / "log"),
            "-o",
            f"-p {port} -k {parent} -c listen_addresses=127.0.0.1 {options}",
            "start",
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop")
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
