"""The ``selfology-counters`` command: parses, calls the library, prints.

Results go to stdout (``--json`` for machines), progress and errors to stderr. Exit codes:
0 all well, 1 a problem was found, 2 the command could not run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import asyncpg
import typer
from typer._click.exceptions import NoArgsIsHelpError  # typer's own click (typer >= 0.29)

from selfology_counters import config
from selfology_counters.errors import InvalidDsnError, SchemaMissingError, SelfologyCountersError
from selfology_counters.plural import plural

T = TypeVar("T")

EXIT_OK, EXIT_PROBLEM, EXIT_CANNOT_RUN = 0, 1, 2
# An exception no command expected is a bug: said in one line (its traceback could show a
# password), unless this variable is set.
DEBUG_VARIABLE = "SELFOLOGY_DEBUG"
INTERNAL_ERROR = "internal error"

app = typer.Typer(
    help="Exact answer counters for Selfology on PostgreSQL: migrate, demo and operate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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
    """One line on stderr and a non-zero exit; never a traceback. With ``--json`` the same
    as a JSON object on stdout too, so that a cron job that mails stdout mails the reason."""
    say_error(message, code, as_json=_json_requested())
    raise typer.Exit(code)


def say_error(message: str, code: int, *, as_json: bool, args: list[str] | None = None) -> None:
    message = config.scrub(message, _dsns_given(args))
    typer.echo(f"selfology-counters: error: {message}", err=True)
    if as_json:
        emit_json({"error": message, "exit_code": code})


def _dsns_given(args: list[str] | None = None) -> list[str]:
    """Whatever may hold a password: every argument (a DSN typed without --dsn is echoed
    back by a usage error) and the DSN variables."""
    given = sys.argv[1:] if args is None else args
    return [*given, *(os.environ.get(var) or "" for var in config.ENV_VARS)]


def _json_requested(args: list[str] | None = None) -> bool:
    # Read from the command line, not the parsed options: a usage error has none parsed.
    args = sys.argv[1:] if args is None else args
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def note(message: str) -> None:
    typer.echo(message, err=True)


def target_dsn(dsn: str | None) -> str:
    try:
        target = config.resolve(dsn)
    except InvalidDsnError as exc:
        fail(str(exc))
    except Exception as exc:  # the embedded server failed to start: say why, in one line
        fail(f"could not start the embedded PostgreSQL server: {exc}")
    note(f"database: {target.redacted} ({target.source})")
    return target.dsn


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run library code, turning its typed errors into one line and exit code 2.

    SIGTERM cancels the work like Ctrl-C does, so cleanup (``finally``) still runs.
    """
    try:
        return asyncio.run(_cancellable(coroutine))
    except SelfologyCountersError as exc:
        fail(str(exc))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # The server refused or dropped us midway (permissions, a restart): one line, exit 2.
        fail(f"database error: {first_line(exc)}")
    except (KeyboardInterrupt, asyncio.CancelledError):
        fail("interrupted", 130)


async def _cancellable(coroutine: Coroutine[Any, Any, T]) -> T:
    task = asyncio.ensure_future(coroutine)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def emit_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def migrate(
    dsn: DsnOption = None,
    as_json: JsonOption = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the whole plan (and adoption's SQL); change nothing."
        ),
    ] = False,
) -> None:
    """Create or upgrade the selfology schema and counter objects to this release.

    On an empty database it creates everything; on one of ours it applies pending revisions,
    reinstalls every function, trigger or view that is missing or not current (edited by hand,
    or from another release), and recounts. On the original Selfology database (tables
    present, not created by us) it ADOPTS it, live: adds user_id, swaps the original counter
    trigger for ours, recounts every counter exactly, and records our version in a table of
    its own (the bot's alembic_version is never touched). See docs/ADOPTING.md; run with
    --dry-run first. Concurrent runs wait for each other.
    """
    from selfology_counters import lifecycle, report

    url = target_dsn(dsn)
    if dry_run:
        planned = run(lifecycle.plan(url))
        note(f"database kind: {planned.state.value}")
        typer.echo(
            json.dumps({"dry_run": True, **planned.as_dict()}, indent=2)
            if as_json
            else report.plan_text(planned)
        )
        return
    try:
        outcome = run(lifecycle.apply(url, progress=note))
    except typer.Exit:
        raise
    except Exception as exc:  # a migration's SQL failed: one line, no traceback
        fail(f"migration failed: {first_line(exc)}")
    typer.echo(json.dumps(outcome.as_dict(), indent=2) if as_json else report.outcome_text(outcome))


