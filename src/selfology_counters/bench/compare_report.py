"""How ``compare``'s result is shown: the document's two tables with the measured values
beside its claims, the fuller tables, a Markdown report with what the figures mean, a chart.

Every figure printed here comes from the :class:`CompareResult` given (the document's claims
beside them are quoted in compare_format.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from selfology_counters.bench import compare_ru, compare_text
from selfology_counters.bench.compare_format import (
    DOC_CONCURRENT,
    DOC_SEQUENTIAL,
    SHORT,
    ms,
    pct,
    rate,
    seconds,
    times,
)
from selfology_counters.bench.compare_results import CompareResult, ReadResult
from selfology_counters.bench.harness import ConcurrentResult
from selfology_counters.bench.strategies import WORKER_BATCH, WORKER_IDLE_S

REPORT_NAME = "COUNTER_DECISION_MATRIX.md"
CHART_NAME = "img/counter_strategies.png"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def lost_text(c: ConcurrentResult | None) -> str:
    if c is None or c.accounting.lost is None:
        return "-"
    return f"{c.accounting.lost} of {c.accounting.inserted}"


# ---- the tables ----


def document_tables(r: CompareResult) -> list[Table]:
    """The document's "1000 sequential inserts" and "100 concurrent inserts (same user)"
    tables, each cell as "claim -> measured"."""
    return [_doc_sequential(r), _doc_concurrent(r)]


def _beside(claim: str, measured: str) -> str:
    return f"{claim} -> {measured}"


def _doc_sequential(r: CompareResult) -> Table:
    rows = []
    for key, doc, name in (
        ("manual_tx", "manual", "Manual UPDATE (same transaction)"),
        ("manual_autocommit", "manual", "Manual UPDATE (autocommit)"),
        ("manual_rmw", "manual", "Manual UPDATE (read-modify-write)"),
        ("trigger_007", "trigger", "DB Trigger (BEST) = migration 007"),
        ("ours", "trigger", "our statement-level triggers *"),
        ("ours_deferred", "events", "our triggers, deferred mode *"),
        ("events", "events", "Event-Driven (outbox + worker)"),
    ):
        s = r.sequential_of(key)
        if s is None:
            continue
        claim = DOC_SEQUENTIAL[doc]
        consistency = pct(s.accounting.consistency)
        if s.accounting.consistency_at_end != s.accounting.consistency:
            consistency = (
                f"{pct(s.accounting.consistency_at_end)} at end, "
                f"{pct(s.accounting.consistency)} after drain"
            )
        rows.append(
            [
                name,
                _beside(claim[0], ms(s.latency.avg_ms)),
                _beside(claim[1], ms(s.latency.total_ms)),
                _beside(claim[2], rate(s.latency.per_second, "/sec")),
                _beside(claim[3], consistency),
            ]
        )
    cold = r.read_of("count_star", "cold")
    if cold is not None:
        claim = DOC_SEQUENTIAL["count"]
        total = cold.latency.p50_ms * r.sizes.inserts
        right = "100%" if cold.value == cold.expected else f"read {cold.value}"
        rows.insert(
            min(5, len(rows)),
            [
                "COUNT(*) query (the read)",
                _beside(claim[0], ms(cold.latency.p50_ms)),
                _beside(claim[1], ms(total)),
                _beside(claim[2], rate(1000 / cold.latency.p50_ms, "/sec")),
                _beside(claim[3], right),
            ],
        )
    return Table(
        f"Test: {r.sizes.inserts} sequential inserts (document's claim -> measured)",
        ["Method", "Avg Time", "Total Time", "Throughput", "Consistency"],
        rows,
        [
            "* not in the document. Consistency: answers reflected in "
            "user_stats.total_answers_lifetime / answers inserted.",
            f"COUNT(*) row: the document's figure is a read; measured: the median COUNT(*) of "
            f"one user's {r.sizes.read_answers:,} answers after ANALYZE (writes are the bare "
            "INSERT).",
        ],
    )


def _doc_concurrent(r: CompareResult) -> Table:
    writers = r.budget.writers if r.budget else r.sizes.writers
    rows = []
    for key, doc, name in (
        ("manual_tx", "manual", "Manual UPDATE (same transaction)"),
        ("manual_autocommit", "manual", "Manual UPDATE (autocommit)"),
        ("manual_rmw", "manual", "Manual UPDATE (read-modify-write)"),
        ("trigger_007", "trigger", "DB Trigger = migration 007"),
        ("ours", "trigger", "our statement-level triggers *"),
        ("ours_deferred", "events", "our triggers, deferred mode *"),
        ("events", "events", "Event-Driven (after drain)"),
    ):
        c = r.concurrent_of(key, same_user=True)
        if c is None:
            continue
        claim = DOC_CONCURRENT[doc]
        lost = c.accounting.lost or 0
        rows.append(
            [
                name,
                _beside(claim[0], f"{lost} lost of {c.accounting.inserted}"),
                _beside(claim[1], "Yes" if lost else "No"),
                f"{claim[2]} (not measured)",
            ]
        )
    return Table(
        f"Test: {writers} concurrent writers x {r.sizes.per_writer} inserts{_rounds(r)} "
        "(same user) (document's claim -> measured)",
        ["Method", "Race Conditions (lost counts)", "Data Loss", "Complexity"],
        rows,
        [
            "* not in the document. Lost counts: answers inserted minus how much "
            "user_stats.total_answers_lifetime moved; every writer has its own session of "
            "the one user, all released at once.",
        ],
    )


def full_tables(r: CompareResult) -> list[Table]:
    tables = [_sequential(r), _concurrent(r), _bulk(r)]
    if r.ladder is not None:
        tables.append(_ladder(r))
    tables += [_reads(r), _matview(r), _events(r)]
    return tables


def _sequential(r: CompareResult) -> Table:
    rows = []
    for s in r.sequential:
        a = s.accounting
        rows.append(
            [
                SHORT[s.strategy],
                ms(s.latency.avg_ms),
                ms(s.latency.p50_ms),
                ms(s.latency.p99_ms),
                rate(s.latency.per_second),
                times(s.latency_vs_floor),
                pct(a.consistency_at_end),
                pct(a.consistency),
            ]
        )
    for key in ("matview", "count_star"):
        rows.append([SHORT[key], "= bare", "", "", "", "", "-", "-"])
    return Table(
        f"Sequential single-row inserts: {r.sizes.inserts} per strategy, interleaved on one "
        "connection",
        [
            "strategy",
            "avg",
            "p50",
            "p99",
            "inserts/s",
            "latency vs floor",
            "consistent at end",
            "after settling",
        ],
        rows,
        [
            "Each insert is its own transaction (autocommit for the single statements). "
            "'after settling': after the event worker drained; the worker ran beside the "
            f"writes (batches of {WORKER_BATCH}, polling every {WORKER_IDLE_S * 1000:.0f} ms).",
            "The materialized view and COUNT(*) write with the bare INSERT; their cost is at "
            "read or refresh time.",
        ],
    )


def _concurrent(r: CompareResult) -> Table:
    rows = []
    for key in _keys(r.concurrent):
        cells = [SHORT[key]]
        for same_user in (True, False):
            c = r.concurrent_of(key, same_user=same_user)
            assert c is not None
            cells += [
                _rate_range(c.per_second, c.per_second_range, c.rounds),
                times(c.throughput_vs_floor),
                lost_text(c),
                str(c.errors),
            ]
        rows.append(cells)
    writers = r.budget.writers if r.budget else r.sizes.writers
    notes = [
        f"{writers} connections, each inserting {r.sizes.per_writer} answers in its own "
        f"session, released at once; 'many users': one user per writer ({writers} users).",
        "Lost: answers inserted minus the counter's change, after the strategy settled (event "
        "worker drained, view refreshed).",
    ]
    if r.sizes.rounds > 1:
        notes.append(
            f"Every strategy ran {r.sizes.rounds} times per scenario, the order rotated each "
            "round; inserts/s is over all rounds, in brackets the slowest and fastest round. "
            "The spread is this machine's noise."
        )
    if r.budget and r.budget.note:
        notes.append(f"Clamped: {r.budget.note}.")
    return Table(
        f"{writers} concurrent writers x {r.sizes.per_writer} inserts{_rounds(r)}",
        [
            "strategy",
            "same user: inserts/s",
            "vs floor",
            "lost",
            "errors",
            "many users: inserts/s",
            "vs floor",
            "lost",
            "errors",
        ],
        rows,
        notes,
    )


def _rounds(r: CompareResult) -> str:
    return f", {r.sizes.rounds} rounds" if r.sizes.rounds > 1 else ""


def _rate_range(value: float, spread: tuple[float, float], runs: int) -> str:
    """A rate over several runs, and in brackets the slowest and fastest run's."""
    return rate(value) if runs == 1 else f"{rate(value)} ({spread[0]:,.0f}-{spread[1]:,.0f})"


