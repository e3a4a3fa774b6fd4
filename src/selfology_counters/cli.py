"""The ``selfology-counters`` command: parses, calls the library, prints.

Results go to stdout (``--json`` for machines), progress and errors to stderr. Exit codes:
0 all well, 1 a problem was found, 2 the command could not run.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from selfology_counters import config
from selfology_counters.errors import SelfologyCountersError

T = TypeVar("T")

EXIT_OK, EXIT_PROBLEM, EXIT_CANNOT_RUN = 0, 1, 2

app = typer.Typer(
    help="Exact answer counters for Selfology on PostgreSQL: migrate, demo and operate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        help="PostgreSQL DSN. Default: $SELFOLOGY_DSN, else $DATABASE_URL, else the embedded "
        "server in a per-user data directory.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def fail(message: str, code: int = EXIT_CANNOT_RUN) -> NoReturn:
    """One line on stderr and a non-zero exit; never a traceback."""
    typer.echo(f"selfology-counters: error: {message}", err=True)
    raise typer.Exit(code)


def note(message: str) -> None:
    typer.echo(message, err=True)


def target_dsn(dsn: str | None) -> str:
    try:
        target = config.resolve(dsn)
    except Exception as exc:  # the embedded server failed to start: say why, in one line
        fail(f"could not start the embedded PostgreSQL server: {exc}")
    note(f"database: {target.redacted} ({target.source})")
    return target.dsn


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run library code, turning its typed errors into one line and exit code 2."""
    try:
        return asyncio.run(coroutine)
    except SelfologyCountersError as exc:
        fail(str(exc))


def emit_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def migrate(dsn: DsnOption = None, as_json: JsonOption = False) -> None:
    """Create or upgrade the selfology schema and counter triggers to the newest version.

    Idempotent: on an up-to-date database it changes nothing.
    """
    from selfology_counters.migrate import upgrade

    url = target_dsn(dsn)
    try:
        result = upgrade(url)
    except SelfologyCountersError as exc:
        fail(str(exc))
    except Exception as exc:  # SQLAlchemy/psycopg connection errors
        fail(f"migration failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
    if as_json:
        emit_json({"before": result.before, "after": result.after, "changed": result.changed})
    elif result.changed:
        typer.echo(f"migrated: {result.before or 'empty'} -> {result.after}")
    else:
        typer.echo(f"already at {result.after}; nothing to do")


@app.command()
def demo(dsn: DsnOption = None, as_json: JsonOption = False) -> None:
    """Record a few answers through OnboardingDAO, delete one, and print the counters
    next to COUNT(*). Run ``migrate`` first."""
    from selfology_counters.demo import run_demo

    result = run(run_demo(target_dsn(dsn)))
    if as_json:
        emit_json(result.as_dict())
    else:
        rows = [
            (
                "onboarding_sessions.questions_answered",
                result.questions_answered,
                result.session_count_star,
            ),
            (
                "user_stats.total_answers_lifetime",
                result.total_answers_lifetime,
                result.user_count_star,
            ),
            (
                "digital_personality.total_answers_analyzed",
                result.total_answers_analyzed,
                result.user_count_star,
            ),
        ]
        typer.echo(
            f"user {result.user_id}, session {result.session_id}: "
            f"saved {result.answers_saved} answers, deleted {result.answers_deleted}"
        )
        typer.echo(f"{'counter':45} {'stored':>8} {'COUNT(*)':>9}")
        for name, stored, actual in rows:
            shown = "no row" if stored is None else stored
            typer.echo(f"{name:45} {shown!s:>8} {actual:>9}")
        typer.echo("exact" if result.exact else "MISMATCH")
    if not result.exact:
        raise typer.Exit(EXIT_PROBLEM)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
