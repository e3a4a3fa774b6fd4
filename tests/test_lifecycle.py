"""The installed-code audit and the schema lifecycle: an object edited by hand is named by
`check` (exit 1) and put back by `migrate`; concurrent `migrate` runs serialise; the dry run
shows the whole plan."""

from __future__ import annotations

import asyncio
import json
import subprocess

import asyncpg
import pytest

from selfology_counters import health, lifecycle, model, objects
from tests.test_cli import CLI, cli
from tests.truth import assert_exact

ON_INSERT = model.FUNCTION["on_insert"]
INSERT_TRIGGER = model.TRIGGER["insert"]
VIEW = model.VIEW["counter_consistency_check"]

# Each edit keeps the object's comment (the stamp a comment-only audit would trust) and
# changes what the object does.
EDITS = {
    "function": (
        ON_INSERT,
        f"""
        CREATE OR REPLACE FUNCTION selfology.{ON_INSERT.name}() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END; $$
        """,
    ),
    "trigger": (
        INSERT_TRIGGER,
        f"""
        DO $$
        DECLARE stamp text := obj_description(
            (SELECT oid FROM pg_trigger WHERE tgname = '{INSERT_TRIGGER.name}'), 'pg_trigger');
        BEGIN
            DROP TRIGGER {INSERT_TRIGGER.name} ON selfology.user_answers_new;
            CREATE TRIGGER {INSERT_TRIGGER.name} AFTER INSERT ON selfology.user_answers_new
                REFERENCING NEW TABLE AS new_answers
                FOR EACH STATEMENT WHEN (false)
                EXECUTE FUNCTION selfology.{ON_INSERT.name}();
            EXECUTE format('COMMENT ON TRIGGER {INSERT_TRIGGER.name}'
                           ' ON selfology.user_answers_new IS %L', stamp);
        END $$
        """,
    ),
    "view": (
        VIEW,
        f"""
        CREATE OR REPLACE VIEW selfology.{VIEW.name} AS
        SELECT counter, key, user_id, stored, stored AS actual, 0::bigint AS drift,
               'CONSISTENT'::text AS status, 0::bigint AS pending,
               user_stats_count, actual_answer_count, personality_count
          FROM selfology.{VIEW.name}
        """,
    ),
}


async def write_answers(connection: asyncpg.Connection, user_id: int) -> None:
    session = await connection.fetchval(
        "INSERT INTO selfology.onboarding_sessions (user_id) VALUES ($1) RETURNING id", user_id
    )
    await connection.execute(
        "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
        " SELECT $1, 'q' || g, 'a' FROM generate_series(1, 3) g",
        session,
    )


@pytest.mark.parametrize("kind", sorted(EDITS))
def test_check_names_an_object_edited_by_hand_and_migrate_restores_it(db: str, kind: str) -> None:
    obj, edit = EDITS[kind]

    async def edit_by_hand() -> None:
        connection = await asyncpg.connect(db)
        try:
            await write_answers(connection, 1)
            # A view replaced in place cannot read itself; read the original's definition.
            if kind == "view":
                body = await connection.fetchval(
                    "SELECT pg_get_viewdef('selfology.counter_consistency_check'::regclass)"
                )
                body = body.strip().rstrip(";")
                edit_sql = edit.replace(f"FROM selfology.{VIEW.name}", f"FROM ({body}) v")
            else:
                edit_sql = edit
            stamp_before = await stamp_of(connection, obj)
            await connection.execute(edit_sql)
            assert await stamp_of(connection, obj) == stamp_before  # the comment survived
            await write_answers(connection, 2)  # not counted when the insert path was edited
        finally:
            await connection.close()

    asyncio.run(edit_by_hand())
    checked = cli("check", "--json", dsn=db)
    assert checked.returncode == 1, checked.stdout
    report = json.loads(checked.stdout)
    wrong = [o for o in report["objects"] if o["state"] != "current"]
    assert [(o["kind"], o["name"], o["state"]) for o in wrong] == [(kind, obj.name, "outdated")]
    assert "edited since it was installed" in wrong[0]["reason"]
    human = cli("check", dsn=db)
    assert f"{obj.name}" in human.stdout and "OUTDATED" in human.stdout

    migrated = cli("migrate", "--json", dsn=db)
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout)["reinstalled"] == [
        f"{obj.table}.{obj.name}" if obj.table else obj.name
    ]
    assert cli("check", dsn=db).returncode == 0

    async def counts_again() -> None:
        connection = await asyncpg.connect(db)
        try:
            await write_answers(connection, 3)
            await assert_exact(connection)
        finally:
            await connection.close()

    asyncio.run(counts_again())


