"""benchmark: measures in a scratch schema, verifies, and never leaves the schema behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import asyncpg
import pytest

from selfology_counters.bench.benchmark import run_benchmark
from tests.test_cli import CLI, cli

LEFTOVERS = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'selfology\\_bench\\_%'"


async def leftovers(dsn: str) -> list[str]:
    connection = await asyncpg.connect(dsn)
    try:
        return [r["nspname"] for r in await connection.fetch(LEFTOVERS)]
    finally:
        await connection.close()


async def test_small_benchmark_measures_and_verifies(db: str) -> None:
    result = await run_benchmark(db, 20, concurrency=5, bulk_rows=200)
    assert set(result.series) == {"bare", "dao", "dao_metrics", "bot_insert"}
    assert all(s.count == 20 for s in result.series.values())
    assert [(c.writers, c.users, c.accounting.lost, c.errors) for c in result.concurrency] == [
        (5, 1, 0, 0),
        (5, 5, 0, 0),
    ]
    assert [b.rows for b in result.bulk] == [200, 200]  # the bare and the counted
    assert result.consistent
    assert await leftovers(db) == []


async def test_deferred_mode_benchmark_folds_and_reads_exactly(db: str) -> None:
    result = await run_benchmark(db, 20, concurrency=5, bulk_rows=200, mode="deferred")
    assert result.mode == "deferred" and result.lost_counts == 0 and result.consistent
    figures = result.deferred
    assert figures is not None
    assert figures.fold_rows == 600  # the bulk inserts' answers, three repeats, folded at once
    timed = (figures.exact_read, figures.reader_call, figures.stored_read, figures.select_one)
    assert [summary.count for summary in timed] == [20, 20, 20, 20]
    assert figures.writers == 5  # the concurrency tests' writers load the reads too
    assert await leftovers(db) == []


async def test_failure_midway_drops_the_scratch_schema(db: str) -> None:
    seen: list[str] = []

    def explode(phase: str, _n: int) -> None:
        seen.append(phase)
        if len(seen) == 5:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await run_benchmark(db, 50, progress=explode)
    assert await leftovers(db) == []


def test_cli_json_and_interrupt_leave_nothing_behind(db: str) -> None:
    result = cli("benchmark", "10", "--json", "--concurrency", "3", "--bulk", "100", dsn=db)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"server_version", "synchronous_commit", "series", "ratios", "bulk"} <= set(data)
    assert set(data["histogram_cost"]) == {"avg", "p50"}
    assert data["consistent"] is True

    env = {**os.environ, "SELFOLOGY_DSN": db}
    for sig in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen(
            [CLI, "benchmark", "100000"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while not asyncio.run(leftovers(db)):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)  # let it get into the measuring loop
        process.send_signal(sig)
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert b"interrupted" in err and b"Traceback" not in err
        assert asyncio.run(leftovers(db)) == []


def test_benchmark_by_default_also_runs_the_concurrent_and_bulk_tests(db: str) -> None:
    from tests.test_cli import cli

    result = cli("benchmark", "5", dsn=db)
    assert result.returncode == 0, result.stderr
    assert "20 concurrent writers (same user)" in result.stdout
    assert "20 concurrent writers (20 users)" in result.stdout
    assert "one 10000-row INSERT" in result.stdout
    # Ratios say which way they read: time (lower is better) vs throughput (higher is better).
    assert "x the time of bare" in result.stdout and "x the bare rows/s" in result.stdout
    assert " vs bare" not in result.stdout


def test_a_count_that_would_run_for_days_is_refused_at_once() -> None:
    # It ran until stopped. The DSN answers nowhere: refusing N must come before connecting.
    result = cli("benchmark", "99999999999999999999999", dsn="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if "error" in line]
    assert "1000000" in line and "connect" not in line, line


def test_the_announced_rounds_are_the_series_it_runs(db: str) -> None:
    result = cli("benchmark", "3", "--concurrency", "0", "--bulk", "0", "--json", dsn=db)
    assert result.returncode == 0, result.stderr
    series = json.loads(result.stdout)["series"]
    [announced] = [line for line in result.stderr.splitlines() if "warm-up rounds" in line]
    assert f"rounds of {len(series)} inserts, one per series ({', '.join(series)}" in announced


def test_no_progress_bar_lines_into_a_pipe(db: str) -> None:
    # Into a pipe (cron's mail, a log) the bar was a bare "benchmark" line of its own.
    result = cli("benchmark", "60", "--concurrency", "0", "--bulk", "0", dsn=db)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip() == "benchmark"] == []
    assert all(
        line.startswith(("database:", "benchmark:")) for line in result.stderr.splitlines()
    ), result.stderr