@app.command()
def demo(
    dsn: DsnOption = None,
    as_json: JsonOption = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Write the demo's rows into a database given by a DSN (not embedded)."
        ),
    ] = False,
) -> None:
    """Record a few answers through OnboardingDAO (user 424242), delete one, and print the
    counters next to COUNT(*).

    The rows stay in the database, so on a database named by a DSN (possibly production)
    the demo runs only with --yes, after 'selfology-counters migrate'; on the embedded server
    it needs nothing (a fresh one is migrated first).
    """
    from selfology_counters import model
    from selfology_counters.demo import run_demo

    embedded = config.explicit_dsn(dsn) is None
    if not yes and not embedded:
        fail(
            "demo writes answers for user 424242 and leaves them; on a database named by "
            "a DSN it needs --yes"
        )
    # The embedded server is the tool's own: a fresh one is migrated first. A database named
    # by a DSN is the operator's, migrated by them.
    result = run(run_demo(target_dsn(dsn), migrate_empty=embedded, progress=note))
    if as_json:
        emit_json(result.as_dict())
    else:
        rows = [
            (
                model.SESSIONS.name,
                result.questions_answered,
                result.session_count_star,
            ),
            (
                model.USER_STATS.name,
                result.total_answers_lifetime,
                result.user_count_star,
            ),
            (
                model.PERSONALITY.name,
                result.total_answers_analyzed,
                result.user_count_star,
            ),
        ]
        typer.echo(
            f"user {result.user_id}, session {result.session_id}: "
            f"saved {plural(result.answers_saved, 'answer')}, deleted {result.answers_deleted}"
        )
        # In deferred mode the stored columns lag until the worker folds: shown are the
        # exact reads (stored + pending), and labelled so.
        read = "stored" if result.mode == model.IMMEDIATE else "exact"
        if result.mode != model.IMMEDIATE:
            typer.echo(
                f"{result.mode} mode: exact reads (stored + not yet folded), not the stored columns"
            )
        typer.echo(f"{'counter':45} {read:>8} {'COUNT(*)':>9}")
        for name, stored, actual in rows:
            shown = "no row" if stored is None else stored
            typer.echo(f"{name:45} {shown!s:>8} {actual:>9}")
        typer.echo("exact" if result.exact else "MISMATCH")
    if not result.exact:
        raise typer.Exit(EXIT_PROBLEM)


UserOption = Annotated[
    int | None,
    typer.Option(
        "--user",
        help="Only this user (their sessions, stats and personality).",
        min=1,
        max=2**63 - 1,
    ),
]


