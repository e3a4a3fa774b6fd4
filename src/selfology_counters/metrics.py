"""Prometheus metrics: every name in one place, and the collectors that serve them.

Two processes serve them. The bot's own process serves the insert latency histogram,
recorded by :class:`~selfology_counters.dao.OnboardingDAO` when it is given a registry (off
by default, and then it costs nothing). ``selfology-counters watch`` serves everything else,
read from the database: :class:`WatchMetrics`. The alert rules (``deploy/prometheus/``) and
the dashboard (``deploy/grafana/``) use these names; tests hold them to what is served.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from selfology_counters import model
from selfology_counters.deferred import ModeState
from selfology_counters.health import CheckResult
from selfology_counters.objects import ObjectStatus, State

# --- in the bot's process (OnboardingDAO) ---
ANSWER_INSERT_DURATION = "answer_insert_duration_seconds"
# A single-row save_answer takes well under a millisecond; 50 ms is the alert's threshold.
INSERT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# --- in `selfology-counters watch` ---
DATABASE_UP = "counter_database_up"
CHECK_FAILURES = "counter_check_failures_total"
CHECK_DURATION = "counter_check_duration_seconds"
LAST_CHECK = "counter_last_check_success_timestamp_seconds"
CONSISTENCY_RATE = "counter_consistency_rate"
INCONSISTENT_COUNTERS = "inconsistent_counters_total"  # the document's name, though a gauge
COUNTERS_CHECKED = "counters_checked"
OBJECT_INSTALLED = "counter_object_installed"
OBJECT_CURRENT = "counter_object_current"
OBJECT_ENABLED = "counter_object_enabled"
OBJECT_STATE = "counter_object_state"  # what the alerts read: the audit's verdict
FOREIGN_TRIGGERS = "counter_foreign_triggers"
OVERRIDDEN_WRITES = "counter_overridden_writes"
LOCK_WAITERS = "counter_lock_waiters"
LOCK_WAIT_LONGEST = "counter_lock_wait_max_seconds"
LAST_REPAIR = "counter_last_repair_timestamp_seconds"
REPAIRED_COUNTERS = "counter_repaired_counters_total"
AUTO_REPAIR_LIMIT_EXCEEDED = "counter_auto_repair_limit_exceeded"

# --- deferred counter mode ---
# Sampled by `watch` at every check (deferred.state): the answers waiting to be folded into
# the stored counters, the age of the oldest of them, and when a worker last folded. In
# immediate mode the backlog is 0 and the last fold stays at its last value (0: never).
PENDING_DELTAS = "counter_pending_deltas"
OLDEST_PENDING = "counter_oldest_pending_seconds"
WORKER_LAST_FOLD = "counter_worker_last_fold_timestamp_seconds"
DEFERRED = (PENDING_DELTAS, OLDEST_PENDING, WORKER_LAST_FOLD)

SCOPES = ("recent", "full")
"""What a check of `watch` covered: users with answers written since the last-but-one quick
check, or every counter."""

_insert_histograms: weakref.WeakKeyDictionary[CollectorRegistry, Histogram] = (
    weakref.WeakKeyDictionary()
)


def insert_histogram(registry: CollectorRegistry) -> Histogram:
    """``answer_insert_duration_seconds`` in ``registry``, created once per registry (several
    DAOs of one process share it), labelled by the DAO method that inserted."""
    if registry not in _insert_histograms:
        _insert_histograms[registry] = Histogram(
            ANSWER_INSERT_DURATION,
            "Seconds an OnboardingDAO answer insert took, retries included, in this process.",
            ["operation"],
            buckets=INSERT_BUCKETS,
            registry=registry,
        )
    return _insert_histograms[registry]


class WatchMetrics:
    """What ``watch`` serves. Its own registry unless given one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)
        scope, counter, obj = ("scope",), ("scope", "counter"), ("kind", "name", "table")
        gauge = self._gauge
        self.database_up = gauge(
            DATABASE_UP,
            "1 when the last attempt to reach the database worked, 0 when it failed; NaN "
            "before the first attempt.",
        )
        # Not 0 before the first check has tried: that would say "down" (and could page).
        self.database_up.set(math.nan)
        self.pending = gauge(PENDING_DELTAS, "Answers not folded yet (deferred counter mode).")
        self.oldest_pending = gauge(
            OLDEST_PENDING, "Seconds the oldest answer not folded yet has waited (0: none)."
        )
        self.last_fold = gauge(WORKER_LAST_FOLD, "Unix time of a worker's last fold (0: never).")
        self.check_failures = Counter(
            CHECK_FAILURES,
            "Checks that could not run (database away, schema missing).",
            scope,
            registry=self.registry,
        )
        self.check_duration = gauge(
            CHECK_DURATION, "Seconds the last successful check took.", scope
        )
        self.last_check = gauge(LAST_CHECK, "Unix time of the last successful check.", scope)
        self.consistency_rate = gauge(
            CONSISTENCY_RATE,
            "Share of the counters the last check compared that equal COUNT(*) (1 = all).",
            scope,
        )
        self.inconsistent = gauge(
            INCONSISTENT_COUNTERS, "Counters that differ from COUNT(*) at the last check.", counter
        )
        self.checked = gauge(
            COUNTERS_CHECKED, "Counters the last check compared with COUNT(*).", counter
        )
        self.installed = gauge(
            OBJECT_INSTALLED, "1 when the counter function, trigger or view is installed.", obj
        )
        self.current = gauge(
            OBJECT_CURRENT,
            "1 when the installed object is this release's, unedited (0: outdated or missing).",
            obj,
        )
        self.enabled = gauge(
            OBJECT_ENABLED, "1 when the object is installed and (a trigger) enabled.", obj
        )
        self.state = gauge(
            OBJECT_STATE,
            "1 for the object's state as `check` audits it (current, outdated, disabled, "
            "missing), 0 for the others.",
            (*obj, "state"),
        )
        self.foreign_triggers = gauge(
            FOREIGN_TRIGGERS, "Other triggers on the counted tables (they may count twice)."
        )
        self.overridden_writes = gauge(
            OVERRIDDEN_WRITES,
            "Writes to the counter column that did not come from the counter functions (the "
            "application's own); undone, so the counter stayed exact. Remove that statement.",
            ("counter",),
        )
        self.lock_waiters = gauge(
            LOCK_WAITERS, "Sessions waiting for a lock while they touch a counted table."
        )
        self.lock_wait_longest = gauge(
            LOCK_WAIT_LONGEST, "Seconds the longest of those sessions has been waiting."
        )
        self.last_repair = gauge(
            LAST_REPAIR, "Unix time of the last automatic repair watch completed (0: none)."
        )
        self.repaired = Counter(
            REPAIRED_COUNTERS,
            "Counters corrected by watch's automatic repair.",
            registry=self.registry,
        )
        self.limit_exceeded = gauge(
            AUTO_REPAIR_LIMIT_EXCEEDED,
            "1 when the last check found more wrong counters than --auto-repair-max allows "
            "(or a counter object not current), so watch left them to a person.",
            scope,
        )
        for name in SCOPES:
            self.check_failures.labels(scope=name)

    def _gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)

    def database_reached(self, up: bool) -> None:
        self.database_up.set(1 if up else 0)

    def check_failed(self, scope: str) -> None:
        self.check_failures.labels(scope=scope).inc()

    def checked_counters(self, scope: str, result: CheckResult) -> None:
        """The outcome of one successful check: per counter, compared and wrong."""
        self.consistency_rate.labels(scope=scope).set(result.consistency_rate)
        for counter in model.COUNTERS:
            wrong = sum(1 for issue in result.issues if issue.counter == counter.name)
            self.inconsistent.labels(scope=scope, counter=counter.name).set(wrong)
            self.checked.labels(scope=scope, counter=counter.name).set(
                result.checked[counter.checked_as]
            )
        self.objects(result.objects, len(result.foreign_triggers))
        for overridden in result.audit.overridden if result.audit else []:
            self.overridden_writes.labels(counter=overridden.counter).set(overridden.writes)
        self.check_duration.labels(scope=scope).set(result.elapsed_s)
        self.last_check.labels(scope=scope).set_to_current_time()

    def objects(self, statuses: Sequence[ObjectStatus], foreign_triggers: int) -> None:
        for status in statuses:
            labels = {"kind": status.kind, "name": status.name, "table": status.table or ""}
            self.installed.labels(**labels).set(1 if status.installed else 0)
            for state in State:
                is_it = status.state is state
                self.state.labels(**labels, state=state.value).set(1 if is_it else 0)
            self.current.labels(**labels).set(1 if status.current else 0)
            self.enabled.labels(**labels).set(1 if status.installed and status.enabled else 0)
        self.foreign_triggers.set(foreign_triggers)

    def deferred_backlog(self, state: ModeState) -> None:
        self.pending.set(state.pending)
        self.oldest_pending.set(state.oldest_pending_age_s or 0.0)
        if state.last_fold_at is not None:
            self.last_fold.set(state.last_fold_at.timestamp())

    def lock_waits(self, waiters: int, longest_seconds: float) -> None:
        self.lock_waiters.set(waiters)
        self.lock_wait_longest.set(longest_seconds)

    def repaired_counters(self, changed: int) -> None:
        self.repaired.inc(changed)
        self.last_repair.set_to_current_time()

    def auto_repair_held_back(self, scope: str, held: bool) -> None:
        self.limit_exceeded.labels(scope=scope).set(1 if held else 0)
