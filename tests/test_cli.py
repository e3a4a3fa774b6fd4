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
    in_query = assert_one_line_error(
        cli("check", "--dsn", "postgresql://u@127.0.0.1:1/x?password=s3cret")
    )
    assert "s3cret" not in in_query
    assert_one_line_error(cli("check", "--dsn", "postgresql://u:s3cret@127.0.0.1:99999/x"))


def test_check_repair_stats_through_the_console_script(db: str) -> None:
    import asyncio

    import asyncpg

    async def drift() -> None:
        connection = await asyncpg.connect(db)
        await connection.execute(
            "INSERT INTO selfology.onboarding_sessions (user_id) VALUES (1);"
            "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
            " SELECT 1, 'q' || g, 'a' FROM generate_series(1, 3) g;"
            "UPDATE selfology.user_stats SET total_answers_lifetime = 9;"
        )
        await connection.close()

    clean = cli("check", "--json", dsn=db)
    assert clean.returncode == 0, clean.stderr
    asyncio.run(drift())

    found = cli("check", "--json", dsn=db)
    assert found.returncode == 1
    report = json.loads(found.stdout)
    assert report["consistent"] is False
    assert report["checked"] == {"sessions": 1, "users": 1, "personalities": 0}
    assert report["issues"] == [
        {"counter": "user_stats.total_answers_lifetime", "key": 1, "user_id": 1, "stored": 9,
         "actual": 3, "status": "INCONSISTENT", "pending": 0, "drift": 6}
    ]  # fmt: skip
    assert {"kind", "name", "state", "installed", "enabled", "current"} <= set(report["objects"][0])
    assert "database:" in found.stderr and "database:" not in found.stdout

    human = cli("check", "--user", "1", dsn=db)
    assert human.returncode == 1 and "user_stats.total_answers_lifetime" in human.stdout

    dry = cli("repair", "--dry-run", "--json", dsn=db)
    assert dry.returncode == 1
    assert json.loads(dry.stdout)["changes"] == [
        {"counter": "user_stats.total_answers_lifetime", "key": 1, "before": 9, "after": 3}
    ]
    assert cli("check", dsn=db).returncode == 1  # the dry run wrote nothing
    fixed = cli("repair", "--batch-size", "1", dsn=db)
    assert fixed.returncode == 0 and "9 -> 3" in fixed.stdout
    assert cli("check", dsn=db).returncode == 0
    assert json.loads(cli("repair", "--json", dsn=db).stdout)["changed"] == 0

    stats = cli("stats", "--json", dsn=db)
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["synchronous_commit"] in ("on", "off", "local", "remote_write", "remote_apply")
    assert {t["table"] for t in data["tables"]} >= {"user_answers_new", "user_stats"}
    assert "selfology_counters_insert_v1" in cli("stats", dsn=db).stdout


def test_operator_commands_cannot_run_exit_2(empty_db: str) -> None:
    for command in ("check", "repair", "stats"):
        assert "migrate" in assert_one_line_error(cli(command, dsn=empty_db))
        line = assert_one_line_error(cli(command, "--dsn", "postgresql://u:pw@127.0.0.1:1/x"))
        assert "pw" not in line
    assert cli("repair", "--batch-size", "0", dsn=empty_db).returncode == 2


def test_migrate_reinstalls_a_dropped_trigger(db: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(db)
        await connection.execute(
            "DROP TRIGGER selfology_counters_insert_v1 ON selfology.user_answers_new"
        )
        await connection.close()

    asyncio.run(drop())
    assert cli("check", dsn=db).returncode == 1
    repaired = cli("repair", dsn=db)
    assert repaired.returncode == 1 and "migrate" in repaired.stdout
    migrated = cli("migrate", dsn=db)
    assert migrated.returncode == 0 and "reinstalled" in migrated.stdout
    assert cli("check", dsn=db).returncode == 0
