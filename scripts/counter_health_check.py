#!/usr/bin/env python3
"""The original Selfology health tool's command line, kept for runbooks and crontabs.

    python scripts/counter_health_check.py                   check, as the original did
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

Run by a Python that lacks the package (plain ``python`` outside the virtual environment), it
runs itself again with the checkout's ``.venv/bin/python`` when that has it, and otherwise
says how to get it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

COMMANDS = ("check", "repair", "stats", "benchmark")
DEFAULT_COMMAND = "check"  # the original ran its check when given no command
EXIT_CANNOT_RUN = 2
USAGE = (
    "usage: counter_health_check.py [check | repair [--dry-run] | stats | benchmark N] "
    "[options of `selfology-counters COMMAND --help`]"
)
# The checkout's virtual environment (README: python3 -m venv .venv && .venv/bin/pip install .)
CHECKOUT_PYTHON = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
# Set when this script runs itself again under CHECKOUT_PYTHON, so that it does so only once.
REEXEC_VARIABLE = "SELFOLOGY_HEALTH_CHECK_REEXEC"


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not argv or argv[0].startswith("-"):
        argv = [DEFAULT_COMMAND, *argv]
    if argv[0] not in COMMANDS:
        print(f"{USAGE}\nunknown command: {argv[0]!r}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        from selfology_counters import cli
    except ImportError as exc:
        _run_with_checkout_python()
        print(
            f"counter_health_check.py: error: this Python ({sys.executable}) does not have "
            f"selfology-counters ({exc}): run the script with the Python it is installed in "
            f"(python3 -m venv .venv && .venv/bin/pip install . in the checkout, then "
            f".venv/bin/python scripts/counter_health_check.py), or run "
            f"'selfology-counters {argv[0]}' from that environment; docs/ADOPTING.md says how "
            f"to install it into the bot's",
            file=sys.stderr,
        )
        return EXIT_CANNOT_RUN
    try:
        cli.main(argv, prog_name="counter_health_check.py")
    except SystemExit as done:  # how Click ends every command, with its exit code
        return _exit_code(done.code)
    return 0


def _run_with_checkout_python() -> None:
    """Replace this process with the checkout's virtual environment's Python running this
    script, if there is one and it was not tried already; return when there is none."""
    if os.environ.get(REEXEC_VARIABLE) or not CHECKOUT_PYTHON.exists():
        return
    if Path(sys.prefix).resolve() == CHECKOUT_PYTHON.parent.parent.resolve():
        return  # this is that Python already (its executable resolves elsewhere: a symlink)
    os.environ[REEXEC_VARIABLE] = "1"
    os.execv(str(CHECKOUT_PYTHON), [str(CHECKOUT_PYTHON), __file__, *sys.argv[1:]])


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else EXIT_CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
