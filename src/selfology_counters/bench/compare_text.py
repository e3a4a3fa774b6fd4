"""The prose of ``compare``'s Markdown report, written from the measured figures.

Every number here is taken from the :class:`CompareResult`; where a sentence depends on how
the numbers came out (faster or slower, lost or not), it is chosen by comparing them, so the
text stays true when the report is regenerated on another machine.
"""

from __future__ import annotations

from selfology_counters.bench.compare_format import (
    DOC_SCALING,
    SHORT,
    ms,
    pct,
    rate,
    seconds,
    times,
)
from selfology_counters.bench.compare_results import CompareResult, lost, many_users, same_user
from selfology_counters.bench.harness import ConcurrentResult

DOC_TRIGGER_MS = 0.52
DOC_COUNT_MS = 127.0
DOC_EVENTS_MS = 0.08

DESCRIPTIONS = {
    "bare": "the answer row alone, no counter: the floor every ratio is against.",
    "manual_tx": "the application runs the INSERT and then `UPDATE ... SET n = n + 1` on "
    "each of the three counters, in one transaction (BEGIN, 4 statements, COMMIT: 6 round "
    "trips).",
    "manual_autocommit": "the same statements, each its own transaction (what an "
    "application gets when it forgets the transaction).",
    "manual_rmw": "in one transaction, the application SELECTs the three counters and "
    "writes back the value it computed (count + 1).",
    "trigger_007": "the document's migration 007 as written: an AFTER INSERT FOR EACH ROW "
    "trigger that looks up the session's user and, if `pg_try_advisory_xact_lock(user)` "
    "succeeds, increments the three counters; if not, it silently skips them "
    "(`sql/strategy_007.sql`).",
    "ours": "`schema_v1.sql` + every object of `model.py`, exactly as `migrate` installs "
    "them: statement-level "
    "triggers with transition tables, one counter write per key and statement.",
    "ours_deferred": "the same objects in deferred mode (`mode deferred`): an INSERT does no "
    "counter work; the exact reads (`answers_of_user`) add the answers not folded yet to the "
    "stored value; a worker (`deferred.fold_once`) folds them while the writers write.",
    "matview": "a materialized view of per-user `count(*)` with a unique index, refreshed "
    "(REFRESH ... CONCURRENTLY back to back while writers write); writes are the bare INSERT.",
    "count_star": "no counter; every read runs `count(*)` over the user's answers; writes are "
    "the bare INSERT.",
    "events": "each INSERT also writes an event row in the same statement (an outbox); an "
    "asyncio worker folds the events into the three counters in batches (DELETE ... "
    "RETURNING, aggregate, add, in one statement).",
    "pg_ivm": "the extension pg_ivm (incremental view maintenance): three IMMVs, `count(*)` "
    "per user, per session, and per user with a `digital_personality` row (an inner join), "
    "kept by pg_ivm's triggers in the writing transaction; writes are the bare INSERT "
    "(`sql/strategy_pg_ivm.sql`). See [Why not pg_ivm?](#why-not-pg_ivm).",
}


def preamble(r: CompareResult) -> str:
    return (
        "The user's architecture document (`COUNTER_RECOMMENDATION.txt`) rates five ways of "
        "keeping the answer counters with stars and with benchmark figures that no code "
        "produced. This page is the same comparison, measured: every strategy built in a "
        "scratch schema of its own on one PostgreSQL server and measured in one run by "
        f"`{r.command}`, then dropped. Every figure on this page comes from that run; the "
        "only numbers not measured are the document's claims, quoted beside the measurements "
        "(claim → measured). The prose below is generated from the same figures.\n\n"
        f"To regenerate: `selfology-counters compare --out docs` from the repository root "
        f"(this run took {r.seconds:.0f} s; `--quick` gives a first look in under a minute). "
        "The same run rewrites this page, its chart and the measured sections of the Russian "
        "analysis, [COUNTER_ANALYSIS_RU.md](COUNTER_ANALYSIS_RU.md), so the two always show "
        "the same figures."
    )


def strategies_list(r: CompareResult) -> str:
    lines = [
        "What was compared (the counter that is checked is "
        "`user_stats.total_answers_lifetime`, what the bot reads):",
        "",
    ]
    lines += [f"- **{SHORT[key]}**: {DESCRIPTIONS[key]}" for key in r.strategies]
    lines += [f"- **{SHORT[key]}**: not measured: {why}." for key, why in r.skipped.items()]
    return "\n".join(lines)