def _keys(results: list[ConcurrentResult]) -> list[str]:
    return list(dict.fromkeys(c.strategy for c in results))


def _bulk(r: CompareResult) -> Table:
    rows = []
    for b in r.bulk:
        rows.append(
            [
                SHORT[b.strategy],
                seconds(b.seconds),
                _rate_range(b.rows_per_second, b.rows_per_second_range, b.repeats),
                times(b.throughput_vs_floor),
                pct(b.accounting.consistency_at_end),
                pct(b.accounting.consistency),
            ]
        )
    ladder = r.ladder
    if ladder is not None and ladder.steps:
        last = ladder.steps[-1]
        floor = next((b.rows_per_second for b in r.bulk if b.strategy == "bare"), None)
        if last.rows == r.sizes.bulk_rows and not last.cancelled:
            rows.append(
                [
                    SHORT["trigger_007"],
                    seconds(last.seconds),
                    rate(last.rows_per_second),
                    times(last.rows_per_second / floor if floor else None),
                    pct(ladder.accounting.consistency),
                    pct(ladder.accounting.consistency),
                ]
            )
        elif last.rows == r.sizes.bulk_rows:
            rows.append(
                [
                    SHORT["trigger_007"],
                    f"> {seconds(last.seconds)} (cancelled)",
                    f"< {rate(last.rows_per_second)}",
                    f"< {times(last.rows_per_second / floor if floor else None)}",
                    "-",
                    "-",
                ]
            )
        else:
            rows.append([SHORT["trigger_007"], "not run (see the ladder)", "", "", "", ""])
    return Table(
        f"One INSERT ... SELECT of {r.sizes.bulk_rows:,} rows (median of {r.sizes.bulk_repeats})",
        [
            "strategy",
            "time (median)",
            "rows/s (slowest-fastest)",
            "throughput vs floor",
            "consistent at end",
            "after settling",
        ],
        rows,
        [
            "The manual strategies add the row count to each counter once, after the INSERT. "
            "The event worker did not run during the bulk inserts; 'after settling' is after "
            "it drained their backlog (see the event-driven table).",
        ],
    )


