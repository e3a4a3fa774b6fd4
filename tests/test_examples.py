"""examples/counter_usage_examples.py runs cleanly against a migrated database, shows the lost
updates and the double count, and leaves no example data behind."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import asyncpg

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "counter_usage_examples.py"

LEFTOVERS = """
SELECT (SELECT count(*) FROM selfology.onboarding_sessions WHERE user_id >= 9000000)
     + (SELECT count(*) FROM selfology.user_answers_new WHERE user_id >= 9000000)
     + (SELECT count(*) FROM selfology.user_stats WHERE user_id >= 9000000)
     + (SELECT count(*) FROM selfology.digital_personality WHERE user_id >= 9000000) AS rows,
       (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'selfology\\_example\\_%') AS schemas
"""


def run_example(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--dsn", dsn],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SCRIPT.parent.parent,
        check=False,
    )


def leftovers(dsn: str) -> tuple[int, int]:
    async def go() -> tuple[int, int]:
        connection = await asyncpg.connect(dsn)
        try:
            row = await connection.fetchrow(LEFTOVERS)
        finally:
            await connection.close()
        return int(row["rows"]), int(row["schemas"])

    return asyncio.run(go())


def test_example_script_runs_and_cleans_up(db: str) -> None:
    result = run_example(db)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    out = result.stdout

    assert re.search(r"lost updates: \d+ of \d+ increments were lost", out), out
    assert "undone: the counter says 1, COUNT(*) says 1" in out, out
    assert "the application wrote onboarding_sessions.questions_answered" in out, out
    assert "InvalidAnswerError" in out
    assert "SessionNotActiveError" in out
    assert "SOMETHING WAS WRITTEN" not in out
    assert re.search(r"COUNT\(\*\) of the answers: .* ms/read", out), out
    assert "all counters match COUNT(*)" in out
    assert "MISMATCH" not in out

    assert leftovers(db) == (0, 0)
