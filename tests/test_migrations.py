"""Migrations: from empty, idempotent, back-filling existing answers, beside the bot's own
Alembic history, and runnable with plain ``alembic upgrade head``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
from alembic import command

from selfology_counters import model, objects
from selfology_counters.lifecycle import upgrade
from selfology_counters.lifecycle.revisions import alembic_config, head_revision, run_upgrade
from tests.truth import assert_exact

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_TRIGGERS = {(t.table, t.name) for t in model.TRIGGERS}
EXPECTED_COLUMNS = {
    "onboarding_sessions": {
        "id",
        "user_id",
        "status",
        "questions_answered",
        "started_at",
        "completed_at",
    },
    "user_answers_new": {
        "id",
        "session_id",
        "user_id",
        "question_json_id",
        "raw_answer",
        "answer_length",
        "answered_at",
        "xid",
    },
    "user_stats": {"user_id", "total_answers_lifetime", "first_answer_at", "updated_at"},
    "digital_personality": {"user_id", "total_answers_analyzed", "last_updated"},
    "counter_consistency_check": {
        "counter",
        "key",
        "user_id",
        "stored",
        "actual",
        "drift",
        "status",
        "pending",
        "user_stats_count",
        "actual_answer_count",
        "personality_count",
    },
    # The original's health view (its migration 008), which the bot's cron script reads.
    "answer_counter_health": {
        "user_id",
        "stored_count",
        "actual_count",
        "drift",
        "health_status",
        "last_sync",
    },
    "counter_mode": {
        "singleton",
        "mode",
        "horizon",
        "switched_at",
        "last_fold_at",
        "last_fold_rows",
    },
}


async def test_catalog_matches_what_the_code_expects(db: str) -> None:
    connection = await asyncpg.connect(db)
    try:
        columns = await connection.fetch(
            "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'selfology' AND table_name <> 'selfology_counters_version'"
        )
        found: dict[str, set[str]] = {}
        for row in columns:
            found.setdefault(row["table_name"], set()).add(row["column_name"])
        assert found == EXPECTED_COLUMNS
        counter_columns = {"questions_answered", "total_answers_lifetime", "total_answers_analyzed"}
        assert {r["is_nullable"] for r in columns if r["column_name"] in counter_columns} == {"NO"}
        triggers = await connection.fetch(
            "SELECT c.relname, t.tgname, t.tgenabled::text,"
            " obj_description(t.oid, 'pg_trigger') AS stamp"
            " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'selfology' AND NOT t.tgisinternal"
        )
        assert {(r["relname"], r["tgname"]) for r in triggers} == EXPECTED_TRIGGERS
        assert {r["tgenabled"] for r in triggers} == {"O"}
        assert all(r["stamp"].startswith("selfology-counters source=") for r in triggers)
        audit = await objects.audit(connection)
        assert [o.label for o in audit.objects if not o.healthy] == []
        version = await connection.fetchval(
            "SELECT version_num FROM selfology.selfology_counters_version"
        )
        assert version == head_revision()
    finally:
        await connection.close()


def test_upgrade_is_idempotent(empty_db: str) -> None:
    first = upgrade(empty_db)
    assert (first.before, first.after, first.changed) == (None, head_revision(), True)
    second = upgrade(empty_db)
    assert (second.before, second.after, second.changed) == (
        head_revision(),
        head_revision(),
        False,
    )


async def test_installing_counters_backfills_existing_answers(empty_db: str) -> None:
    run_upgrade(empty_db, "0001_schema")
    connection = await asyncpg.connect(empty_db)
    try:
        # A database with answers written before any counter trigger existed, and counters
        # that are wrong in every way: too high, too low, missing rows.
        await connection.execute(
            """
            INSERT INTO selfology.onboarding_sessions (id, user_id, questions_answered)
            VALUES (1, 10, 99), (2, 10, 0), (3, 20, 5), (4, 30, 0);
            INSERT INTO selfology.user_answers_new
                   (session_id, user_id, question_json_id, raw_answer, answer_length)
            SELECT s.id, s.user_id, 'q' || g, 'a', 1
              FROM selfology.onboarding_sessions s, generate_series(1, 3) g WHERE s.id <> 4;
            INSERT INTO selfology.user_stats (user_id, total_answers_lifetime)
            VALUES (10, 1), (30, 7);
            INSERT INTO selfology.digital_personality (user_id, total_answers_analyzed)
            VALUES (20, 0), (30, 4);
            """
        )
        upgrade(empty_db)
        await assert_exact(connection)
        assert (
            await connection.fetchval(
                "SELECT total_answers_lifetime FROM selfology.user_stats WHERE user_id = 30"
            )
            == 0
        )
    finally:
        await connection.close()


async def test_bot_alembic_version_is_never_touched(empty_db: str) -> None:
    connection = await asyncpg.connect(empty_db)
    try:
        await connection.execute(
            "CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY);"
            "INSERT INTO public.alembic_version VALUES ('007')"
        )
        upgrade(empty_db)
        assert await connection.fetch("SELECT version_num FROM public.alembic_version") == [
            ("007",)
        ]
    finally:
        await connection.close()


async def test_downgrade_removes_triggers_and_upgrade_restores_them(empty_db: str) -> None:
    upgrade(empty_db)
    command.downgrade(alembic_config(empty_db), "0001_schema")
    connection = await asyncpg.connect(empty_db)
    try:
        count = "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'selfology_counters_%'"
        assert await connection.fetchval(count) == 0
        upgrade(empty_db)
        assert await connection.fetchval(count) == len(EXPECTED_TRIGGERS)
    finally:
        await connection.close()


def test_plain_alembic_upgrade_head_from_the_repository(empty_db: str) -> None:
    env = {**os.environ, "SELFOLOGY_DSN": empty_db}
    env.pop("DATABASE_URL", None)
    alembic = Path(sys.executable).parent / "alembic"
    result = subprocess.run(
        [str(alembic), "upgrade", "head"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert upgrade(empty_db).changed is False


def test_plain_alembic_on_a_closed_port_prints_one_line() -> None:
    env = {**os.environ, "SELFOLOGY_DSN": "postgresql://someone:s3cret@127.0.0.1:1/nowhere"}
    env.pop("DATABASE_URL", None)
    alembic = Path(sys.executable).parent / "alembic"
    result = subprocess.run(
        [str(alembic), "upgrade", "head"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("selfology-counters: error on postgresql://someone:***@127.0.0.1:1")
    assert "refused" in lines[0] and "s3cret" not in result.stderr