def scaling_guide(r: CompareResult) -> str:
    ours, floor, events = many_users(r, "ours"), many_users(r, "bare"), many_users(r, "events")
    m007 = same_user(r, "trigger_007")
    writers = ours.writers
    rows = [
        "| Users | Inserts/s | Document recommends | Measured here | What follows |",
        "|---|---|---|---|---|",
    ]
    for users, low, high, recommended in DOC_SCALING:
        span = f"{low:,}-{high:,}" if high is not None else f"{low:,}+"
        top = high if high is not None else low
        measured, follows = _scale_row(top, ours, floor, events, m007)
        rows.append(f"| {users} | {span} | {recommended} | {measured} | {follows} |")
    intro = (
        f"Capacity here means what {writers} writers on {writers} users sustained on this "
        f"machine: our triggers {rate(ours.per_second)}, the bare INSERT without any counter "
        f"{rate(floor.per_second)}, event-driven {rate(events.per_second)}. Each row's top "
        "rate is compared with those."
    )
    return intro + "\n\n" + "\n".join(rows) + "\n\n" + _scale_notes(r)


def _scale_row(
    top: int,
    ours: ConcurrentResult,
    floor: ConcurrentResult,
    events: ConcurrentResult,
    m007: ConcurrentResult,
) -> tuple[str, str]:
    ours_rate = ours.per_second
    if top <= ours_rate:
        measured = f"our triggers: {rate(ours_rate)}, {ours_rate / top:.1f}x the top rate"
        follows = "our triggers, exact; "
        if ours_rate / top < 2:
            follows += "little headroom on this machine, so watch the insert latency; "
        if lost(m007):
            follows += (
                f"not migration 007 (it lost {lost(m007)} of {m007.accounting.inserted} "
                "counts when answers of one user overlapped)"
            )
        else:
            follows += "migration 007 lost nothing in this run, but it can (see below)"
        return measured, follows
    if top <= floor.per_second:
        return (
            f"above our triggers' {rate(ours_rate)}, within the bare INSERT's "
            f"{rate(floor.per_second)}",
            "the counter's share of the insert cost starts to matter on this machine: a "
            "bigger server, or batching answers into multi-row INSERTs (the statement-level "
            "trigger counts a batch with one write per key)",
        )
    if events.per_second > ours_rate:
        why = (
            "its writers take no counter lock (the worker adds up in batches), but each "
            "answer is still two rows"
        )
    else:
        why = "it writes two rows per answer"
    return (
        f"beyond even the bare INSERT here ({rate(floor.per_second)}, no counter at all)",
        "no counter strategy reaches it on this hardware: the answers table itself needs "
        f"more hardware or sharding. Event-driven did {rate(events.per_second)} here against "
        f"our {rate(ours_rate)}: {why}",
    )


def _scale_notes(r: CompareResult) -> str:
    ours_seq = r.sequential_of("ours")
    same_ours, same_events = same_user(r, "ours"), same_user(r, "events")
    assert ours_seq is not None
    lines = [
        f"- One connection writing answers one by one (the bot's pattern per user) did "
        f"{rate(ours_seq.latency.per_second)} with our triggers "
        f"({ms(ours_seq.latency.avg_ms)} per answer, {times(ours_seq.latency_vs_floor)} the "
        "bare INSERT's latency).",
        f"- All writers on one user serialise on that user's counter row: our triggers did "
        f"{rate(same_ours.per_second)} there, event-driven "
        f"{rate(same_events.per_second)} (its writers share no counter row; the worker "
        "adds them up). A bot user answers one question at a time, so this is the worst "
        "case, not the common one.",
    ]
    return "\n".join(lines)


def document_errors(r: CompareResult) -> str:
    bullets = [
        _manual_sequential(r),
        _manual_concurrent(r),
        _migration_007(r),
        _speed(r),
        _count_star(r),
        _event_driven(r),
        _matview(r),
        _bulk_007(r),
    ]
    return "\n".join(f"- {b}" for b in bullets if b)


def _manual_sequential(r: CompareResult) -> str:
    forms = [(k, r.sequential_of(k)) for k in ("manual_tx", "manual_autocommit", "manual_rmw")]
    measured = ", ".join(
        f"{pct(s.accounting.consistency)} ({SHORT[k]})" for k, s in forms if s is not None
    )
    text = (
        f'**"Manual UPDATE: 70-85% consistency" in 1000 sequential inserts.** Measured over '
        f"{r.sizes.inserts} sequential inserts (+{r.sizes.warmup} warm-up): {measured}."
    )
    if all(s is not None and s.accounting.lost == 0 for _k, s in forms):
        text += (
            " One writer at a time has nothing to race with. Manual counters go wrong through "
            "concurrency (read-modify-write), a crash between two autocommit statements, or a "
            "code path that forgets the UPDATE, not by a fixed percentage."
        )
    return text


