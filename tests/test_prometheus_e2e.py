"""End to end: a real Prometheus (Debian's package) scrapes `selfology-counters watch` and
evaluates the shipped alert rules; drift injected into the database shows in its HTTP API as
a lower consistency rate and a pending CounterDrift alert, and repair clears both.

The rules are loaded as shipped: an alert is pending from the first evaluation that finds its
expression true, whatever its `for:` (5 minutes for drift), so the test takes seconds. Short
scrape and evaluation intervals come from the test's own Prometheus config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from selfology_counters import health
from tests.processes import PrometheusProcess, WatchProcess, prometheus_binary
from tests.truth import write_counters_by_hand

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS, pytestmark = prometheus_binary("prometheus")

CONFIG = """\
global:
  scrape_interval: 500ms
  scrape_timeout: 400ms
  evaluation_interval: 500ms
rule_files:
  - {rules}
scrape_configs:
  - job_name: selfology-counters-watch
    static_configs:
      - targets: ['127.0.0.1:{port}']
"""
RATE = 'min(counter_consistency_rate{scope="full"})'
DRIFTED = "user_stats.total_answers_lifetime"


async def drift_alerts(prometheus: PrometheusProcess) -> list[dict[str, Any]]:
    alerts = (await prometheus.api("alerts"))["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == "CounterDrift"]


async def test_prometheus_sees_the_drift_and_the_alert_goes_pending(
    conn: asyncpg.Connection, db: str, tmp_path: Path
) -> None:
    await conn.execute("INSERT INTO selfology.onboarding_sessions (user_id) VALUES (1), (2)")
    await conn.execute(
        "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
        " SELECT id, 'q', 'a' FROM selfology.onboarding_sessions"
    )
    watch = await WatchProcess.start(db, "--quick-interval", "0.2", "--full-interval", "0.3")
    prometheus = None
    try:
        port = (await watch.next("serving"))["port"]
        config = tmp_path / "prometheus.yml"
        config.write_text(CONFIG.format(rules=RULES, port=port))
        assert PROMETHEUS is not None
        prometheus = await PrometheusProcess.start(PROMETHEUS, config, tmp_path)

        async def consistent() -> bool:
            return await prometheus.value(RATE) == 1

        await prometheus.until(consistent, "the first scrape of a consistent database")
        await write_counters_by_hand(
            conn, "UPDATE selfology.user_stats SET total_answers_lifetime = 5 WHERE user_id = 1"
        )

        async def dropped() -> bool:
            value = await prometheus.value(RATE)
            return value is not None and value < 1

        async def pending() -> bool:
            return [a["state"] for a in await drift_alerts(prometheus)] == ["pending"]

        await prometheus.until(dropped, "the consistency rate to drop")
        assert await prometheus.value(RATE) == 3 / 4  # 2 session and 2 user counters, 1 wrong
        await prometheus.until(pending, "CounterDrift to be pending")
        [alert] = await drift_alerts(prometheus)
        assert alert["labels"]["counter"] == DRIFTED
        assert "selfology-counters repair" in alert["annotations"]["summary"]

        await health.repair(conn)

        async def cleared() -> bool:
            return await consistent() and not await drift_alerts(prometheus)

        await prometheus.until(cleared, "repair to bring the rate back to 1 and clear the alert")
    finally:
        if prometheus is not None:
            await prometheus.stop()
        assert await watch.stop() == 0
