"""What check, stats and benchmark tell an operator beyond the counters: left-over scratch
schemas of killed runs, and a user id that names nobody."""

from __future__ import annotations

import json

import asyncpg

from selfology_counters.bench.scratch import scratch_schema
from tests.test_cli import cli

LEFTOVER = "selfology_bench_0123456789ab"  # as a killed run leaves it: nobody holds its lock


async def test_leftover_scratch_schemas_are_reported_and_the_next_benchmark_drops_them(
    db: str,
) -> None:
    connection = await asyncpg.connect(db)
    try:
        await connection.execute(f'CREATE SCHEMA "{LEFTOVER}"')
        async with scratch_schema(db) as running:  # a benchmark in progress keeps its own
            checked = cli("check", "--json", dsn=db)
            assert checked.returncode == 0, checked.stderr  # a warning, not a problem
            assert json.loads(checked.stdout)["leftover_scratch_schemas"] == [LEFTOVER]
            text = cli("check", dsn=db)
            assert text.returncode == 0
            warnings = [line for line in text.stdout.splitlines() if "warning:" in line]
            assert len(warnings) == 1 and LEFTOVER in warnings[0] and running not in warnings[0]
            stats = cli("stats", "--json", dsn=db)
            assert json.loads(stats.stdout)["leftover_scratch_schemas"] == [LEFTOVER]
            assert LEFTOVER in cli("stats", dsn=db).stdout

            bench = cli("benchmark", "3", "--concurrency", "0", "--bulk", "0", dsn=db)
            assert bench.returncode == 0, bench.stderr
            assert f"dropped {LEFTOVER}" in bench.stderr
            names = await connection.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'selfology\\_bench\\_%'"
            )
            assert [r["nspname"] for r in names] == [running]
    finally:
        await connection.close()
    assert json.loads(cli("check", "--json", dsn=db).stdout)["leftover_scratch_schemas"] == []


def test_check_of_a_user_who_does_not_exist_says_so(db: str) -> None:
    result = cli("check", "--user", "123456", dsn=db)
    assert result.returncode == 0, result.stderr
    assert "user 123456 has no answers and no counter rows" in result.stdout
    data = json.loads(cli("check", "--user", "123456", "--json", dsn=db).stdout)
    assert data["user"]["known"] is False and data["user"]["answers"] == 0
    assert "user" not in json.loads(cli("check", "--json", dsn=db).stdout)


async def test_stats_says_not_tracked_rather_than_zero_when_track_functions_is_off(
    db: str,
) -> None:
    connection = await asyncpg.connect(db)
    try:
        database = await connection.fetchval("SELECT current_database()")
        await connection.execute(f'ALTER DATABASE "{database}" SET track_functions = none')
    finally:
        await connection.close()
    data = json.loads(cli("stats", "--json", dsn=db).stdout)
    assert data["track_functions"] == "none"
    assert data["functions"] and all(f["calls"] is None for f in data["functions"])
    text = cli("stats", dsn=db).stdout
    calls = text.split("(calls, total ms, self ms):\n")[1].split("answers written")[0]
    assert calls.strip() and all(line.endswith(": not tracked") for line in calls.splitlines())
    assert "hint: track_functions is off" in text


async def test_check_counts_one_of_a_kind_in_the_singular(db: str) -> None:
    # "checked 1 sessions, 1 users, 1 personalities".
    connection = await asyncpg.connect(db)
    try:
        session = await connection.fetchval(
            "INSERT INTO selfology.onboarding_sessions (user_id) VALUES (5) RETURNING id"
        )
        await connection.execute(
            "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
            " VALUES ($1, 'q', 'a')",
            session,
        )
        await connection.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (5)")
    finally:
        await connection.close()
    shown = cli("check", dsn=db).stdout
    assert "checked 1 session, 1 user, 1 personality in " in shown, shown


def test_a_hot_update_ratio_is_never_above_100_percent() -> None:
    # After a crash restart stats showed HOT ratios above 100%: counts from either side of a
    # statistics reset. Such a pair is shown as unknown ("-", null), not as a ratio.
    from selfology_counters.stats import TableStats

    def table(updates: int, hot: int) -> TableStats:
        return TableStats("user_stats", 8192, 1, 0, updates, hot)

    assert table(10, 7).hot_ratio == 0.7
    assert table(0, 0).hot_ratio is None
    assert table(3, 5).hot_ratio is None