def _manual_concurrent(r: CompareResult) -> str:
    tx, auto, rmw = (same_user(r, k) for k in ("manual_tx", "manual_autocommit", "manual_rmw"))
    text = (
        f'**"Manual UPDATE: 15-30 race instances" in 100 concurrent inserts on one user.** '
        f"Measured with {tx.writers} writers x {r.sizes.per_writer} inserts on one user, "
        f"{r.sizes.rounds} round(s) "
        f"({tx.accounting.inserted} inserts): `n = n + 1` in the same transaction lost "
        f"{lost(tx)}, in separate autocommit statements {lost(auto)}, read-modify-write "
        f"{lost(rmw)}."
    )
    if lost(tx) == 0 and lost(auto) == 0:
        text += (
            " `UPDATE ... SET n = n + 1` is not a lost-update race in PostgreSQL: the row "
            "lock serialises the increments."
        )
    if lost(rmw):
        text += (
            " Counts are lost when the application reads the value and writes back what it "
            f"computed: {pct(rmw.accounting.consistency)} of the answers were counted."
        )
    return text


def _migration_007(r: CompareResult) -> str:
    same, many = same_user(r, "trigger_007"), many_users(r, "trigger_007")
    text = (
        '**"DB Trigger: 0 race conditions, 100% consistency, ACID" (migration 007).** '
        f"Measured, as written: {lost(same)} of {same.accounting.inserted} counts lost "
        f"({pct(same.accounting.consistency)} counted) with {same.writers} writers on one "
        f"user; {lost(many)} lost with one user per writer."
    )
    if lost(same):
        text += (
            " `pg_try_advisory_xact_lock` does not wait: while another transaction of the "
            "same user holds the lock, the trigger skips all three increments, and nothing "
            "adds them back later. The lock meant to prevent races is what loses the counts; "
            "the row lock of `n = n + 1` alone would have lost none."
        )
    else:
        text += (
            " It lost nothing in this run, but only because no two transactions of one user "
            "overlapped while the trigger ran; when they do, it skips the increments."
        )
    ours = same_user(r, "ours")
    text += f" Our triggers, same test: {lost(ours)} lost."
    return text


def _speed(r: CompareResult) -> str:
    get = r.sequential_of
    bare, tx, t007, ours = get("bare"), get("manual_tx"), get("trigger_007"), get("ours")
    if bare is None or tx is None or t007 is None or ours is None:
        return ""
    text = (
        f'**"Manual UPDATE 0.35 ms, trigger 0.52 ms" (manual faster).** Measured per '
        f"single-row insert: bare INSERT {ms(bare.latency.avg_ms)}; manual UPDATE in the same "
        f"transaction {ms(tx.latency.avg_ms)} ({times(tx.latency_vs_floor)}); migration 007 "
        f"{ms(t007.latency.avg_ms)} ({times(t007.latency_vs_floor)}); our triggers "
        f"{ms(ours.latency.avg_ms)} ({times(ours.latency_vs_floor)})."
    )
    if tx.latency.avg_ms > ours.latency.avg_ms:
        text += (
            " The manual UPDATE is the slower one: five more round trips from the application "
            "(BEGIN, three UPDATEs, COMMIT), where a trigger does the same work inside the "
            "INSERT's own statement."
        )
    else:
        text += " Here the manual UPDATE was not slower than our triggers."
    if bare.latency.avg_ms > DOC_TRIGGER_MS:
        text += (
            f" On this machine even the bare INSERT ({ms(bare.latency.avg_ms)}) is slower "
            "than the document's trigger figure; absolute times depend on the machine, which "
            "is why every figure here is also given as a ratio to the bare INSERT."
        )
    return text


def _count_star(r: CompareResult) -> str:
    cold, warm = r.read_of("count_star", "cold"), r.read_of("count_star", "warm")
    counter, one = r.read_of("counter", "warm"), r.read_of("select_1", "warm")
    if cold is None or warm is None or counter is None or one is None:
        return ""
    direction = (
        f"{DOC_COUNT_MS / cold.latency.p50_ms:.1f}x less than the document's 127 ms"
        if cold.latency.p50_ms < DOC_COUNT_MS
        else f"{cold.latency.p50_ms / DOC_COUNT_MS:.1f}x the document's 127 ms"
    )
    return (
        f'**"COUNT(*): 127 ms, 7/sec" at 100K answers per user.** Measured at '
        f"{r.sizes.read_answers:,} answers of one user: {ms(cold.latency.p50_ms)} median after "
        f"ANALYZE (first read {ms(cold.first_ms)}), {ms(warm.latency.p50_ms)} after VACUUM "
        f"(index-only scan): {direction}{_size_caveat(r)}. Reading our counter takes "
        f"{ms(counter.latency.p50_ms)}, against {ms(one.latency.p50_ms)} for a bare SELECT 1 "
        f"round trip; COUNT(*) costs {warm.latency.p50_ms / counter.latency.p50_ms:.0f}x the "
        "counter read warm, and grows with the user's answers while the counter read does "
        'not. "7/sec" confuses latency with throughput: reads run in parallel.'
    )