def _ladder(r: CompareResult) -> Table:
    ladder = r.ladder
    assert ladder is not None
    rows = [
        [
            f"{s.rows:,}",
            (
                f"> {seconds(s.seconds)} (cancelled by statement_timeout)"
                if s.cancelled
                else seconds(s.seconds)
            ),
            (f"< {rate(s.rows_per_second)}" if s.cancelled else rate(s.rows_per_second)),
        ]
        for s in ladder.steps
    ]
    notes = [
        "Its row-level trigger updates the same three counter rows once per inserted row, all "
        "in one transaction; each update steps over the row versions the previous ones left, "
        "so the time grows with the square of the rows.",
    ]
    if ladder.extrapolated_s is not None and ladder.exponent is not None:
        notes.append(
            f"Extrapolated, not measured: from the last two completed sizes the time grows as "
            f"rows^{ladder.exponent:.2f}, which puts {ladder.target_rows:,} rows at about "
            f"{seconds(ladder.extrapolated_s)}."
        )
    return Table(
        "Migration 007 trigger: one INSERT ... SELECT at growing sizes",
        ["rows", "time", "rows/s"],
        rows,
        notes,
    )


def _reads(r: CompareResult) -> Table:
    rows = []
    one = r.read_of("select_1", "warm")
    for cold in (x for x in r.reads if x.state == "cold"):
        warm = r.read_of(cold.path, "warm")
        assert warm is not None
        ratio = warm.latency.p50_ms / one.latency.p50_ms if one else None
        rows.append(
            [
                cold.label,
                ms(cold.first_ms),
                ms(cold.latency.p50_ms),
                ms(cold.latency.p95_ms),
                ms(warm.latency.p50_ms),
                ms(warm.latency.p95_ms),
                times(ratio),
                _value(cold, warm),
            ]
        )
    return Table(
        f"Reading one user's total ({r.sizes.read_answers:,} answers of that user, as many "
        f"again of 100 others; {r.sizes.read_repeats} reads each, interleaved)",
        [
            "read",
            "cold: first",
            "cold: median",
            "cold: p95",
            "warm: median",
            "warm: p95",
            "warm median vs SELECT 1",
            "value read",
        ],
        rows,
        [
            "cold: right after loading and ANALYZE (no visibility map yet, so COUNT(*) visits "
            "the table's pages); warm: after VACUUM (index-only scans possible). Autovacuum is "
            "off on these tables so the states are the ones named.",
            "The migration 007 and event-driven counters are read the same way as ours (one "
            "primary-key lookup in user_stats).",
        ],
    )


