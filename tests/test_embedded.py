"""The embedded server as operators meet it: killed clients, WAL size, status and stop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfology_counters import embedded
from tests.test_cli import CLI

# Needs no server of the suite's: run once, on the embedded pass (conftest.py).
pytestmark = pytest.mark.server_independent

USE_SERVER = "from selfology_counters import embedded; print(embedded.dsn(), flush=True)"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory of this test's own; its server stopped and the directory removed."""
    parent = Path(tempfile.mkdtemp(prefix="selfology-embedded-test-"))
    yield parent / "pgdata"
    embedded.stop(parent / "pgdata", force=True)
    shutil.rmtree(parent, ignore_errors=True)


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SELFOLOGY_EMBEDDED_DIR": str(data_dir)}
    env = {k: v for k, v in env.items() if k not in ("SELFOLOGY_DSN", "DATABASE_URL")}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def status(data_dir: Path) -> dict[str, object]:
    result = run(data_dir, CLI, "embedded", "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_killed_client_does_not_keep_the_server_running(data_dir: Path) -> None:
    killed = run(
        data_dir, sys.executable, "-c", USE_SERVER + "; import os; os.kill(os.getpid(), 9)"
    )
    assert killed.returncode == -9
    left = status(data_dir)
    assert left["running"] is True and left["users"] == [] and left["stale_users"] != []
    # The next user forgets the dead one, and as the last user stops the server on its way out.
    assert run(data_dir, sys.executable, "-c", USE_SERVER).returncode == 0
    after = status(data_dir)
    assert after["running"] is False, after
    assert after["stale_users"] == [] and after["users"] == []


def test_wal_is_kept_small(data_dir: Path) -> None:
    dsn = run(data_dir, sys.executable, "-c", USE_SERVER).stdout.strip()
    assert dsn.startswith("postgresql://")
    show = (
        "import asyncio, asyncpg, sys\n"
        "async def main():\n"
        "    c = await asyncpg.connect(sys.argv[1])\n"
        "    names = ['max_wal_size', 'min_wal_size', 'wal_keep_size']\n"
        "    print(','.join([await c.fetchval('SELECT current_setting($1)', n) for n in names]))\n"
        "asyncio.run(main())\n"
    )
    # A process that keeps the server up while we read its settings.
    script = USE_SERVER + "; import subprocess, sys; subprocess.run([sys.executable, '-c', "
    script += repr(show) + ", embedded.dsn()], check=True)"
    shown = run(data_dir, sys.executable, "-c", script)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[-1] == "64MB,32MB,0"


def test_status_path_and_stop(data_dir: Path) -> None:
    assert run(data_dir, CLI, "embedded", "path").stdout.strip() == str(data_dir)
    assert status(data_dir)["exists"] is False  # status starts nothing
    holder = subprocess.Popen(
        [sys.executable, "-c", USE_SERVER + "; import sys; sys.stdin.read()"],
        env={**os.environ, "SELFOLOGY_EMBEDDED_DIR": str(data_dir)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith("postgresql")
        state = status(data_dir)
        assert state["running"] is True and state["users"] == [holder.pid]
        assert int(state["wal_bytes"]) > 0  # type: ignore[call-overload]
        refused = run(data_dir, CLI, "embedded", "stop")
        # Could not run (2), not a problem found (1): the README's exit codes.
        assert refused.returncode == 2 and str(holder.pid) in refused.stderr
        assert status(data_dir)["running"] is True
    finally:
        holder.communicate("", timeout=60)
    assert status(data_dir)["running"] is False
    assert "was not running" in run(data_dir, CLI, "embedded", "stop").stdout


def test_demo_on_a_fresh_embedded_server_needs_nothing(data_dir: Path) -> None:
    # The README's promise: no DSN, no migrate first; the tool's own server is migrated.
    first = run(data_dir, CLI, "demo", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["exact"] is True
    assert "applying revisions" in first.stderr
    again = run(data_dir, CLI, "demo")  # already migrated: straight to the demo
    assert again.returncode == 0, again.stderr
    assert "applying revisions" not in again.stderr and "exact" in again.stdout


def test_an_empty_data_directory_variable_is_an_error_not_the_default(tmp_path: Path) -> None:
    # It fell back to the per-user directory: another server's data, silently.
    env = {k: v for k, v in os.environ.items() if k not in ("SELFOLOGY_DSN", "DATABASE_URL")}
    env |= {"SELFOLOGY_EMBEDDED_DIR": "", "HOME": str(tmp_path), "XDG_DATA_HOME": ""}
    for args in (("embedded", "path"), ("embedded", "status"), ("check",)):
        result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        [line] = [line for line in result.stderr.splitlines() if "error" in line]
        assert "$SELFOLOGY_EMBEDDED_DIR is set but empty" in line
        assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no server was made in the default place