async def _with_connection(dsn: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    from selfology_counters.connect import connect

    connection = await connect(dsn)
    try:
        return await work(connection)
    finally:
        await connection.close()


async def _on_our_schema(dsn: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Like _with_connection, for the operator's commands: the original system's schema,
    not adopted yet, gets a clear message instead of errors about columns it lacks."""
    from selfology_counters import original
    from selfology_counters.lifecycle import DatabaseState, detect

    async def guarded(connection: asyncpg.Connection) -> T:
        if await detect(connection) is DatabaseState.ORIGINAL:
            counting = await original.installed(connection)
            still = (
                f" (its counter trigger {', '.join(counting)} still counts, and loses counts "
                "when answers of one user overlap)"
                if counting
                else ""
            )
            raise SchemaMissingError(
                f"this database holds the original Selfology schema, not adopted yet{still}: "
                "run 'selfology-counters migrate --dry-run', then 'selfology-counters migrate'"
            )
        return await work(connection)

    return await _with_connection(dsn, guarded)


@app.command()
def check(dsn: DsnOption = None, as_json: JsonOption = False, user: UserOption = None) -> None:
    """Compare every counter with COUNT(*) of the answers, and audit the counter triggers.

    Exit 0 when all is consistent, 1 when a counter drifted or a trigger is missing,
    disabled or outdated, 2 when the check could not run. Cron-friendly:
    selfology-counters check --json || alert
    """
    from selfology_counters import health, report, users
    from selfology_counters.leftovers import leftover_scratch_schemas

    async def work(
        connection: asyncpg.Connection,
    ) -> tuple[health.CheckResult, list[str], users.UserPresence | None]:
        result = await health.check(connection, user)
        leftovers = await leftover_scratch_schemas(connection)
        found = None if user is None else await users.presence(connection, user)
        return result, leftovers, found

    result, leftovers, found = run(_on_our_schema(target_dsn(dsn), work))
    if as_json:
        extra = {} if found is None else {"user": found.as_dict()}
        emit_json({**result.as_dict(), "leftover_scratch_schemas": leftovers, **extra})
    else:
        # Warnings only: neither changes the exit code, which is about the counters.
        shown = [report.check_text(result), *report.leftover_scratch_text(leftovers)]
        typer.echo("\n".join(shown + ([] if found is None else report.user_text(found))))
    raise typer.Exit(EXIT_OK if result.consistent else EXIT_PROBLEM)


@app.command()
def repair(
    dsn: DsnOption = None,
    as_json: JsonOption = False,
    user: UserOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Run the same path, roll every batch back.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Keys per transaction (short locks).")
    ] = 500,
) -> None:
    """Fix exactly what 'check' reports: enable disabled counter triggers, then recount each
    wrong counter under a row lock, in short batches; safe while the bot writes.

    Exit 0 when everything is (now) consistent, 1 when something is left that repair cannot
    fix (a missing or outdated trigger: run 'selfology-counters migrate') or, with
    --dry-run, when there is something to repair; 2 when it could not run.
    """
    from selfology_counters import health, report

    async def work(
        connection: asyncpg.Connection,
    ) -> tuple[health.CheckResult, health.RepairResult]:
        found = await health.check(connection, user)
        with progress_bar(len(found.issues), "repairing") as advance:
            return found, await health.repair(
                connection,
                dry_run=dry_run,
                batch_size=batch_size,
                user_id=user,
                progress=advance,
                found=found,
            )

    found, result = run(_on_our_schema(target_dsn(dsn), work))
    typer.echo(
        json.dumps(result.as_dict(), indent=2)
        if as_json
        else report.repair_text(result, found.foreign_triggers)
    )
    pending = dry_run and (result.changes or result.triggers_enabled or result.triggers_disabled)
    raise typer.Exit(EXIT_PROBLEM if result.unfixable or pending else EXIT_OK)


@app.command()
def stats(dsn: DsnOption = None, as_json: JsonOption = False) -> None:
    """Triggers and functions (installed, enabled, current), per-function calls and time,
    answers in the last hour, sessions waiting on locks, counter table health, settings.

    Exit 1 when a counter trigger is missing, disabled or outdated.
    """
    from selfology_counters import report
    from selfology_counters import stats as stats_module

    result = run(_on_our_schema(target_dsn(dsn), stats_module.collect))
    typer.echo(
        json.dumps(result.as_dict(), indent=2, default=str)
        if as_json
        else report.stats_text(result)
    )
    raise typer.Exit(EXIT_OK if result.healthy else EXIT_PROBLEM)


def _role_option(flag: str, envvar: str, what: str) -> Any:
    return typer.Option(flag, envvar=envvar, help=f"Name of the {what} role.")


@app.command()
def roles(
    dsn: DsnOption = None,
    as_json: JsonOption = False,
    check_only: Annotated[
        bool,
        typer.Option("--check", help="Change nothing; exit 1 when anything differs."),
    ] = False,
    # The defaults are roles.RoleNames' (tests/test_roles.py holds them equal).
    owner: Annotated[str, _role_option("--owner", "SELFOLOGY_OWNER_ROLE", "owner")] = (
        "selfology_owner"
    ),
    app_role: Annotated[str, _role_option("--app", "SELFOLOGY_APP_ROLE", "application")] = (
        "selfology_app"
    ),
    readonly: Annotated[
        str, _role_option("--readonly", "SELFOLOGY_READONLY_ROLE", "read-only")
    ] = "selfology_readonly",
) -> None:
    """Create or check the owner, application and read-only roles (least privilege).

    The owner owns the schema and every counter object (run migrate, repair, mode and worker
    as it); the application role (the bot) writes answers and sessions but no counter; the
    read-only role reads (check, watch without auto-repair). Idempotent; run as a superuser.
    Passwords come only from $SELFOLOGY_OWNER_PASSWORD, $SELFOLOGY_APP_PASSWORD and
    $SELFOLOGY_READONLY_PASSWORD (sent as SCRAM verifiers, never printed); without them a
    role keeps its password. Exit 1 with --check when anything differs.
    """
    import os

    from selfology_counters import report
    from selfology_counters import roles as roles_module
    from selfology_counters.errors import InvalidInputError

    try:
        names = roles_module.RoleNames(owner, app_role, readonly)
    except InvalidInputError as exc:
        fail(str(exc))
    variables = zip(names.all, roles_module.PASSWORD_VARIABLES, strict=True)
    passwords = {role: os.environ[var] for role, var in variables if os.environ.get(var)}

    async def work(connection: asyncpg.Connection) -> roles_module.RolesResult:
        if check_only:
            return await roles_module.check(connection, names)
        return await roles_module.apply(connection, names, passwords)

    result = run(_on_our_schema(target_dsn(dsn), work))
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else report.roles_text(result))
    raise typer.Exit(EXIT_OK if result.ok else EXIT_PROBLEM)


@app.command()
def mode(
    wanted: Annotated[
        str | None,
        typer.Argument(
            help="Switch to this mode: immediate (every write updates the counters) or "
            "deferred (writes only append; a worker folds them). Omit to print the mode.",
            show_default=False,
        ),
    ] = None,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the counter mode, its backlog and the last fold; or switch it, live.

    The mode is stored in the database. A switch waits for the writers in flight and holds
    new ones back for one short transaction; nothing is lost or counted twice. Switching to
    immediate folds everything pending first. In deferred mode run 'selfology-counters
    worker', or the stored columns fall behind (the exact reads never do).
    """
    from selfology_counters import deferred, report

    async def work(connection: asyncpg.Connection) -> deferred.ModeState:
        if wanted is None:
            return await deferred.state(connection)
        return await deferred.set_mode(connection, wanted)

    result = run(_on_our_schema(target_dsn(dsn), work))
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else report.mode_text(result))


@app.command()
def worker(
    dsn: DsnOption = None,
    as_json: JsonOption = False,
    once: Annotated[
        bool, typer.Option("--once", help="Fold what is pending now, then exit.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            min=0.01,
            max=3600,
            help="Seconds to wait when there was nothing to fold (the stored columns lag by "
            "about this much under load).",
        ),
    ] = 0.2,
) -> None:
    """Fold deferred mode's pending answers into the stored counters, until stopped.

    Each fold is one transaction: a worker killed at any moment loses and doubles nothing.
    SIGTERM or Ctrl-C finish the fold in progress, then exit 0; a database outage or restart
    is waited for. Several workers may run; they take turns. In immediate mode there is
    nothing to fold and the worker idles. --once exits 1 when the fold stayed busy (or the
    database unreachable) for 10 s, 2 at once on an error no retry mends.
    """
    from selfology_counters import deferred
    from selfology_counters.errors import FoldStalledError

    url = target_dsn(dsn)

    def logged(result: deferred.FoldResult) -> None:
        if result.folded:
            age = "" if result.oldest_age_s is None else f", oldest {result.oldest_age_s:.3f} s"
            took = f"{result.seconds * 1000:.1f} ms"
            note(f"worker: folded {plural(result.folded, 'answer')} in {took}{age}")

    async def work() -> deferred.WorkerSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        note("worker: started; SIGTERM or Ctrl-C stops it after the fold in progress")
        folding = deferred.Worker(
            url, interval_s=interval, on_fold=logged, on_error=lambda m: note(f"worker: {m}")
        )
        try:
            return await folding.run(stop, once=once)
        except FoldStalledError as exc:
            fail(str(exc), EXIT_PROBLEM)

    summary = run(work())
    if as_json:
        emit_json(summary.as_dict())
    else:
        typer.echo(
            f"folded {plural(summary.folded, 'answer')} in "
            f"{plural(summary.folds, 'fold')} over {summary.seconds:.1f} s "
            f"({plural(summary.errors, 'error')})"
        )


MAX_BENCHMARK_INSERTS = 1_000_000  # about 200 rounds a second: a larger N runs for hours


@app.command()
def benchmark(
    inserts: Annotated[
        int,
        typer.Argument(
            min=1,
            max=MAX_BENCHMARK_INSERTS,
            help="Single-row inserts per series (1000 take a few seconds; at most 1,000,000, "
            "over an hour).",
        ),
    ] = 1000,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            min=0,
            help="Also C writers on one user and C writers on C users (0: skip).",
        ),
    ] = 20,
    counter_mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="Counter mode to measure: immediate (the triggers update the counters) or "
            "deferred (writes append; adds the worker's fold rate and the exact read).",
        ),
    ] = "immediate",
    bulk: Annotated[
        int,
        typer.Option(
            "--bulk", min=0, help="Also one multi-row INSERT of this many rows (0: skip)."
        ),
    ] = 10_000,
) -> None:
    """Measure the counter triggers against a bare INSERT in the same run, then verify
    the counters equal COUNT(*).

    Runs in a scratch schema built from the shipped SQL and dropped afterwards (also when
    interrupted); never touches real data. Exit 1 if a count was lost.
    """
    from selfology_counters.bench import benchmark as bench_module
    from selfology_counters.bench.benchmark import BULK_REPEATS, SERIES, WARMUP, run_benchmark
    from selfology_counters.bench.scratch import drop_leftovers

    url = target_dsn(dsn)
    for schema in run(drop_leftovers(url)):
        note(f"benchmark: dropped {schema}, left over by a run that was killed")
    # Progress units: one per sequential round, per concurrency scenario, per bulk repeat.
    total = inserts + (2 if concurrency else 0) + (BULK_REPEATS if bulk else 0)
    from selfology_counters import model

    if counter_mode not in model.MODES:
        fail(f"unknown counter mode {counter_mode!r}: use one of {', '.join(model.MODES)}")
    if counter_mode == model.DEFERRED:
        total += inserts  # the exact read, timed against SELECT 1
    note(
        f"benchmark: {WARMUP} warm-up rounds, then {inserts} rounds of {len(SERIES)} "
        f"inserts, one per series ({', '.join(SERIES)}; on Citus without bot_insert)"
    )
    with progress_bar(total, "benchmark") as advance:
        result = run(
            run_benchmark(
                url,
                inserts,
                concurrency=concurrency,
                bulk_rows=bulk,
                mode=counter_mode,
                progress=lambda _phase, n: advance(n),
            )
        )
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else bench_module.text(result))
    raise typer.Exit(EXIT_OK if result.consistent and result.lost_counts == 0 else EXIT_PROBLEM)