def _size_caveat(r: CompareResult) -> str:
    if r.sizes.read_answers >= 100_000:
        return ""
    return (
        f" (at {r.sizes.read_answers:,} answers, not the document's 100,000: run without "
        "--quick for that size)"
    )


def _event_driven(r: CompareResult) -> str:
    s, bare = r.sequential_of("events"), r.sequential_of("bare")
    if s is None or bare is None:
        return ""
    text = (
        f'**"Event-Driven: 0.08 ms, 12,500/sec, 99.9%".** Measured: '
        f"{ms(s.latency.avg_ms)} per insert ({times(s.latency_vs_floor)} the bare INSERT), "
        f"{rate(s.latency.per_second)} on one connection; "
        f"{pct(s.accounting.consistency_at_end)} counted when the writes ended, "
        f"{pct(s.accounting.consistency)} after the worker drained."
    )
    if bare.latency.avg_ms > DOC_EVENTS_MS:
        text += (
            f" 0.08 ms is less than this machine's bare INSERT ({ms(bare.latency.avg_ms)}): "
            "no design that stores the answer and its event in the same transaction can be "
            "that fast here; a figure like it needs the event sent outside the transaction, "
            "where a crash loses it."
        )
    if r.drain is not None:
        text += (
            f" The worker drained {rate(r.drain.events_per_second, ' events/s')} "
            f"(batches of {r.drain.batch})."
        )
    return text


def _matview(r: CompareResult) -> str:
    if r.refresh is None:
        return ""
    stale = [c.staleness for c in r.concurrent if c.strategy == "matview" and c.staleness]
    text = (
        f'**"Mat. View: slow, eventual"** is right, and measurable: REFRESH takes '
        f"{ms(r.refresh.refresh_ms)} and REFRESH CONCURRENTLY {ms(r.refresh.concurrently_ms)} "
        f"at {r.refresh.table_rows:,} answer rows, and grows with the whole table, not with "
        "the writes."
    )
    if stale:
        worst = max(stale, key=lambda s: s.max_age_s)
        most = max(s.max_unreflected for s in stale)
        text += (
            f" Refreshing back to back while writers wrote, answers were missing from the view "
            f"for up to {seconds(worst.max_age_s)}, up to {most} of them at a time."
        )
    return text


def _bulk_007(r: CompareResult) -> str:
    ladder, ours = r.ladder, r.bulk_of("ours")
    done = [s for s in ladder.steps if not s.cancelled] if ladder else []
    if ladder is None or len(done) < 2 or ours is None:
        return ""
    first, last = done[0], done[-1]
    final = ladder.steps[-1]
    if final.cancelled:
        outcome = (
            f"{final.rows:,} rows did not finish in {seconds(final.seconds)} and were cancelled"
        )
    elif final.rows == r.sizes.bulk_rows:
        outcome = f"{final.rows:,} rows took {seconds(final.seconds)}"
    else:
        outcome = f"the ladder stopped at {final.rows:,} rows"
    return (
        "**Not in the document: migration 007 cannot take a bulk insert.** Its row trigger "
        f"did {rate(first.rows_per_second, ' rows/s')} at {first.rows:,} rows and "
        f"{rate(last.rows_per_second, ' rows/s')} at {last.rows:,} (slower per row as the "
        f"statement grows); {outcome}. Our statement-level triggers inserted "
        f"{ours.rows:,} rows at {rate(ours.rows_per_second, ' rows/s')} "
        f"({times(ours.throughput_vs_floor)} the bare INSERT's rows/s). The document rates "
        '"DB Trigger" as one thing; row-level and statement-level triggers are not.'
    )


def pg_ivm(r: CompareResult) -> str:
    """The real alternative for exact counts kept by PostgreSQL in the writing transaction,
    beside ours, from the run's figures; or why this run has none."""
    if "pg_ivm" in r.skipped:
        return (
            f"Not measured in this run: {r.skipped['pg_ivm']}. pg_ivm is built and installed "
            "apart from PostgreSQL (github.com/sraoss/pg_ivm); on a server that has it, "
            "`compare` creates the extension for the run, measures it beside the others and "
            "drops it again."
        )
    if "pg_ivm" not in r.strategies:
        return ""
    parts = [_ivm_keeps(r), _ivm_one_writer(r), _ivm_writers(r), _ivm_bulk(r), _ivm_read(r)]
    return "\n".join(f"- {p}" for p in parts if p)


