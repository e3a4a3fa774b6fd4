"""The ``selfology-counters`` command: parses, calls the library, prints.

Results go to stdout (``--json`` for machines), progress and errors to stderr. Exit codes:
0 all well, 1 a problem was found, 2 the command could not run.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import asyncpg
import typer

from selfology_counters import config
from selfology_counters.errors import SchemaMissingError, SelfologyCountersError

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


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


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
        typer.echo(json.dumps({"dry_run": True, **planned.as_dict()}, indent=2) if as_json
                   else report.plan_text(planned))  # fmt: skip
        return
    try:
        outcome = run(lifecycle.apply(url, progress=note))
    except typer.Exit:
        raise
    except Exception as exc:  # a migration's SQL failed: one line, no traceback
        fail(f"migration failed: {first_line(exc)}")
    typer.echo(json.dumps(outcome.as_dict(), indent=2) if as_json
               else report.outcome_text(outcome))  # fmt: skip


@app.command()
def demo(dsn: DsnOption = None, as_json: JsonOption = False) -> None:
    """Record a few answers through OnboardingDAO, delete one, and print the counters
    next to COUNT(*). Run ``migrate`` first."""
    from selfology_counters import model
    from selfology_counters.demo import run_demo

    result = run(run_demo(target_dsn(dsn)))
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
            f"saved {result.answers_saved} answers, deleted {result.answers_deleted}"
        )
        typer.echo(f"{'counter':45} {'stored':>8} {'COUNT(*)':>9}")
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
                "run `selfology-counters migrate --dry-run`, then `selfology-counters migrate`"
            )
        return await work(connection)

    return await _with_connection(dsn, guarded)


@app.command()
def check(dsn: DsnOption = None, as_json: JsonOption = False, user: UserOption = None) -> None:
    """Compare every counter with COUNT(*) of the answers, and audit the counter triggers.

    Exit 0 when all is consistent, 1 when a counter drifted or a trigger is missing,
    disabled or outdated, 2 when the check could not run. Cron-friendly:
    `selfology-counters check --json || alert`.
    """
    from selfology_counters import health, original, report

    result = run(_on_our_schema(target_dsn(dsn), lambda c: health.check(c, user)))
    if as_json:
        originals = original.as_dicts(result.foreign_triggers)
        emit_json({**result.as_dict(), "original_triggers": originals})
    else:
        typer.echo(report.check_text(result))
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
    """Fix exactly what `check` reports: enable disabled counter triggers, then recount each
    wrong counter under a row lock, in short batches; safe while the bot writes.

    Exit 0 when everything is (now) consistent, 1 when something is left that repair cannot
    fix (a missing or outdated trigger: run `migrate`) or, with --dry-run, when there is
    something to repair; 2 when it could not run.
    """
    from selfology_counters import health, report

    async def work(
        connection: asyncpg.Connection,
    ) -> tuple[health.CheckResult, health.RepairResult]:
        found = await health.check(connection, user)
        with progress_bar(len(found.issues), "repairing") as advance:
            return found, await health.repair(
                connection, dry_run=dry_run, batch_size=batch_size, user_id=user,
                progress=advance, found=found,
            )  # fmt: skip

    found, result = run(_on_our_schema(target_dsn(dsn), work))
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json
               else report.repair_text(result, found.foreign_triggers))  # fmt: skip
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
    typer.echo(json.dumps(result.as_dict(), indent=2, default=str) if as_json
               else report.stats_text(result))  # fmt: skip
    raise typer.Exit(EXIT_OK if result.healthy else EXIT_PROBLEM)


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
    immediate folds everything pending first. In deferred mode run `selfology-counters
    worker`, or the stored columns fall behind (the exact reads never do).
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
    SIGTERM or Ctrl-C finish the fold in progress, then exit 0. Several workers may run; they
    take turns. In immediate mode there is nothing to fold and the worker idles.
    """
    from selfology_counters import deferred

    url = target_dsn(dsn)

    def logged(result: deferred.FoldResult) -> None:
        if result.folded:
            age = "" if result.oldest_age_s is None else f", oldest {result.oldest_age_s:.3f} s"
            note(f"worker: folded {result.folded} answers in {result.seconds * 1000:.1f} ms{age}")

    async def work() -> deferred.WorkerSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        folding = deferred.Worker(
            url, interval_s=interval, on_fold=logged, on_error=lambda m: note(f"worker: {m}")
        )
        return await folding.run(stop, once=once)

    summary = run(work())
    if as_json:
        emit_json(summary.as_dict())
    else:
        typer.echo(f"folded {summary.folded} answers in {summary.folds} folds "
                   f"over {summary.seconds:.1f} s ({summary.errors} errors)")  # fmt: skip


