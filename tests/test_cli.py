"""The console script, run as a user runs it: exit codes, stdout/stderr, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "selfology-counters")


def cli(*args: str, dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SELFOLOGY_DSN", "DATABASE_URL")}
    if dsn is not None:
        env["SELFOLOGY_DSN"] = dsn
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def test_help_explains_every_command() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("migrate", "demo"):
        assert command in result.stdout


def test_migrate_then_demo_json(empty_db: str) -> None:
    first = cli("migrate", "--json", dsn=empty_db)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["changed"] is True
    again = cli("migrate", dsn=empty_db)
    assert "nothing to do" in again.stdout
    demo = cli("demo", "--json", "--dsn", empty_db)
    assert demo.returncode == 0, demo.stderr
    result = json.loads(demo.stdout)
    assert result["exact"] is True
    assert result["questions_answered"] == result["session_count_star"] == 9


def test_demo_without_schema_says_run_migrate(empty_db: str) -> None:
    line = assert_one_line_error(cli("demo", dsn=empty_db))
    assert "migrate" in line


def test_unreachable_server_and_bad_dsn_exit_2_without_password() -> None:
    closed_port = "postgresql://someone:s3cret@127.0.0.1:1/nowhere"
    for command in ("demo", "migrate"):
        line = assert_one_line_error(cli(command, "--dsn", closed_port))
        assert "s3cret" not in line
        assert "127.0.0.1" in line
    assert_one_line_error(cli("demo", "--dsn", "postgresql://[broken"))
