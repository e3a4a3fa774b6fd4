#!/usr/bin/env bash
# Installs the project into .venv (with the `compare` extra, so that the chart is tested too)
# and runs the whole test suite: lint and types, then the tests against an embedded PostgreSQL
# and, when one answers on 127.0.0.1:5432 (or at $SELFOLOGY_SYSTEM_TEST_DSN), against that
# server too, so two major versions are covered. Debian's prometheus package (promtool and the
# server, for the alert rules' tests and the end-to-end test) is installed first where apt is;
# without it those tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_prometheus.sh

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test,compare]"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

echo "== tests on the embedded PostgreSQL" >&2
env -u SELFOLOGY_TEST_DSN .venv/bin/pytest "$@"

system_dsn="${SELFOLOGY_SYSTEM_TEST_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}"
if .venv/bin/python -c "import asyncio, asyncpg, sys; asyncio.run(asyncpg.connect(sys.argv[1], timeout=3))" "$system_dsn" 2>/dev/null; then
    echo "== tests on the system PostgreSQL ($(.venv/bin/python -c 'import sys; from selfology_counters.config import redact; print(redact(sys.argv[1]))' "$system_dsn"))" >&2
    SELFOLOGY_TEST_DSN="$system_dsn" .venv/bin/pytest "$@"
else
    echo "== no PostgreSQL answers at the system DSN; embedded server only" >&2
fi
