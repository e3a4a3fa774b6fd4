"""Human-readable renderings of the library's results (the CLI prints these)."""

from __future__ import annotations

from selfology_counters import embedded, model, original
from selfology_counters.deferred import ModeState
from selfology_counters.health import CheckResult, CounterIssue, RepairResult
from selfology_counters.lifecycle import Outcome, Plan
from selfology_counters.lifecycle.adopt import AdoptionReport
from selfology_counters.objects import ObjectStatus
from selfology_counters.plural import counted, plural
from selfology_counters.roles import RolesResult
from selfology_counters.stats import StatsResult
from selfology_counters.users import UserPresence

WORST_SHOWN = 10


def check_text(result: CheckResult) -> str:
    checked = ", ".join(counted(n, what) for what, n in result.checked.items())
    lines = [
        f"checked {checked} in {result.elapsed_s:.2f} s ({result.mode} mode)",
        f"consistency: {result.consistency_rate:.4%} "
        f"({plural(len(result.issues), 'counter')} wrong)",
    ]
    if result.issues:
        lines.append(f"worst drifts (of {len(result.issues)}):")
        lines.append(f"  {'counter':44} {'key':>10} {'stored':>8} {'actual':>8} status")
        for issue in result.issues[:WORST_SHOWN]:
            stored = "-" if issue.stored is None else issue.stored
            row = f"{issue.counter:44} {issue.key:>10} {stored!s:>8} {issue.actual:>8}"
            lines.append(f"  {row} {issue.status}")
    lines += objects_text(result.objects, result.problems)
    wrong = {name: n for name, n in result.integrity.items() if n}
    lines += [f"{name.replace('_', ' ')}: {n}" for name, n in wrong.items()]
    lines += [
        f"note: logical replication applies into {entry}: see docs/COUNTER_ARCHITECTURE.md"
        for entry in result.subscriptions
    ]
    lines += [f"note: {note}" for note in result.notes]
    lines += original_text(result.foreign_triggers, result.issues)
    lines.append("CONSISTENT" if result.consistent else "PROBLEMS FOUND")
    return "\n".join(lines)


def original_text(
    foreign_triggers: list[str], issues: list[CounterIssue] | None = None
) -> list[str]:
    """The original system's counter triggers found next to ours, said plainly: what each
    does, the double counting it has caused (when ``issues`` are given), and how to remove it."""
    found = original.recognise(foreign_triggers)
    if not found:
        return []
    lines = [f"ORIGINAL TRIGGER FOUND: {original.describe(t)}" for t in found]
    if issues is not None:
        above = [i for i in issues if i.drift is not None and i.drift > 0]
        if above:
            worst = max(i.drift or 0 for i in above)
            lines.append(
                f"  double counting: {plural(len(above), 'counter')} "
                f"{'is' if len(above) == 1 else 'are'} above COUNT(*), by up to "
                f"{worst}; each answer written while it is enabled adds one more to its counters"
            )
        else:
            lines.append("  no counter is above COUNT(*) yet: the next answer will be")
    lines.append(
        "  what to do: remove it (our triggers already count every answer it does), then repair:"
    )
    lines += [f"    {sql}" for t in found for sql in t.removal_sql().splitlines()]
    lines.append("    selfology-counters repair   (or: counter_health_check.py repair)")
    return lines


def objects_text(statuses: list[ObjectStatus], problems: list[str]) -> list[str]:
    """The audit of the installed functions, triggers and view: only what is wrong, or a
    one-line all-clear."""
    bad = [o for o in statuses if not o.healthy]
    lines = [
        f"{o.kind} {o.label}: {o.state.value.upper()}"
        + (f" ({o.reason})" if o.reason and o.installed else "")
        for o in bad
    ]
    lines += problems
    if not lines:
        lines.append(
            f"objects: all {len(statuses)} functions, triggers and views installed, "
            "enabled and current"
        )
    return lines


def repair_text(result: RepairResult, foreign_triggers: list[str] | None = None) -> str:
    verb = "would change" if result.dry_run else "changed"
    lines = [f"{verb} {plural(len(result.changes), 'counter')}"]
    for change in result.changes[:WORST_SHOWN]:
        before = "(no row)" if change.before is None else change.before
        lines.append(f"  {change.counter} {change.key}: {before} -> {change.after}")
    if len(result.changes) > WORST_SHOWN:
        lines.append(f"  ... and {len(result.changes) - WORST_SHOWN} more (--json lists all)")
    verb = "would enable" if result.dry_run else "enabled"
    lines += [f"{verb} trigger {name}" for name in result.triggers_enabled]
    verb = "would disable" if result.dry_run else "disabled"
    lines += [
        f"{verb} trigger {name} (the counter mode wants it off)"
        for name in result.triggers_disabled
    ]
    lines += [f"cannot fix: {problem}" for problem in result.unfixable]
    lines += original_text(foreign_triggers or [])
    return "\n".join(lines)


