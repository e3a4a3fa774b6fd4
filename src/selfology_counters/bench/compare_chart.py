"""``compare``'s chart: insert latency, throughput and read latency per strategy, on log
scales (the values span four orders of magnitude). matplotlib is imported here only, with
its Agg canvas (no display, no global pyplot state); it comes with the ``compare`` extra, not
with the bot's install."""

from __future__ import annotations

import importlib
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from selfology_counters.bench.compare_format import SHORT
from selfology_counters.bench.compare_results import CompareResult

EXTRA = "compare"


def install_hint() -> str:
    """The command that puts matplotlib into this very environment. The package is on no
    index, so ``pip install 'selfology-counters[compare]'`` cannot work; the extra's own
    requirement (from the installed metadata, so it cannot drift from pyproject.toml) can."""
    marker = f'extra == "{EXTRA}"'
    try:
        requires = metadata.requires("selfology-counters") or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        requires = []
    found = [r.split(";")[0].strip() for r in requires if marker in r.replace("'", '"')]
    requirement = found[0] if found else "matplotlib"
    return f"{shlex.quote(sys.executable)} -m pip install {shlex.quote(requirement)}"


def can_draw() -> bool:
    """Whether matplotlib imports here (a real import: a broken install counts as missing)."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return False
    return True


def write_chart(r: CompareResult, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 15), layout="constrained")
    FigureCanvasAgg(figure)
    panels: Any = figure.subfigures(3, 1, height_ratios=(8, 11, 5))
    for panel, draw in zip(panels, (_insert_latency, _throughput, _reads), strict=True):
        axes = panel.subplots()
        draw(axes, r)
        panel.legend(fontsize=8, loc="outside lower center", ncols=2)
    figure.suptitle(
        f"Counter strategies on PostgreSQL {r.server.server_version.split(' ')[0]}, "
        f"{r.server.cpus} CPUs ({r.sizes.name} run)",
        fontsize=13,
    )
    figure.savefig(path, dpi=90)


def _bars(axes: Any, labels: list[str], series: dict[str, list[float | None]]) -> None:
    """Horizontal grouped bars; a missing value leaves a gap."""
    height = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        positions = [y + (i - (len(series) - 1) / 2) * height for y in range(len(labels))]
        shown = [(p, v) for p, v in zip(positions, values, strict=True) if v]
        axes.barh([p for p, _ in shown], [v for _, v in shown], height=height, label=name)
        for p, v in shown:
            axes.text(v, p, f" {_short_number(v)}", va="center", fontsize=7)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axes.set_yticks(range(len(labels)), labels)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _short_number(v)))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.grid(axis="x", which="both", alpha=0.3)


def _short_number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"  # also the axis ticks: 0.01, 0.1, 1


def _insert_latency(axes: Any, r: CompareResult) -> None:
    labels = [SHORT[s.strategy] for s in r.sequential]
    _bars(
        axes,
        labels,
        {
            "avg": [s.latency.avg_ms for s in r.sequential],
            "p99": [s.latency.p99_ms for s in r.sequential],
        },
    )
    axes.set_xlabel("ms per single-row insert (log scale)")
    axes.set_title(f"{r.sizes.inserts} sequential single-row inserts, one connection")


def _throughput(axes: Any, r: CompareResult) -> None:
    keys = list(
        dict.fromkeys([s.strategy for s in r.sequential] + [c.strategy for c in r.concurrent])
    )
    writers = r.budget.writers if r.budget else r.sizes.writers

    def concurrent(key: str, same_user: bool) -> float | None:
        c = r.concurrent_of(key, same_user=same_user)
        return c.per_second if c else None

    def sequential(key: str) -> float | None:
        s = r.sequential_of(key)
        return s.latency.per_second if s else None

    def bulk(key: str) -> float | None:
        b = r.bulk_of(key)
        if b is not None:
            return b.rows_per_second
        if key == "trigger_007" and r.ladder and r.ladder.steps:
            return r.ladder.steps[-1].rows_per_second  # a bound if cancelled (see the report)
        return None

    _bars(
        axes,
        [SHORT[k] for k in keys],
        {
            "sequential inserts/s (1 connection)": [sequential(k) for k in keys],
            f"{writers} writers, same user": [concurrent(k, True) for k in keys],
            f"{writers} writers, {writers} users": [concurrent(k, False) for k in keys],
            _bulk_label(r): [bulk(k) for k in keys],
        },
    )
    axes.set_xlabel("answers per second (log scale)")
    axes.set_title("Throughput")


def _bulk_label(r: CompareResult) -> str:
    label = f"bulk rows/s ({r.sizes.bulk_rows:,}-row INSERT"
    last = r.ladder.steps[-1] if r.ladder and r.ladder.steps else None
    if last is not None and last.cancelled:
        return label + f"; 007: an upper bound, cancelled after {last.seconds:.0f} s)"
    if last is not None and last.rows < r.sizes.bulk_rows:
        return label + f"; 007: at {last.rows:,} rows)"
    return label + ")"


def _reads(axes: Any, r: CompareResult) -> None:
    cold = [x for x in r.reads if x.state == "cold"]
    warm = [r.read_of(x.path, "warm") for x in cold]
    _bars(
        axes,
        [x.label for x in cold],
        {
            "after ANALYZE (cold), median": [x.latency.p50_ms for x in cold],
            "after VACUUM (warm), median": [x.latency.p50_ms if x else None for x in warm],
        },
    )
    axes.set_xlabel("ms per read (log scale)")
    axes.set_title(f"Reading one user's total, {r.sizes.read_answers:,} answers of that user")
