"""The original health tool's command line (scripts/counter_health_check.py) and its view's
query keep working on our schema: same commands, the truth, and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from selfology_counters.sqlfiles import render
from tests.test_adopt import ORIGINAL
from tests.test_benchmark import leftovers
from tests.truth import assert_exact

SCRIPT = str(Path(__file__).resolve().parent.parent / "scripts" / "counter_health_check.py")
BOT_INSERT = (
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
    " VALUES ($1, $2, $3)"
)
# Migration 004's trigger as the original bot had it: one upsert of user_stats per answer.
TRIGGER_004 = """
CREATE FUNCTION selfology.update_user_stats_on_answer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO selfology.user_stats AS us (user_id, total_answers_lifetime)
    SELECT s.user_id, 1 FROM selfology.onboarding_sessions s WHERE s.id = NEW.session_id
    ON CONFLICT (user_id) DO UPDATE SET total_answers_lifetime = us.total_answers_lifetime + 1;
    RETURN NEW;
END $$;
CREATE TRIGGER update_user_stats_trigger AFTER INSERT ON selfology.user_answers_new
    FOR EACH ROW EXECUTE FUNCTION selfology.update_user_stats_on_answer();
"""


def script(
    *args: str, dsn: str | None, variable: str = "SELFOLOGY_DSN"
) -> subprocess.CompletedProcess[str]:
    """``python scripts/counter_health_check.py ARGS`` as the runbooks run it."""
    env = {k: v for k, v in os.environ.items() if k not in ("SELFOLOGY_DSN", "DATABASE_URL")}
    if dsn is not None:
        env[variable] = dsn
    return subprocess.run(
        [sys.executable, SCRIPT, *args], env=env, capture_output=True, text=True, timeout=180
    )


def execute(dsn: str, sql: str, *args: object) -> None:
    async def go() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(sql, *args)
        finally:
            await connection.close()

    asyncio.run(go())


def fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(dsn)
        try:
            return await connection.fetch(sql)
        finally:
            await connection.close()

    return asyncio.run(go())


POPULATE = """
INSERT INTO selfology.onboarding_sessions (user_id) SELECT u FROM generate_series(1, 5) u;
INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)
SELECT s.id, 'q' || g, 'a' FROM selfology.onboarding_sessions s, generate_series(1, 4) g;
INSERT INTO selfology.digital_personality (user_id) VALUES (1), (2), (3);
"""
# Value drift on each counter, and a user_stats row the original's check could not see.
DRIFT = """
SELECT set_config('selfology_counters.counting', 'on', false);  -- past the keep triggers
UPDATE selfology.onboarding_sessions SET questions_answered = 40 WHERE user_id = 1;
UPDATE selfology.user_stats SET total_answers_lifetime = 1 WHERE user_id = 2;
UPDATE selfology.digital_personality SET total_answers_analyzed = 9 WHERE user_id = 3;
UPDATE selfology.user_stats SET total_answers_lifetime = 7 WHERE user_id = 4;
SET session_replication_role = replica;  -- past the guard, as a restore would
DELETE FROM selfology.user_stats WHERE user_id = 5;
SET session_replication_role = origin;
"""
DRIFTED = {
    ("onboarding_sessions.questions_answered", 1): (40, 4),
    ("user_stats.total_answers_lifetime", 2): (1, 4),
    ("digital_personality.total_answers_analyzed", 3): (9, 4),
    ("user_stats.total_answers_lifetime", 4): (7, 4),
    ("user_stats.total_answers_lifetime", 5): (None, 4),
}


def test_the_five_original_commands_on_a_drifted_database(db: str) -> None:
    execute(db, POPULATE)
    execute(db, DRIFT)

    check = script("check", dsn=db)
    assert check.returncode == 1, check.stderr
    for (counter, key), (stored, actual) in DRIFTED.items():
        shown = "-" if stored is None else str(stored)
        assert any(
            line.split()[:4] == [counter, str(key), shown, str(actual)]
            for line in check.stdout.splitlines()
        ), (counter, key, check.stdout)
    assert "INCONSISTENT" in check.stdout and "MISSING_ROW" in check.stdout
    assert check.stdout.rstrip().endswith("PROBLEMS FOUND")
    assert f"database: {db} (SELFOLOGY_DSN)" in check.stderr and "database:" not in check.stdout
    as_json = json.loads(script("check", "--json", dsn=db).stdout)
    assert {(i["counter"], i["key"]): (i["stored"], i["actual"]) for i in as_json["issues"]} == (
        DRIFTED
    )

    dry = script("repair", "--dry-run", dsn=db)
    assert dry.returncode == 1, dry.stderr
    assert dry.stdout.splitlines()[0] == f"would change {len(DRIFTED)} counters"
    assert "user_stats.total_answers_lifetime 2: 1 -> 4" in dry.stdout
    assert "user_stats.total_answers_lifetime 5: (no row) -> 4" in dry.stdout
    assert script("check", dsn=db).returncode == 1  # the dry run changed nothing

    fixed = script("repair", dsn=db)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.splitlines()[0] == f"changed {len(DRIFTED)} counters"
    assert "onboarding_sessions.questions_answered 1: 40 -> 4" in fixed.stdout
    clean = script("check", dsn=db)
    assert clean.returncode == 0 and clean.stdout.rstrip().endswith("CONSISTENT")
    assert "consistency: 100.0000% (0 counters wrong)" in clean.stdout

    stats = script("stats", dsn=db)
    assert stats.returncode == 0, stats.stderr
    assert "trigger user_answers_new.selfology_counters_insert_v1: CURRENT" in stats.stdout
    assert "answers written in the last hour: 20" in stats.stdout
    assert "ORIGINAL" not in stats.stdout

    bench = script("benchmark", "10", dsn=db)
    assert bench.returncode == 0, bench.stderr
    assert "Test: 10 sequential inserts" in bench.stdout
    assert all(word in bench.stdout for word in ("Avg Time", "Total Time", "Throughput"))
    assert bench.stdout.rstrip().endswith("verification: counters equal COUNT(*)")
    assert asyncio.run(leftovers(db)) == []  # its test data went with its scratch schema
    assert script("check", dsn=db).returncode == 0  # and the real counters were not touched

    # DATABASE_URL is read as the CLI reads it.
    via_url = script("check", dsn=db, variable="DATABASE_URL")
    assert via_url.returncode == 0 and "(DATABASE_URL)" in via_url.stderr


def test_the_original_triggers_next_to_ours_are_named_with_their_double_counting(db: str) -> None:
    execute(db, POPULATE)
    # Migration 007 applied again by hand, and 004's trigger left behind.
    execute(db, render("strategy_007.sql", "selfology") + TRIGGER_004)

    stats = script("stats", dsn=db)
    assert stats.returncode == 1, stats.stderr
    for name, migration in (
        ("update_all_answer_counters_trigger", "007"),
        ("update_user_stats_trigger", "004"),
    ):
        assert (
            f"ORIGINAL TRIGGER FOUND: user_answers_new.{name} is the ORIGINAL Selfology counter "
            f"trigger (its migration {migration})"
        ) in stats.stdout
        assert f"DROP TRIGGER IF EXISTS {name} ON " in stats.stdout
    originals = json.loads(script("stats", "--json", dsn=db).stdout)["original_triggers"]
    assert [o["migration"] for o in originals] == ["007", "004"]

    for k in range(3):
        execute(db, BOT_INSERT, 1, f"again{k}", "answer")
    check = script("check", dsn=db)
    assert check.returncode == 1
    found = json.loads(script("check", "--json", dsn=db).stdout)
    assert {(i["counter"], i["key"]): (i["stored"], i["actual"]) for i in found["issues"]} == {
        ("onboarding_sessions.questions_answered", 1): (4 + 6, 7),  # ours and 007
        ("user_stats.total_answers_lifetime", 1): (4 + 9, 7),  # ours, 007 and 004
        ("digital_personality.total_answers_analyzed", 1): (4 + 6, 7),
    }
    assert "double counting: 3 counters are above COUNT(*), by up to 6" in check.stdout
    assert {o["trigger"] for o in found["original_triggers"]} == {
        "user_answers_new.update_all_answer_counters_trigger",
        "user_answers_new.update_user_stats_trigger",
    }

    # What check says to do, done: the removal it prints, then repair.
    removal = [line.strip() for line in check.stdout.splitlines() if "DROP " in line]
    assert len(removal) == 4
    execute(db, "\n".join(removal))
    assert script("repair", dsn=db).returncode == 0
    assert script("check", dsn=db).returncode == 0
    execute(db, BOT_INSERT, 1, "after", "answer")

    async def exact() -> None:
        connection = await asyncpg.connect(db)
        try:
            await assert_exact(connection)
        finally:
            await connection.close()

    asyncio.run(exact())


def test_on_the_original_database_not_adopted_it_names_its_trigger(empty_db: str) -> None:
    execute(empty_db, ORIGINAL)
    for command in ("check", "stats", "repair"):
        result = script(command, dsn=empty_db)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        [line] = [line for line in result.stderr.splitlines() if "error" in line]
        assert "original Selfology schema, not adopted yet" in line
        assert "user_answers_new.update_all_answer_counters_trigger still counts" in line
        assert "migrate --dry-run" in line and "Traceback" not in result.stderr


def test_what_cannot_run_exits_2() -> None:
    unknown = script("vacuum", dsn=None)
    assert unknown.returncode == 2 and "unknown command: 'vacuum'" in unknown.stderr
    assert script("benchmark", "zero", dsn=None).returncode == 2  # Click's usage error
    nowhere = script("check", dsn="postgresql://someone:s3cret@127.0.0.1:1/nowhere")
    assert nowhere.returncode == 2
    assert "s3cret" not in nowhere.stderr + nowhere.stdout and "127.0.0.1" in nowhere.stderr
    helped = script("--help", dsn=None)
    assert helped.returncode == 0 and "repair [--dry-run]" in helped.stdout


ORIGINAL_VIEW_QUERY = """
SELECT user_id, user_stats_count, actual_answer_count, personality_count, status, drift
  FROM selfology.counter_consistency_check
 WHERE status = 'INCONSISTENT'