def stats_text(result: StatsResult) -> str:
    lines = [
        f"server: {result.server_version}",
        f"database: {result.database}; synchronous_commit={result.synchronous_commit}, "
        f"track_functions={result.track_functions}",
        mode_text(result.mode),
        "functions, triggers and views:",
    ]
    for o in result.objects:
        reason = f" ({o.reason})" if o.reason and o.installed else ""
        lines.append(f"  {o.kind} {o.label}: {o.state.value.upper()}{reason}")
    lines += [f"  {problem}" for problem in result.problems]
    lines += [f"  logical replication applies into {entry}" for entry in result.subscriptions]
    lines += [f"  note: {note}" for note in result.notes]
    lines += original_text(result.foreign_triggers)
    lines.append("function calls (calls, total ms, self ms):")
    for f in result.functions:
        if f.calls is None:
            lines.append(f"  {f.name}: not tracked")
        else:
            lines.append(f"  {f.name}: {f.calls}, {f.total_ms or 0:.1f}, {f.self_ms or 0:.1f}")
    lines.append(f"answers written in the last hour: {result.answers_last_hour}")
    lines.append(f"sessions waiting on locks on counter tables now: {len(result.lock_waiters)}")
    lines.append("tables (size, live, dead, HOT-update ratio):")
    for table in result.tables:
        ratio = "-" if table.hot_ratio is None else f"{table.hot_ratio:.0%}"
        lines.append(
            f"  {table.table}: {table.total_bytes / 1024:.0f} kB, "
            f"{table.live_tuples}, {table.dead_tuples}, {ratio}"
        )
    lines += [f"hint: {hint}" for hint in result.hints]
    lines += leftover_scratch_text(result.leftover_scratch_schemas)
    return "\n".join(lines)


def leftover_scratch_text(schemas: list[str]) -> list[str]:
    """Warning lines for scratch schemas a killed benchmark left behind."""
    if not schemas:
        return []
    return [
        f"warning: {plural(len(schemas), 'left-over benchmark scratch schema')} "
        f"(no run holds it; the next 'selfology-counters benchmark' drops it): "
        + ", ".join(schemas)
    ]


def user_text(user: UserPresence) -> list[str]:
    if user.known:
        return []
    return [f"user {user.user_id} has no answers and no counter rows (no such user?)"]


def adoption_text(result: AdoptionReport) -> str:
    title = "adoption plan (dry run: nothing changed)" if result.dry_run else "adopted"
    lines = [
        title,
        f"counters wrong now: {result.counters_wrong}, largest drift {result.largest_drift}",
    ]
    for drift in result.drift:
        missing = f", {plural(drift.missing_rows, 'row')} missing" if drift.missing_rows else ""
        lines.append(
            f"  {drift.counter}: {drift.wrong} wrong, largest drift {drift.largest_drift}{missing}"
        )
    verb = "would remove" if result.dry_run else "removed"
    lines += [f"{verb} original trigger: {name}" for name in result.original_triggers]
    lines += [f"  [{state}] {step}" for step, state in result.steps]
    if result.dry_run:
        # The whole plan as a script psql reads: the summary as comments, every statement
        # ended by ";" (a statement after a leading comment too).
        lines = [f"-- {line}" for line in [*lines, "", "SQL it would run:"]]
        lines += [_terminated(sql) for sql in result.plan_sql]
    else:
        lines.append(
            f"back-filled user_id of {plural(result.backfilled_answers, 'answer')}, corrected "
            f"{plural(result.counters_corrected, 'counter')} in {result.elapsed_s:.1f} s"
        )
    return "\n".join(lines)


def _terminated(sql: str) -> str:
    """``sql`` with ";" after its last statement (its last line that is not a comment)."""
    lines = sql.rstrip().splitlines()
    code = [
        i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("--")
    ]
    if code and not lines[code[-1]].rstrip().endswith(";"):
        lines[code[-1]] = lines[code[-1]].rstrip() + ";"
    return "\n".join(lines)


