"""The console script, run as a user runs it: exit codes, stdout/stderr, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def every_command() -> list[tuple[str, ...]]:
    """Every command of the Typer app, groups' subcommands included, as argv prefixes."""
    import typer

    from selfology_counters.cli import app

    group = typer.main.get_command(app)
    found: list[tuple[str, ...]] = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            found += [(name, sub) for sub in subcommands]
        else:
            found.append((name,))
    return found


@pytest.mark.server_independent
def test_help_explains_every_command() -> None:
    commands = every_command()
    assert len(commands) >= 12  # migrate ... compare, and the embedded group's three
    listing = cli("--help")
    assert listing.returncode == 0
    for command in commands:
        assert command[0] in listing.stdout
        shown = cli(*command, "--help")
        assert shown.returncode == 0, shown.stderr
        summary = shown.stdout.split("Options:")[0].split("\n", 2)[-1]
        assert summary.strip(), command  # a description, not only the usage line
        assert "<bool>" not in shown.stdout and "`" not in shown.stdout, shown.stdout
        # Paragraphs rewrapped: no line ends in the middle of a sentence with a short tail.
        assert all(len(line) <= 80 for line in shown.stdout.splitlines()), shown.stdout


def test_migrate_then_demo_json(empty_db: str) -> None:
    first = cli("migrate", "--json", dsn=empty_db)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["changed"] is True
    again = cli("migrate", dsn=empty_db)
    assert "nothing to do" in again.stdout
    demo = cli("demo", "--json", "--yes", "--dsn", empty_db)
    assert demo.returncode == 0, demo.stderr
    result = json.loads(demo.stdout)
    assert result["exact"] is True
    assert result["questions_answered"] == result["session_count_star"] == 9


def test_demo_without_schema_says_run_migrate(empty_db: str) -> None:
    line = assert_one_line_error(cli("demo", "--yes", dsn=empty_db))
    assert "migrate" in line


def test_demo_refuses_a_database_named_by_a_dsn_without_yes(db: str) -> None:
    import asyncio

    import asyncpg

    async def answers() -> int:
        connection = await asyncpg.connect(db)
        try:
            return int(await connection.fetchval("SELECT count(*) FROM selfology.user_answers_new"))
        finally:
            await connection.close()

    for args in (("demo",), ("demo", "--json")):
        line = assert_one_line_error(cli(*args, dsn=db))
        assert "--yes" in line
    assert asyncio.run(answers()) == 0  # nothing written
    assert cli("demo", "--yes", dsn=db).returncode == 0


def test_unreachable_server_and_bad_dsn_exit_2_without_password() -> None:
    closed_port = "postgresql://someone:s3cret@127.0.0.1:1/nowhere"
    for command in (("demo", "--yes"), ("migrate",)):
        line = assert_one_line_error(cli(*command, "--dsn", closed_port))
        assert "s3cret" not in line
        assert "127.0.0.1" in line
    assert_one_line_error(cli("demo", "--yes", "--dsn", "postgresql://[broken"))
    in_query = assert_one_line_error(
        cli("check", "--dsn", "postgresql://u@127.0.0.1:1/x?password=s3cret")
    )
    assert "s3cret" not in in_query
    assert_one_line_error(cli("check", "--dsn", "postgresql://u:s3cret@127.0.0.1:99999/x"))
    # A DSN typed without --dsn is a usage error that echoes it; a '#' in the user name ends
    # a URL's netloc early, so a URL parser finds no password there to hide.
    for dsn in ("postgresql://u:s3cret@127.0.0.1:1/x", "postgresql://u#1:s3cret@127.0.0.1:1/x"):
        assert "s3cret" not in assert_one_line_error(cli("check", dsn))
        assert "s3cret" not in assert_one_line_error(cli("check", "--dsn", dsn))