"""


def test_the_original_views_query_finds_the_drifted_users(db: str) -> None:
    execute(db, POPULATE)
    execute(db, DRIFT)
    rows = fetch(db, ORIGINAL_VIEW_QUERY)
    # One row per drifted counter, each carrying its user's figures as the original's did:
    # user_stats_count and personality_count as stored (NULL: no row), actual_answer_count
    # the truth; the missing user_stats row of user 5 is MISSING_ROW, not INCONSISTENT.
    assert {
        r["user_id"]: (r["user_stats_count"], r["actual_answer_count"], r["personality_count"])
        for r in rows
    } == {
        1: (4, 4, 4),
        2: (1, 4, 4),
        3: (4, 4, 9),
        4: (7, 4, None),
    }
    assert len(rows) == 4 and all(r["drift"] != 0 for r in rows)


def test_the_original_views_columns_follow_ours(db: str) -> None:
    columns = fetch(
        db,
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'selfology' AND table_name = 'counter_consistency_check'"
        " ORDER BY ordinal_position",
    )
    # Ours first (their released prefix is test_model's to hold), the original's three last.
    assert [tuple(c) for c in columns][-3:] == [
        ("user_stats_count", "bigint"),
        ("actual_answer_count", "bigint"),
        ("personality_count", "bigint"),
    ]
    assert [c["column_name"] for c in columns][:7] == [
        "counter",
        "key",
        "user_id",
        "stored",
        "actual",
        "drift",
        "status",
    ]


def test_no_command_runs_check_as_the_original_did(db: str) -> None:
    plain = script(dsn=db)
    assert plain.returncode == 0, plain.stderr
    assert "CONSISTENT" in plain.stdout
    as_json = script("--json", dsn=db)  # options alone: still check's
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["consistent"] is True
    execute(db, POPULATE)
    execute(db, DRIFT)
    assert script(dsn=db).returncode == 1


def python_without_the_package() -> str:
    """A Python that cannot import the package (as plain ``python`` outside the venv)."""
    for candidate in (shutil.which("python3"), "/usr/bin/python3", sys._base_executable):
        if (
            candidate
            and subprocess.run(
                [candidate, "-c", "import selfology_counters"], capture_output=True
            ).returncode
        ):
            return candidate
    pytest.skip("every Python here can import selfology_counters")


def test_plain_python_runs_it_with_the_checkout_venv_or_says_what_to_do(
    db: str, tmp_path: Path
) -> None:
    python = python_without_the_package()
    env = {k: v for k, v in os.environ.items() if k not in ("SELFOLOGY_DSN", "DATABASE_URL")}
    env["SELFOLOGY_DSN"] = db
    checkout_python = Path(SCRIPT).parent.parent / ".venv" / "bin" / "python"
    if checkout_python.exists():  # the README's set-up: run again with .venv's Python
        ran = subprocess.run(
            [python, SCRIPT, "check"], env=env, capture_output=True, text=True, timeout=180
        )
        assert ran.returncode == 0 and "CONSISTENT" in ran.stdout, ran.stderr
    # Elsewhere (the script copied into the bot's repository, say): one line saying how.
    elsewhere = tmp_path / "scripts" / "counter_health_check.py"
    elsewhere.parent.mkdir()
    shutil.copy(SCRIPT, elsewhere)
    lost = subprocess.run(
        [python, str(elsewhere), "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert lost.returncode == 2 and lost.stdout == ""
    [line] = lost.stderr.splitlines()
    assert ".venv/bin/python scripts/counter_health_check.py" in line
    assert "docs/ADOPTING.md" in line and "pip install selfology-counters" not in line
