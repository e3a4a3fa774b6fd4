"""A partitioned answers table (issue 12, item 7): supported for every write that names
user_answers_new, which is every write of the bot and the DAO. Writes that go around it (a
partition named directly, ATTACH, DETACH or DROP PARTITION) are not counted: check shows the
drift, repair fixes it, and check and stats say so beside every result."""

from __future__ import annotations

import json

import asyncpg

from selfology_counters import OnboardingDAO, deferred, health, lifecycle, model
from tests.rows import new_session
from tests.test_cli import cli
from tests.truth import assert_exact

# The recipe of docs/COUNTER_ARCHITECTURE.md ("A partitioned answers table"): a partitioned
# table by answered_at replaces the plain one, the old one goes (with the view that reads it),
# then migrate reinstalls our triggers and the view on the new table and recounts.
PARTITION = """
ALTER TABLE selfology.user_answers_new RENAME TO user_answers_old;
CREATE TABLE selfology.user_answers_new
    (LIKE selfology.user_answers_old INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS,
     PRIMARY KEY (id, answered_at),
     CONSTRAINT user_answers_new_session_fk FOREIGN KEY (session_id, user_id)
         REFERENCES selfology.onboarding_sessions (id, user_id)
         ON DELETE CASCADE ON UPDATE CASCADE)
    PARTITION BY RANGE (answered_at);
CREATE TABLE selfology.user_answers_2020 PARTITION OF selfology.user_answers_new
    FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
CREATE TABLE selfology.user_answers_rest PARTITION OF selfology.user_answers_new DEFAULT;
CREATE INDEX ON selfology.user_answers_new (session_id);
CREATE INDEX ON selfology.user_answers_new (user_id);
CREATE INDEX ON selfology.user_answers_new (user_id, xid);
CREATE INDEX ON selfology.user_answers_new (session_id, xid);
INSERT INTO selfology.user_answers_new SELECT * FROM selfology.user_answers_old;
SELECT setval(pg_get_serial_sequence('selfology.user_answers_new', 'id'),
              (SELECT max(id) FROM selfology.user_answers_new));
DROP TABLE selfology.user_answers_old CASCADE;
"""
BOT_INSERT = (
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
    " VALUES ($1, 'q', 'x')"
)
OLD_ANSWER = (
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer,"
    " answered_at) VALUES ($1, 'q', 'old', '2020-05-01')"
)


async def partitioned(db: str, conn: asyncpg.Connection) -> None:
    await conn.execute(PARTITION)
    # Before migrate: the view went with the old table; check says so instead of failing.
    found = await health.check(conn)
    view = model.VIEW["counter_consistency_check"].name
    assert {o.name for o in found.objects if not o.installed} >= {view}
    assert not found.consistent
    await lifecycle.apply(db)


async def test_every_write_through_a_partitioned_answers_table_is_counted(
    db: str, conn: asyncpg.Connection
) -> None:
    one, two = await new_session(conn, 1), await new_session(conn, 2)
    await conn.execute(BOT_INSERT, one)
    await partitioned(db, conn)
    found = await health.check(conn)
    assert found.consistent, (found.problems, found.issues)
    assert found.notes and "user_answers_new is partitioned" in found.notes[0]

    await conn.execute(BOT_INSERT, one)  # the bot's INSERT: user_id and length filled in
    await conn.execute(OLD_ANSWER, two)  # into the other partition
    async with await OnboardingDAO.connect(db, pool_size=1) as dao:
        await dao.save_answers(two, [("q2", "b"), ("q3", "c")])
    await conn.copy_records_to_table(
        "user_answers_new",
        schema_name="selfology",
        records=[(one, 1, "q4", "d", 1)],
        columns=["session_id", "user_id", "question_json_id", "raw_answer", "answer_length"],
    )
    await assert_exact(conn)
    # An UPDATE that moves rows between partitions, and one that moves them between users.
    await conn.execute("UPDATE selfology.user_answers_new SET answered_at = '2020-06-01'")
    await conn.execute(
        "UPDATE selfology.user_answers_new SET session_id = $1, user_id = 2"
        " WHERE session_id = $2 AND question_json_id = 'q'",
        two,
        one,
    )
    await assert_exact(conn)
    await conn.execute("DELETE FROM selfology.onboarding_sessions WHERE id = $1", one)
    await assert_exact(conn)

    await deferred.set_mode(conn, model.DEFERRED)
    await conn.execute(BOT_INSERT, two)
    await conn.execute(OLD_ANSWER, two)
    await deferred.fold_once(conn)
    await deferred.set_mode(conn, model.IMMEDIATE)
    await assert_exact(conn)
    await conn.execute("TRUNCATE selfology.user_answers_new")
    await assert_exact(conn)
    assert (await health.check(conn)).consistent


async def test_writes_around_the_partitioned_table_are_drift_that_repair_fixes(
    db: str, conn: asyncpg.Connection
) -> None:
    session = await new_session(conn, 3)
    await partitioned(db, conn)
    await conn.execute(OLD_ANSWER, session)
    await conn.execute(
        # An explicit id: before PostgreSQL 17 a partition has no identity of its own.
        "INSERT INTO selfology.user_answers_2020 (id, session_id, question_json_id, raw_answer,"
        " answered_at) VALUES (1000, $1, 'q', 'direct', '2020-07-01')",
        session,
    )
    assert not (await health.check(conn)).counters_consistent  # the direct write
    await health.repair(conn)
    assert (await health.check(conn)).consistent
    await conn.execute(
        "ALTER TABLE selfology.user_answers_new DETACH PARTITION selfology.user_answers_2020"
    )
    shown = cli("check", dsn=db)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    assert "note: user_answers_new is partitioned (1 partition)" in shown.stdout
    assert "run repair after partition maintenance" in shown.stdout
    assert json.loads(cli("stats", "--json", dsn=db).stdout)["notes"]
    await health.repair(conn)
    await assert_exact(conn)
    assert (await health.check(conn)).consistent