@app.command()
def compare(
    dsn: DsnOption = None,
    as_json: JsonOption = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="Smaller sizes: a first look in under a minute.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            file_okay=False,
            help="Also write DIR/COUNTER_DECISION_MATRIX.md, the chart it shows "
            "(DIR/img/counter_strategies.png) and the measured sections of "
            "DIR/COUNTER_ANALYSIS_RU.md (rewritten between their markers, the prose kept; "
            "written alone when DIR has no such file), all from this one run. The chart needs "
            "matplotlib, which comes with the 'compare' extra; without it, exit 2 at once, "
            "before measuring anything.",
        ),
    ] = None,
    smoke: Annotated[bool, typer.Option("--smoke", hidden=True)] = False,  # tests: tiny sizes
) -> None:
    """Measure every counter strategy of the document's decision matrix on one server:
    bare INSERT, manual UPDATE (3 forms), migration 007's trigger, our triggers, materialized
    view, COUNT(*) on read, event-driven; and pg_ivm where the server has that extension
    (created for the run, dropped after; elsewhere reported as not measured, with the reason).

    Each is built in a scratch schema of its own from SQL in the package, measured in one run
    (sequential, 100 concurrent writers, bulk, reads) and dropped afterwards, also when
    interrupted. Prints the document's tables with the measured values beside its claims, then
    the full tables. Exit 1 if our own triggers lost a count; 2 if it could not run.

    --out needs matplotlib (the compare extra); without it, exit 2 before measuring.
    """
    from selfology_counters.bench import compare as comparison
    from selfology_counters.bench import compare_chart, compare_report, compare_results, compare_ru

    # Checked first: a report without its chart after minutes of measuring helps nobody.
    if out is not None and not compare_chart.can_draw():
        extra, hint = compare_chart.EXTRA, compare_chart.install_hint()
        fail(
            f"--out draws a chart and matplotlib is not installed (the package's '{extra}' "
            f"extra); install it: {hint}"
        )
    if out is not None and (problem := compare_ru.problems(out / compare_ru.DOC_NAME)):
        fail(problem)
    if out is not None and (problem := compare_report.unwritable(out)):
        fail(problem)
    url = target_dsn(dsn)
    sizes = (
        compare_results.SMOKE if smoke else compare_results.QUICK if quick else compare_results.FULL
    )
    # The --out directory is echoed back (here, in the JSON and in the report, and in "wrote"
    # below): scrubbed like an error message, in case a password was typed there.
    shown_out = None if out is None else config.scrub(str(out), _dsns_given())
    command = " ".join(
        ["selfology-counters compare"]
        + (["--dsn ***"] if dsn else [])
        + (["--quick"] if quick else [])
        + ([f"--out {shown_out}"] if out else [])
    )
    if config.explicit_dsn(dsn) is None:
        command += " (embedded server)"
    expected = compare_results.estimated_seconds(sizes)
    note(
        f"compare: {sizes.name} run, expected to take about {expected:.0f} s "
        f"on a 2-core machine; {sizes.describe()}"
    )
    with progress_bar(compare_results.planned_units(sizes), "compare") as advance:
        measuring = comparison.run_compare(
            url, sizes, progress=lambda _phase, n: advance(n), command=command
        )
        result = run(measuring)
    if out is not None:
        try:
            written = compare_report.write_report(result, out)
        except OSError as exc:
            fail(f"cannot write the report: {first_line(exc)}")
        note(config.scrub("wrote " + " and ".join(str(p) for p in written), _dsns_given()))
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else compare_report.text(result))
    raise typer.Exit(EXIT_OK if result.our_losses == 0 else EXIT_PROBLEM)