def _ivm_keeps(r: CompareResult) -> str:
    version = next((e for e in r.server.extensions if e.startswith("pg_ivm ")), "pg_ivm")
    return (
        f"**What it keeps.** {version}: the answers per user, per session and per user with a "
        "`digital_personality` row, each an IMMV: a table of its own, kept in the writing "
        "transaction by pg_ivm's statement-level triggers. It cannot keep a column of an "
        "existing table, so the three columns the bot reads (`user_stats."
        "total_answers_lifetime`, `onboarding_sessions.questions_answered`, "
        "`digital_personality.total_answers_analyzed`) are not expressible: every read of "
        "the bot would move to the IMMVs, where a key without answers has no row. The "
        "personality count needs a join, which pg_ivm keeps as an inner join only: the outer "
        "join that would keep a personality's zero is refused (\"aggregate is not supported "
        'with outer join").'
    )


def _ivm_one_writer(r: CompareResult) -> str:
    ivm, ours = r.sequential_of("pg_ivm"), r.sequential_of("ours")
    if ivm is None or ours is None:
        return ""
    return (
        f"**One writer.** {ms(ivm.latency.avg_ms)} per single-row insert, "
        f"{times(ivm.latency_vs_floor)} the bare INSERT's latency in the same rounds; our "
        f"triggers {ms(ours.latency.avg_ms)} ({times(ours.latency_vs_floor)})."
    )


def _ivm_writers(r: CompareResult) -> str:
    ivm_one, ivm_many = same_user(r, "pg_ivm"), many_users(r, "pg_ivm")
    ours_one, ours_many = same_user(r, "ours"), many_users(r, "ours")
    text = (
        f"**{ivm_one.writers} writers.** On one user pg_ivm did {rate(ivm_one.per_second)} "
        f"({times(ivm_one.throughput_vs_floor)} the bare INSERT), our triggers "
        f"{rate(ours_one.per_second)} ({times(ours_one.throughput_vs_floor)}); with a user "
        f"per writer pg_ivm {rate(ivm_many.per_second)} "
        f"({times(ivm_many.throughput_vs_floor)}), ours {rate(ours_many.per_second)} "
        f"({times(ours_many.throughput_vs_floor)}). Counts lost by pg_ivm: {lost(ivm_one)} "
        f"and {lost(ivm_many)}."
    )
    gain_ivm = ivm_many.per_second / ivm_one.per_second
    gain_ours = ours_many.per_second / ours_one.per_second
    if gain_ivm < gain_ours:
        text += (
            f" Spreading the writers over {ivm_many.users} users multiplied our rate by "
            f"{gain_ours:.1f} and pg_ivm's by {gain_ivm:.1f}: pg_ivm takes an ExclusiveLock "
            "on a GROUP BY IMMV for every write until the transaction ends, so writers of "
            "different users wait for each other as if they were one (`tests/test_pg_ivm.py` "
            "forces it: a second writer of another user waits for the first one's commit)."
        )
    return text


def _ivm_bulk(r: CompareResult) -> str:
    ivm, ours = r.bulk_of("pg_ivm"), r.bulk_of("ours")
    if ivm is None or ours is None:
        return ""
    return (
        f"**Bulk.** One INSERT ... SELECT of {ivm.rows:,} rows: "
        f"{rate(ivm.rows_per_second, ' rows/s')} ({times(ivm.throughput_vs_floor)} the bare "
        f"INSERT's rows/s), ours {rate(ours.rows_per_second, ' rows/s')} "
        f"({times(ours.throughput_vs_floor)}); counted {pct(ivm.accounting.consistency)}."
    )


def _ivm_read(r: CompareResult) -> str:
    ivm, ours, one = (
        r.read_of("pg_ivm", "warm"),
        r.read_of("counter", "warm"),
        r.read_of("select_1", "warm"),
    )
    if ivm is None or ours is None or one is None:
        return ""
    return (
        f"**Read.** A user's total from the IMMV: {ms(ivm.latency.p50_ms)} warm median "
        f"({times(ivm.latency.p50_ms / one.latency.p50_ms)} SELECT 1), our counter "
        f"{ms(ours.latency.p50_ms)} ({times(ours.latency.p50_ms / one.latency.p50_ms)}): "
        "both one index lookup."
    )
