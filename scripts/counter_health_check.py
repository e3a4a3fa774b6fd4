#!/usr/bin/env python3
"""The original Selfology health tool's command line, kept for runbooks and crontabs.

    python scripts/counter_health_check.py check             every counter against COUNT(*)
    python scripts/counter_health_check.py repair --dry-run  what repair would change
    python scripts/counter_health_check.py repair            fix what check reports
    python scripts/counter_health_check.py stats             triggers, calls, locks, tables
    python scripts/counter_health_check.py benchmark 1000    insert cost, in a scratch schema

Each command is the ``selfology-counters`` command of the same name, run through the same
Typer app: the same library functions, output and exit codes (0 all well, 1 a problem found,
2 could not run). This file holds no database code of its own. The database is
``$SELFOLOGY_DSN``, else ``$DATABASE_URL``, else the embedded server; the options of the new
commands (``--dsn``, ``--json``, ``--user``, ``--batch-size``, ``--concurrency``, ``--bulk``)
pass through. See docs/COUNTER_RECOMMENDATION.md.
"""

from __future__ import annotations

import sys

COMMANDS = ("check", "repair", "stats", "benchmark")
EXIT_CANNOT_RUN = 2
USAGE = (
    "usage: counter_health_check.py {check | repair [--dry-run] | stats | benchmark N} "
    "[options of `selfology-counters COMMAND --help`]"
)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_CANNOT_RUN
    if argv[0] not in COMMANDS:
        print(f"{USAGE}\nunknown command: {argv[0]!r}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        from selfology_counters import cli
    except ImportError as exc:
        print(
            f"counter_health_check.py: error: selfology-counters is not installed in this "
            f"Python ({exc}); pip install selfology-counters",
            file=sys.stderr,
        )
        return EXIT_CANNOT_RUN
    try:
        cli.main(argv, prog_name="counter_health_check.py")
    except SystemExit as done:  # how Click ends every command, with its exit code
        return _exit_code(done.code)
    return 0


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else EXIT_CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