def _value(cold: ReadResult, warm: ReadResult) -> str:
    if cold.expected is None:
        return str(cold.value)
    ok = cold.value == warm.value == cold.expected
    return f"{cold.value:,}" + ("" if ok else f" (expected {cold.expected:,})")


def _matview(r: CompareResult) -> Table:
    rows = []
    if r.refresh is not None:
        rows.append([f"REFRESH ({r.refresh.table_rows:,} answer rows)", ms(r.refresh.refresh_ms)])
        rows.append(["REFRESH CONCURRENTLY (same)", ms(r.refresh.concurrently_ms)])
    for same_user in (True, False):
        c = r.concurrent_of("matview", same_user=same_user)
        if c is None or c.staleness is None:
            continue
        who = "same user" if same_user else f"{c.users} users"
        st = c.staleness
        rows.append(
            [
                f"while {c.writers} writers wrote ({who}): refreshes back to back",
                f"{st.refreshes}, avg {ms(st.avg_refresh_ms)}",
            ]
        )
        rows.append([f"  most answers not yet in the view ({who})", str(st.max_unreflected)])
        rows.append([f"  oldest an answer got before it showed ({who})", seconds(st.max_age_s)])
    return Table(
        "Materialized view: refresh cost and staleness",
        ["what", "measured"],
        rows,
        [
            "A reader of the view sees the table as of the start of the last completed "
            "refresh; even refreshing back to back, answers are missing from it for up to the "
            "age shown.",
        ],
    )


def _events(r: CompareResult) -> Table:
    rows = []
    if r.drain is not None:
        d = r.drain
        rows.append(
            [
                f"drain of the bulk inserts' backlog ({d.events:,} events, batches of {d.batch})",
                f"{seconds(d.seconds)}: {rate(d.events_per_second, ' events/s')}",
            ]
        )
    s = r.sequential_of("events")
    if s is not None and s.max_event_age_s is not None:
        rows.append(["sequential inserts: oldest event when folded", seconds(s.max_event_age_s)])
        rows.append(
            [
                "sequential inserts: counted when the writes ended",
                pct(s.accounting.consistency_at_end),
            ]
        )
    for same_user in (True, False):
        c = r.concurrent_of("events", same_user=same_user)
        if c is None or c.lag is None:
            continue
        who = "same user" if same_user else f"{c.users} users"
        rows.append(
            [
                f"{c.writers} writers ({who}): oldest event when folded",
                seconds(c.lag.max_event_age_s),
            ]
        )
        rows.append(
            [
                f"{c.writers} writers ({who}): drained after the writers stopped in",
                seconds(c.lag.drain_after_writers_s),
            ]
        )
        rows.append(
            [
                f"{c.writers} writers ({who}): counted when the writes ended",
                pct(c.accounting.consistency_at_end),
            ]
        )
    return Table(
        "Event-driven: worker drain rate and lag",
        ["what", "measured"],
        rows,
        [
            f"The worker folds up to {WORKER_BATCH} events per transaction (DELETE ... "
            "RETURNING, aggregate, add to the three counters, in one statement) and polls "
            f"every {WORKER_IDLE_S * 1000:.0f} ms when it finds none.",
        ],
    )


# ---- rendering ----