def test_check_repair_stats_through_the_console_script(db: str) -> None:
    import asyncio

    import asyncpg

    from tests.truth import write_counters_by_hand

    async def drift() -> None:
        connection = await asyncpg.connect(db)
        await connection.execute(
            "INSERT INTO selfology.onboarding_sessions (user_id) VALUES (1);"
            "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
            " SELECT 1, 'q' || g, 'a' FROM generate_series(1, 3) g;"
        )
        await write_counters_by_hand(
            connection, "UPDATE selfology.user_stats SET total_answers_lifetime = 9"
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
        {
            "counter": "user_stats.total_answers_lifetime",
            "key": 1,
            "user_id": 1,
            "stored": 9,
            "actual": 3,
            "status": "INCONSISTENT",
            "pending": 0,
            "drift": 6,
        }
    ]
    assert {"kind", "name", "state", "installed", "enabled", "current"} <= set(report["objects"][0])
    assert "database:" in found.stderr and "database:" not in found.stdout

    human = cli("check", "--user", "1", dsn=db)
    assert human.returncode == 1 and "user_stats.total_answers_lifetime" in human.stdout
    assert "(1 counter wrong)" in human.stdout

    dry = cli("repair", "--dry-run", "--json", dsn=db)
    assert dry.returncode == 1
    assert json.loads(dry.stdout)["changes"] == [
        {"counter": "user_stats.total_answers_lifetime", "key": 1, "before": 9, "after": 3}
    ]
    assert cli("check", dsn=db).returncode == 1  # the dry run wrote nothing
    fixed = cli("repair", "--batch-size", "1", dsn=db)
    assert fixed.returncode == 0 and "9 -> 3" in fixed.stdout
    assert fixed.stdout.splitlines()[0] == "changed 1 counter"
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