@app.command()
def watch(
    port: Annotated[
        int,
        typer.Option(
            "--port",
            envvar="SELFOLOGY_WATCH_PORT",
            min=0,
            max=65535,
            help="Serve /metrics on this port (0: any free port, logged).",
        ),
    ],
    dsn: DsnOption = None,
    listen: Annotated[
        str,
        typer.Option(
            "--listen", envvar="SELFOLOGY_WATCH_LISTEN", help="Address to serve /metrics on."
        ),
    ] = "127.0.0.1",
    quick_interval: Annotated[
        float,
        typer.Option(
            "--quick-interval",
            envvar="SELFOLOGY_WATCH_QUICK_INTERVAL",
            min=0.01,
            help="Seconds between quick checks of the users with new answers.",
        ),
    ] = 30.0,
    full_interval: Annotated[
        float,
        typer.Option(
            "--full-interval",
            envvar="SELFOLOGY_WATCH_FULL_INTERVAL",
            min=0.01,
            help="Seconds between full checks of every counter.",
        ),
    ] = 900.0,
    auto_repair_max: Annotated[
        int,
        typer.Option(
            "--auto-repair-max",
            envvar="SELFOLOGY_WATCH_AUTO_REPAIR_MAX",
            min=0,
            help="Repair drift of at most this many counters at once (0: never); "
            "more is left to a person, and alerted on.",
        ),
    ] = 0,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Also print an error that stops it as JSON on stdout (its log is JSON lines "
            "on stderr either way).",
        ),
    ] = False,
) -> None:
    """Serve Prometheus metrics and check the counters on a schedule, until SIGTERM.

    The full check runs first and then every --full-interval; a quick check of the users with
    answers inserted since the last-but-one quick check every --quick-interval. Each action
    is one JSON line on stderr. A database that goes away is reported in the metrics and
    retried, never fatal. Exit 0 on SIGTERM or Ctrl-C; 2 when it could not start (the port
    is taken, say).
    """
    from selfology_counters import watch as watching

    try:
        target = config.resolve(dsn)
    except InvalidDsnError as exc:
        fail(str(exc))
    except Exception as exc:  # the embedded server failed to start: say why, in one line
        fail(f"could not start the embedded PostgreSQL server: {exc}")
    settings = watching.WatchSettings(
        quick_interval=quick_interval, full_interval=full_interval, auto_repair_max=auto_repair_max
    )
    log = watching.json_lines()
    log("start", database=target.redacted, source=target.source)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _stopping, stop, log, signum)
        await watching.serve(target.dsn, settings, stop, listen=listen, port=port, log=log)

    try:
        asyncio.run(main())
    except OSError as exc:  # the port is taken, or the address is not ours
        fail(f"cannot serve metrics on {listen}:{port}: {first_line(exc)}")