def render_text_table(table: Table) -> str:
    widths = [
        max(len(str(row[i])) for row in [table.headers, *table.rows])
        for i in range(len(table.headers))
    ]
    line = "─┼─".join("─" * w for w in widths)
    header = " │ ".join(h.ljust(w) for h, w in zip(table.headers, widths, strict=True))
    out = [table.title, "", header]
    out.append(line)
    for row in table.rows:
        out.append(" │ ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    out += [f"  {note}" for note in table.notes]
    return "\n".join(out)


def render_markdown_table(table: Table) -> str:
    def cells(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|").replace("->", "→") for v in values) + " |"

    out = [f"### {table.title.replace('->', '→')}", "", cells(table.headers)]
    out.append("|" + "|".join("---" for _ in table.headers) + "|")
    out += [cells(row) for row in table.rows]
    if table.notes:
        out.append("")
        out += [f"- {note}" for note in table.notes]
    return "\n".join(out)


def header_lines(r: CompareResult) -> list[str]:
    s = r.server
    lines = [
        f"server: {s.version}",
        f"settings: {', '.join(s.settings)}",
        f"machine: {s.machine}; {s.cpus} CPUs, {s.memory_gib:.1f} GiB memory (the client's; "
        "with the embedded server, the server's too)",
        f"command: {r.command}",
        *([f"extensions: {', '.join(s.extensions)}"] if s.extensions else []),
        f"sizes ({r.sizes.name}): {r.sizes.describe()}",
        f"run: {r.started_at}, {r.seconds:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in r.phase_seconds.items())})",
    ]
    if r.budget is not None:
        b = r.budget
        lines.append(
            f"connections: max_connections={b.max_connections}, {b.in_use} in use when the "
            f"writers connected (this tool's own included); {b.writers} writers"
        )
        if b.note:
            lines.append(f"clamped: {b.note}")
    return lines


def text(r: CompareResult) -> str:
    """What the CLI prints."""
    skipped = [f"not measured: {SHORT[key]}: {why}" for key, why in r.skipped.items()]
    parts = ["\n".join(header_lines(r) + skipped)]
    parts += [render_text_table(t) for t in document_tables(r)]
    parts += [render_text_table(t) for t in full_tables(r)]
    verdict = (
        "our triggers: every answer counted in every scenario"
        if r.our_losses == 0
        else f"OUR TRIGGERS LOST {r.our_losses} COUNTS"
    )
    parts.append(verdict)
    return "\n\n".join(parts)


def markdown(r: CompareResult, chart: str | None = CHART_NAME) -> str:
    """The whole report: where and how, the document's tables, the full tables, what the
    figures mean for the document's scaling guide, and where the document was wrong."""
    parts = [
        "# Counter strategies, measured: the decision matrix",
        compare_text.preamble(r),
        "## Where and how this was measured",
        "\n".join(f"- {line}" for line in header_lines(r)),
        compare_text.strategies_list(r),
        "## The document's tables, measured",
        *[render_markdown_table(t) for t in document_tables(r)],
        "## What this means for the document's scaling guide",
        compare_text.scaling_guide(r),
        "## Where the document was wrong",
        compare_text.document_errors(r),
        "## Why not pg_ivm?",
        compare_text.pg_ivm(r),
        "## All measurements",
    ]
    if chart:
        parts.append(f"![latency and throughput per strategy]({chart})")
    parts += [render_markdown_table(t) for t in full_tables(r)]
    return "\n\n".join(parts) + "\n"


def unwritable(out_dir: Path) -> str | None:
    """Why the report could not be written into ``out_dir``, or None: tried (the directories
    made, a file created and removed in each) before measuring, so that minutes of measuring
    are not lost to a directory that cannot take the result."""
    import tempfile

    try:
        for folder in {out_dir, (out_dir / CHART_NAME).parent}:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        for name in (REPORT_NAME, CHART_NAME, compare_ru.DOC_NAME):
            if (out_dir / name).exists():
                with (out_dir / name).open("ab"):
                    pass
    except OSError as exc:
        return f"cannot write the report into {out_dir}: {exc.strerror or exc}"
    return None


def write_report(r: CompareResult, out_dir: Path) -> tuple[Path, Path, Path]:
    """``out_dir``/COUNTER_DECISION_MATRIX.md, the chart it shows, and the measured sections
    of ``out_dir``/COUNTER_ANALYSIS_RU.md (compare_ru.py), all from ``r``; returns the paths."""
    from selfology_counters.bench.compare_chart import write_chart

    report, chart = out_dir / REPORT_NAME, out_dir / CHART_NAME
    chart.parent.mkdir(parents=True, exist_ok=True)
    write_chart(r, chart)
    report.write_text(markdown(r, CHART_NAME), encoding="utf-8")
    return report, chart, compare_ru.write(r, out_dir / compare_ru.DOC_NAME)