def libpq_pairs(url: str) -> str:
    """``url`` written as libpq key=value pairs, as an operator would type them."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    pairs = {
        "host": query.get("host") or parts.hostname or "",
        "port": str(parts.port or query.get("port") or ""),
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "dbname": unquote(parts.path.lstrip("/")),
    }
    return " ".join(f"{k}='{v}'" for k, v in pairs.items() if v)


def test_an_empty_dsn_is_an_error_naming_where_it_came_from(empty_db: str) -> None:
    line = assert_one_line_error(cli("check", "--dsn", ""))
    assert "--dsn is empty" in line
    for var in ("SELFOLOGY_DSN", "DATABASE_URL"):
        env = {k: v for k, v in os.environ.items() if k not in ("SELFOLOGY_DSN", "DATABASE_URL")}
        result = subprocess.run(
            [CLI, "check"], env={**env, var: ""}, capture_output=True, text=True, timeout=60
        )
        assert f"${var} is set but empty" in assert_one_line_error(result)
    # An empty SELFOLOGY_DSN is an error even when DATABASE_URL would name a database.
    both = subprocess.run(
        [CLI, "check"],
        env={**os.environ, "SELFOLOGY_DSN": "", "DATABASE_URL": empty_db},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "$SELFOLOGY_DSN is set but empty" in assert_one_line_error(both)


def test_with_json_a_failure_is_json_on_stdout_too(empty_db: str) -> None:
    for args in (
        ("check", "--json", "--dsn", "postgresql://u:s3cret@127.0.0.1:1/x"),
        ("demo", "--json", "--yes"),  # schema missing
        ("check", "--json", "--no-such-option"),  # a usage error
        ("check", "--json", "--dsn", ""),
    ):
        result = cli(*args, dsn=empty_db)
        line = assert_one_line_error(result)
        error = json.loads(result.stdout)
        assert error == {"error": line.removeprefix("selfology-counters: error: "), "exit_code": 2}
        assert "s3cret" not in result.stdout


def test_usage_errors_are_one_line_exit_2() -> None:
    for args in (("check", "--bogus"), ("check", "--user", "0"), ("benchmark", "x"), ("nosuch",)):
        result = cli(*args)
        line = assert_one_line_error(result)
        assert line.startswith("selfology-counters: error: ")
        assert "╭" not in result.stderr and "Usage:" not in result.stderr
        assert result.stdout == ""


def test_libpq_key_value_dsns_work_for_migrate_and_check(empty_db: str) -> None:
    pairs = libpq_pairs(empty_db)
    migrated = cli("migrate", "--json", "--dsn", pairs)  # Alembic and psycopg
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout)["changed"] is True
    checked = cli("check", "--json", dsn=pairs)  # asyncpg
    assert checked.returncode == 0, checked.stderr
    secret = "host=127.0.0.1 port=1 dbname=x user=u password='s3 cr3t'"
    for command in ("check", "migrate"):
        result = cli(command, "--json", "--dsn", secret)
        assert_one_line_error(result)
        assert "s3" not in result.stderr + result.stdout and "cr3t" not in result.stderr
        assert "127.0.0.1:1" in result.stderr


SECRET_DSN = "postgresql://someone:Sekret-4711@db.invalid/selfology"


def test_an_unexpected_exception_is_one_scrubbed_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from selfology_counters import cli as module

    def broken(dsn: str | None) -> str:
        raise RuntimeError(f"a bug while resolving {dsn}")

    monkeypatch.setattr(module, "target_dsn", broken)  # a bug of ours, not the database's
    monkeypatch.delenv(module.DEBUG_VARIABLE, raising=False)
    with pytest.raises(SystemExit) as exited:
        module.main(["check", "--json", "--dsn", SECRET_DSN])
    out, err = capsys.readouterr()
    assert exited.value.code == 2
    assert err.count("\n") == 1 and module.INTERNAL_ERROR in err and "RuntimeError" in err, err
    assert "Sekret-4711" not in out + err and "Traceback" not in out + err
    assert json.loads(out)["exit_code"] == 2
    # With the variable set, the traceback is there for a bug report.
    monkeypatch.setenv(module.DEBUG_VARIABLE, "1")
    with pytest.raises(RuntimeError, match="a bug while resolving"):
        module.main(["check", "--dsn", SECRET_DSN])


# The original bot's passwords are of this shape (made up here): "/", "+" and "=".
BOT_LIKE_PASSWORD = "Qe41tk+9pLRWuN2Xz7c0/Hd+yAmB3="


def test_a_password_a_url_cannot_carry_is_never_shown_and_the_error_says_how(db: str) -> None:
    # Typed as is, "/", "?", "#" and "@" end a URL's password early: the driver read the
    # rest as port or query and quoted it back ("invalid literal for int(): 'Qe41tk+9p...'").
    typed = [
        f"postgresql://postgres:{BOT_LIKE_PASSWORD}@127.0.0.1:1/n8n",
        "postgresql://u:ab?Sekr3t@127.0.0.1:1/db",
        "postgresql://u:ab#Sekr3t@127.0.0.1:1/db",
        "postgresql://u:ab@Sekr3t@127.0.0.1:1/db",
        "postgresql://u:Sekr3t/ab@127.0.0.1:1/db?sslmode=disable",
    ]
    for dsn in typed:
        for command in (("check", "--json"), ("migrate",), ("demo",), ("watch", "--port", "0")):
            result = cli(*command, dsn=dsn)
            line = assert_one_line_error(result)
            shown = result.stdout + result.stderr
            for piece in ("Qe41tk", "9pLRWuN2Xz7c0", "Hd+yAmB3", "Sekr3t"):
                assert piece not in shown, (dsn, shown)
            assert "percent-encode" in line and "key=value" in line and ".pgpass" in line
            assert "internal error" not in line and "could not start" not in line, line
    # Written the ways the message says, the same password works.
    from urllib.parse import quote, urlsplit

    host = urlsplit(db).netloc.rsplit("@", 1)[-1]
    encoded = db.replace(
        urlsplit(db).netloc, f"postgres:{quote(BOT_LIKE_PASSWORD, safe='')}@{host}"
    )
    for dsn in (encoded, libpq_pairs(encoded)):
        checked = cli("check", "--json", dsn=dsn)
        assert checked.returncode == 0, checked.stderr
        assert "Qe41tk" not in checked.stdout + checked.stderr


def test_a_password_written_as_pairs_reaches_the_driver_intact() -> None:
    import asyncio

    from psycopg import conninfo

    from selfology_counters import OnboardingDAO
    from selfology_counters.config import as_url
    from selfology_counters.errors import InvalidDsnError

    # The library refuses the URL written as is just as the command does, before connecting.
    typed = f"postgresql://postgres:{BOT_LIKE_PASSWORD}@127.0.0.1:1/n8n"
    with pytest.raises(InvalidDsnError, match="percent-encode") as refused:
        asyncio.run(OnboardingDAO.connect(typed))
    assert "Qe41tk" not in str(refused.value)

    for password in (BOT_LIKE_PASSWORD, "a/b?c#d@e+f=g", "p@ss word'q"):
        escaped = password.replace("\\", "\\\\").replace("'", "\\'")
        url = as_url(f"host=db port=5432 dbname=n8n user=postgres password='{escaped}'")
        # libpq reads the URL as asyncpg does: percent-decoded, "+" kept as "+".
        assert conninfo.conninfo_to_dict(url)["password"] == password


def test_a_dsn_refused_before_any_command_runs_is_one_line_not_an_internal_error() -> None:
    # demo checks --dsn before resolving it, watch resolves it itself.
    line = assert_one_line_error(cli("demo", "--dsn", ""))
    assert "--dsn is empty" in line and "internal error" not in line
    line = assert_one_line_error(cli("watch", "--port", "0", "--dsn", ""))
    assert "--dsn is empty" in line and "could not start" not in line


def test_every_command_takes_json(tmp_path: Path) -> None:
    for command in every_command():
        assert "--json" in cli(*command, "--help").stdout, command
    env = {**os.environ, "SELFOLOGY_EMBEDDED_DIR": str(tmp_path / "pgdata")}
    where = subprocess.run(
        [CLI, "embedded", "path", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert where.returncode == 0, where.stderr
    assert json.loads(where.stdout) == {"data_dir": str(tmp_path / "pgdata")}
    # watch logs JSON lines; with --json, what stops it is a JSON object on stdout too.
    refused = cli("watch", "--port", "0", "--json", "--dsn", "")
    assert json.loads(refused.stdout)["exit_code"] == 2


def test_demo_in_deferred_mode_labels_its_figures_exact_reads(db: str) -> None:
    assert cli("mode", "deferred", dsn=db).returncode == 0
    shown = cli("demo", "--yes", dsn=db)
    assert shown.returncode == 0, shown.stderr
    header = next(line for line in shown.stdout.splitlines() if line.startswith("counter "))
    assert header.split() == ["counter", "exact", "COUNT(*)"]  # not "stored": they lag
    assert "deferred mode: exact reads" in shown.stdout
    assert json.loads(cli("demo", "--yes", "--json", dsn=db).stdout)["mode"] == "deferred"
    assert cli("mode", "immediate", dsn=db).returncode == 0
    header = next(
        line
        for line in cli("demo", "--yes", dsn=db).stdout.splitlines()
        if line.startswith("counter ")
    )
    assert header.split() == ["counter", "stored", "COUNT(*)"]


def test_the_readmes_command_table_names_every_option() -> None:
    # repair --user existed and was documented nowhere but in --help.
    import re

    import typer

    from selfology_counters.cli import app

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"^\| `selfology-counters ([a-z]+)[^`]*` \|.*$", readme, re.MULTILINE)
    }
    missing = []
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        for sub in getattr(command, "commands", {None: command}).values():
            for param in sub.params:
                shown = param.param_type_name == "option" and not getattr(param, "hidden", False)
                for flag in param.opts if shown else []:
                    common = flag in ("--dsn", "--json", "--help") or not flag.startswith("--")
                    if not common and flag not in rows.get(name, ""):
                        missing.append(f"{name} {flag}")
    assert missing == []