async def stamp_of(connection: asyncpg.Connection, obj: model.DbObject) -> str | None:
    rows = await connection.fetch(
        "SELECT obj_description(p.oid, 'pg_proc') AS stamp, p.proname AS name FROM pg_proc p"
        " UNION ALL SELECT obj_description(t.oid, 'pg_trigger'), t.tgname FROM pg_trigger t"
        " UNION ALL SELECT obj_description(c.oid, 'pg_class'), c.relname FROM pg_class c"
    )
    return next(r["stamp"] for r in rows if r["name"] == obj.name)


async def test_an_object_from_another_release_is_outdated(conn: asyncpg.Connection) -> None:
    stamp = await stamp_of(conn, ON_INSERT)
    assert stamp is not None
    other = stamp.replace("source=", "source=0")
    await conn.execute(f"COMMENT ON FUNCTION selfology.{ON_INSERT.name}() IS '{other}'")
    result = await health.check(conn)
    wrong = [o for o in result.objects if not o.healthy]
    assert [(o.name, o.reason) for o in wrong] == [
        (ON_INSERT.name, "installed from another release's definition")
    ]
    assert not result.consistent and result.counters_consistent


async def test_the_audit_does_not_depend_on_the_session_search_path(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("SET search_path = selfology, public")
    assert (await objects.audit(conn)).healthy
    assert await conn.fetchval("SHOW search_path") == "selfology, public"


def test_two_migrates_at_once_on_a_fresh_database_both_succeed(empty_db: str) -> None:
    command = [CLI, "migrate", "--json"]
    runs = [
        subprocess.Popen(
            [*command, "--dsn", empty_db],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    results = sorted((json.loads(out)["changed"] for out, _err in outputs), reverse=True)
    assert results == [True, False]  # the second waited, then found nothing to do

    async def one_schema() -> None:
        connection = await asyncpg.connect(empty_db)
        try:
            assert (await objects.audit(connection)).healthy
            tables = await connection.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'selfology'"
            )
            assert tables == len(model.COUNTED_TABLES) + 2  # and our version and mode tables
        finally:
            await connection.close()

    asyncio.run(one_schema())


async def test_dry_run_shows_the_whole_plan_and_changes_nothing(
    db: str, conn: asyncpg.Connection
) -> None:
    await conn.execute(f"DROP TRIGGER {INSERT_TRIGGER.name} ON selfology.user_answers_new")
    planned = await lifecycle.plan(db)
    assert planned.state is lifecycle.DatabaseState.OURS
    assert planned.revisions == []
    assert [(o.name, o.state.value) for o in planned.reinstall] == [
        (INSERT_TRIGGER.name, "missing")
    ]
    assert planned.recount and not planned.nothing_to_do
    assert (await lifecycle.plan(db)).reinstall  # still missing: the plan changed nothing

    fresh = lifecycle.Plan(lifecycle.DatabaseState.EMPTY, None, ["0001_schema"], [], None)
    assert fresh.recount


def test_dry_run_from_the_command_line(db: str) -> None:
    async def drop() -> None:
        connection = await asyncpg.connect(db)
        try:
            await connection.execute(
                f"DROP FUNCTION selfology.{model.FUNCTION['freeze_session_id'].name}() CASCADE"
            )
        finally:
            await connection.close()

    asyncio.run(drop())
    shown = cli("migrate", "--dry-run", dsn=db)
    assert shown.returncode == 0, shown.stderr
    assert "would apply revisions: none" in shown.stdout
    assert model.FUNCTION["freeze_session_id"].name in shown.stdout
    assert model.TRIGGER["freeze_session_id"].name in shown.stdout
    assert "would recount every counter" in shown.stdout
    plan = json.loads(cli("migrate", "--dry-run", "--json", dsn=db).stdout)
    assert {o["name"] for o in plan["reinstall"]} == {
        model.FUNCTION["freeze_session_id"].name,
        model.TRIGGER["freeze_session_id"].name,
    }
    assert cli("check", dsn=db).returncode == 1  # the dry run put nothing back


def test_dry_run_on_an_empty_database_says_it_would_install_everything(empty_db: str) -> None:
    shown = cli("migrate", "--dry-run", dsn=empty_db)
    assert shown.returncode == 0, shown.stderr
    assert f"would install every function, trigger and view ({len(model.OBJECTS)})" in shown.stdout
    assert "would reinstall: nothing" not in shown.stdout


def test_migrate_that_distributes_on_citus_says_what_it_installed() -> None:
    # On Citus, distributing installs every object (the distributed variant) before the
    # reinstall, which then finds nothing: migrate said "installed 0 functions, triggers and
    # views". tests/test_citus.py checks the Outcome on a real cluster.
    from selfology_counters import report

    plan = lifecycle.Plan(lifecycle.DatabaseState.EMPTY, None, ["0001_schema"], [], None, True)
    outcome = lifecycle.Outcome(plan, None, "0004_deferred_v1", distributed=True)
    text = report.outcome_text(outcome)
    assert f"installed {len(model.OBJECTS)} functions, triggers and views" in text
    assert "distributed the tables by user_id" in text
    assert outcome.as_dict()["distributed"] is True and outcome.changed
