"""What deploy/ ships: alert rules (promtool), the Grafana dashboard and the systemd unit, held
to the metrics the exporters really serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from selfology_counters import OnboardingDAO, metrics
from selfology_counters.metrics import WatchMetrics
from selfology_counters.watch import Scope, Watch
from tests.processes import prometheus_binary

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "selfology-counters.json"
UNIT = ROOT / "deploy" / "systemd" / "selfology-counters-watch.service"

PROMTOOL, needs_promtool = prometheus_binary("promtool")

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$:])[A-Za-z_:][\w:]*", expr):
        if match.group() in _KEYWORDS or expr[match.end() :].lstrip().startswith("("):
            continue
        names.add(match.group())
    return names


def test_metric_names_finds_metrics_only() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y"}[$__rate_interval]))) > 0.05'
        ' or absent(b{scope="full"}) and on (kind) c == 0 unless time() - d offset 5m > 1e3'
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d"}


@pytest.fixture
async def served(db: str, conn: asyncpg.Connection) -> set[str]:
    """Every sample name the exporters serve: watch's registry after a full check (every
    labelled series set), and the bot's registry after one save_answer."""
    watch = Watch(db, metrics=WatchMetrics(), log=lambda *_a, **_k: None)
    try:
        assert (await watch.check(Scope.FULL)).ok
    finally:
        await watch.close()
    bot = CollectorRegistry()
    pool = await asyncpg.create_pool(db, min_size=1, max_size=1)
    try:
        dao = OnboardingDAO(pool, metrics=bot)
        await dao.save_answer(await dao.start_session(1), "q", "a")
    finally:
        await pool.close()
    return {
        sample.name
        for registry in (watch.metrics.registry, bot)
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }


def assert_served(exprs: list[str], served: set[str]) -> None:
    read = set().union(*(metric_names(expr) for expr in exprs))
    assert read - served == set()
    assert read & set(metrics.DEFERRED), "the backlog of deferred mode is left out"


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@needs_promtool
def test_promtool_checks_the_rules_and_their_unit_tests_pass() -> None:
    assert PROMTOOL is not None
    for command in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        result = subprocess.run([PROMTOOL, *command], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


async def test_every_alert_reads_served_metrics_and_says_what_to_run(served: set[str]) -> None:
    alerts = rules()
    assert_served([rule["expr"] for rule in alerts], served)
    for rule in alerts:
        assert "selfology-counters" in rule["annotations"]["summary"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
    drift = next(rule for rule in alerts if rule["alert"] == "CounterDrift")
    assert drift["for"] == "5m"


async def test_every_dashboard_query_reads_served_metrics(served: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    source = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exprs = []
    for panel in panels:
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
            exprs.append(target["expr"])
    assert_served(exprs, served)


def test_the_systemd_unit_runs_watch_with_options_it_has() -> None:
    unit = UNIT.read_text()
    [exec_start] = re.findall(r"^ExecStart=(.*)$", unit, re.MULTILINE)
    assert exec_start.split()[1:] == ["watch"]
    help_text = subprocess.run(
        [str(Path(exec_start.split()[0]).name), "watch", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "300", "PATH": _venv_bin()},
    ).stdout
    for variable in re.findall(r"^Environment=(SELFOLOGY_\w+)=", unit, re.MULTILINE):
        assert variable in help_text
    assert "KillSignal=SIGTERM" in unit and "Restart=on-failure" in unit


def _venv_bin() -> str:
    return str(Path(sys.executable).parent)