def _stopping(stop: asyncio.Event, log: Callable[..., None], signum: int) -> None:
    log("stopping", signal=signal.Signals(signum).name)
    stop.set()


embedded_app = typer.Typer(
    help="The embedded PostgreSQL server used when no DSN is given: where its data directory "
    "is, whether it runs, and stopping it.",
    no_args_is_help=True,
)
app.add_typer(embedded_app, name="embedded")


@embedded_app.command("path")
def embedded_path(as_json: JsonOption = False) -> None:
    """Print the embedded server's data directory ($SELFOLOGY_EMBEDDED_DIR overrides it).

    To remove it: selfology-counters embedded stop, then delete the directory.
    """
    from selfology_counters import embedded

    where = embedded.data_dir()
    if as_json:
        emit_json({"data_dir": str(where)})
    else:
        typer.echo(where)


@embedded_app.command("status")
def embedded_status(as_json: JsonOption = False) -> None:
    """Whether the embedded server runs, which processes use it, and its size on disk
    (and of its WAL). Starts nothing."""
    from selfology_counters import embedded, report

    state = embedded.status()
    typer.echo(json.dumps(state.as_dict(), indent=2) if as_json else report.embedded_text(state))


@embedded_app.command("stop")
def embedded_stop(
    as_json: JsonOption = False,
    force: Annotated[
        bool, typer.Option("--force", help="Stop it even while a live process uses it.")
    ] = False,
) -> None:
    """Stop the embedded server, unless a live process still uses it (exit 2 then: it could
    not run; --force stops it anyway).

    Processes that were killed and never said goodbye are forgotten first.
    """
    from selfology_counters import embedded
    from selfology_counters.errors import EmbeddedInUseError

    try:
        before = embedded.stop(force=force)
    except EmbeddedInUseError as exc:  # could not run (a usage matter), not a problem found
        fail(str(exc))
    except Exception as exc:  # pg_ctl failed: one line
        fail(f"could not stop the embedded server: {first_line(exc)}")
    message = "stopped" if before.running else "was not running"
    if as_json:
        emit_json({"stopped": before.running, "data_dir": before.data_dir})
    else:
        typer.echo(f"embedded server {message} ({before.data_dir})")


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when there is more than a screenful of work and stderr is a
    terminal (into a pipe or a log, click would print the bare label instead)."""
    if total <= 40 or not sys.stderr.isatty():
        yield lambda _n: None
        return
    with typer.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def main(args: list[str] | None = None, prog_name: str | None = None) -> None:
    """The console script: typer's usage errors become one line (and JSON with ``--json``),
    exit 2, like every other error of this command. ``args`` and ``prog_name`` let another
    front end (the original's ``scripts/counter_health_check.py``) run the same commands
    under its own name."""
    try:
        code = app(args=args, prog_name=prog_name, standalone_mode=False)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        code = EXIT_CANNOT_RUN
    except typer.TyperException as exc:  # click's usage errors, in typer's copy of click
        say_error(
            one_line(exc.format_message()),
            EXIT_CANNOT_RUN,
            as_json=_json_requested(args),
            args=args,
        )
        code = EXIT_CANNOT_RUN
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        code = 130
    except SelfologyCountersError as exc:  # raised outside run() (a DSN checked early): typed
        say_error(str(exc), EXIT_CANNOT_RUN, as_json=_json_requested(args), args=args)
        code = EXIT_CANNOT_RUN
    except Exception as exc:  # a bug of ours: still one line, scrubbed, exit 2
        if os.environ.get(DEBUG_VARIABLE):
            raise
        say_error(
            f"{INTERNAL_ERROR} ({first_line(exc)}); please report it, with the traceback that "
            f"{DEBUG_VARIABLE}=1 shows",
            EXIT_CANNOT_RUN,
            as_json=_json_requested(args),
            args=args,
        )
        code = EXIT_CANNOT_RUN
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def one_line(message: str) -> str:
    return " ".join(message.split())