def plan_text(plan: Plan) -> str:
    """``migrate --dry-run``: the whole plan."""
    if plan.adoption is not None:
        return adoption_text(plan.adoption)
    lines = [
        f"database: {plan.state.value}, at revision {plan.revision or '(none of ours)'}",
        "would apply revisions: " + (", ".join(plan.revisions) or "none (up to date)"),
    ]
    if plan.distribute:
        lines.append(
            "would distribute the tables by user_id on Citus (co-located) and install the "
            "distributed variant of every function, trigger and view (docs/SCALING.md)"
        )
    if plan.state.value == "empty":  # nothing is installed yet, so nothing to reinstall
        lines.append(f"would install every function, trigger and view ({len(model.OBJECTS)})")
    elif plan.reinstall:
        lines.append("would reinstall (missing or not current):")
        lines += [f"  {o.kind} {o.label}: {o.state.value} ({o.reason})" for o in plan.reinstall]
    else:
        lines.append("would reinstall: nothing (every function, trigger and view is current)")
    lines.append("would recount every counter (repair)" if plan.recount else "nothing to do")
    return "\n".join(lines)


def outcome_text(outcome: Outcome) -> str:
    """What ``migrate`` did."""
    if outcome.adoption is not None:
        return adoption_text(outcome.adoption)
    lines = []
    if outcome.distributed:
        lines.append("distributed the tables by user_id on Citus (co-located)")
    if outcome.plan.state.value == "empty" or outcome.distributed:
        variant = " (their distributed variant)" if outcome.distributed else ""
        lines.append(f"installed {outcome.installed} functions, triggers and views{variant}")
    if outcome.before != outcome.after:
        lines.append(f"migrated: {outcome.before or 'empty'} -> {outcome.after}")
    if outcome.reinstalled and outcome.plan.state.value != "empty" and not outcome.distributed:
        lines.append("reinstalled (missing or not current): " + ", ".join(outcome.reinstalled))
    if outcome.plan.recount or outcome.reinstalled:
        lines.append(f"recounted: {plural(outcome.counters_corrected, 'counter')} corrected")
    return "\n".join(lines) or f"already at {outcome.after}; nothing to do"


def mode_text(state: ModeState) -> str:
    """``mode``: the counter mode, its backlog, the last fold."""
    lines = [f"mode: {state.mode} (since {state.switched_at:%Y-%m-%d %H:%M:%S %Z})"]
    if state.mode != "immediate" or state.pending:
        age = "-" if state.oldest_pending_age_s is None else f"{state.oldest_pending_age_s:.1f} s"
        lines.append(f"pending answers: {state.pending}, oldest {age}")
        last = (
            "never"
            if state.last_fold_at is None
            else f"{state.last_fold_at:%Y-%m-%d %H:%M:%S %Z} "
            f"({plural(state.last_fold_rows or 0, 'answer')})"
        )
        lines.append(f"last fold: {last}")
    if state.held_back_by is not None:
        held = state.held_back_by
        who = (
            f"prepared transaction {held['gid']!r} (two-phase commit; COMMIT PREPARED or "
            "ROLLBACK PREPARED it)"
            if held.get("gid")
            else f"transaction pid {held['pid']} ({held['state']})"
        )
        lines.append(
            f"folding is held back by {who} in database {held['database']}, "
            f"{held['age']:.0f} s old: a fold cannot pass the oldest transaction of this "
            "database that has written anything; end it to let folds go on"
        )
    return "\n".join(lines)


def embedded_text(state: embedded.EmbeddedStatus) -> str:
    running = f"running (pid {state.postmaster_pid})" if state.running else "not running"
    lines = [
        f"data directory: {state.data_dir}" + ("" if state.exists else " (not created yet)"),
        f"server:         {running}",
        f"used by:        {', '.join(map(str, state.users)) or 'no process'}",
        f"size:           {_megabytes(state.size_bytes)} (WAL {_megabytes(state.wal_bytes)})",
    ]
    if state.stale_users:
        gone = ", ".join(map(str, state.stale_users))
        lines.append(f"killed users:   {gone} (forgotten at the next start or stop)")
    return "\n".join(lines)


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def roles_text(result: RolesResult) -> str:
    names = result.names
    lines = [f"owner {names.owner}, application {names.app}, read-only {names.readonly}"]
    if result.applied:
        lines += [f"fixed: {d.what}" for d in result.differences]
        lines += [f"password set for {role}" for role in result.passwords_set]
    else:
        lines += [f"differs: {d.what}\n  fix: {d.statement}" for d in result.differences]
    lines.append("AS THEY SHOULD BE" if result.ok else "PRIVILEGES DIFFER")
    return "\n".join(lines)