@app.command()
def benchmark(
    inserts: Annotated[int, typer.Argument(min=1, help="Single-row inserts per series.")] = 1000,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", min=0, help="Also C writers on one user and C writers on C users."
        ),
    ] = 0,
    counter_mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="Counter mode to measure: immediate (the triggers update the counters) or "
            "deferred (writes append; adds the worker's fold rate and the exact read).",
        ),
    ] = "immediate",
    bulk: Annotated[
        int, typer.Option("--bulk", min=0, help="Also one multi-row INSERT of this many rows.")
    ] = 0,
) -> None:
    """Measure the counter triggers against a bare INSERT in the same run, then verify
    the counters equal COUNT(*).

    Runs in a scratch schema built from the shipped SQL and dropped afterwards (also when
    interrupted); never touches real data. Exit 1 if a count was lost.
    """
    from selfology_counters.bench import benchmark as bench_module
    from selfology_counters.bench.benchmark import BULK_REPEATS, WARMUP, run_benchmark

    url = target_dsn(dsn)
    # Progress units: one per sequential round, per concurrency scenario, per bulk repeat.
    total = inserts + (2 if concurrency else 0) + (BULK_REPEATS if bulk else 0)
    from selfology_counters import model

    if counter_mode not in model.MODES:
        fail(f"unknown counter mode {counter_mode!r}: use one of {', '.join(model.MODES)}")
    if counter_mode == model.DEFERRED:
        total += inserts  # the exact read, timed against SELECT 1
    note(f"benchmark: {WARMUP} warm-up rounds, then {inserts} rounds of 3 inserts")
    with progress_bar(total, "benchmark") as advance:
        result = run(
            run_benchmark(
                url, inserts, concurrency=concurrency, bulk_rows=bulk, mode=counter_mode,
                progress=lambda _phase, n: advance(n),
            )
        )  # fmt: skip
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
    view, COUNT(*) on read, event-driven.

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
        fail(f"--out draws a chart and matplotlib is not installed: {compare_chart.INSTALL_HINT}")
    if out is not None and (problem := compare_ru.problems(out / compare_ru.DOC_NAME)):
        fail(problem)
    url = target_dsn(dsn)
    sizes = (
        compare_results.SMOKE if smoke else compare_results.QUICK if quick else compare_results.FULL
    )
    command = " ".join(
        ["selfology-counters compare"]
        + (["--dsn ***"] if dsn else [])
        + (["--quick"] if quick else [])
        + ([f"--out {out}"] if out else [])
    )
    if config.explicit_dsn(dsn) is None:
        command += " (embedded server)"
    expected = compare_results.estimated_seconds(sizes)
    note(f"compare: {sizes.name} run, expected to take about {expected:.0f} s "
         f"on a 2-core machine; {sizes.describe()}")  # fmt: skip
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
        note("wrote " + " and ".join(str(path) for path in written))
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else compare_report.text(result))
    raise typer.Exit(EXIT_OK if result.our_losses == 0 else EXIT_PROBLEM)


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when there is more than a screenful of work."""
    if total <= 40:
        yield lambda _n: None
        return
    with typer.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def main(args: list[str] | None = None, prog_name: str | None = None) -> None:
    """The console script; ``args`` and ``prog_name`` let another front end (the original's
    ``scripts/counter_health_check.py``) run the same commands under its own name."""
    try:
        app(args=args, prog_name=prog_name)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
