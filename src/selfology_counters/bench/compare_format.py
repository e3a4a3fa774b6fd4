"""Labels, number formats and the document's claims, shared by ``compare``'s renderers.

The only numbers written here are the document's own claims (COUNTER_RECOMMENDATION.txt),
quoted so that the measurements can be set beside them.
"""

from __future__ import annotations

SHORT = {
    "bare": "bare INSERT (floor)",
    "manual_tx": "manual UPDATE, same tx",
    "manual_autocommit": "manual UPDATE, autocommit",
    "manual_rmw": "manual read-modify-write",
    "trigger_007": "migration 007 trigger",
    "ours": "our triggers (as shipped)",
    "ours_deferred": "our triggers, deferred mode",
    "matview": "materialized view",
    "count_star": "COUNT(*) on read",
    "events": "event-driven (outbox)",
    "pg_ivm": "pg_ivm (IMMVs)",
}

# The document's claims (COUNTER_RECOMMENDATION.txt), quoted to be set beside the figures.
DOC_SEQUENTIAL = {
    "manual": ("0.35ms", "350ms", "2857/sec", "70-85%"),
    "trigger": ("0.52ms", "520ms", "1923/sec", "100%"),
    "count": ("127ms", "127000ms", "7/sec", "100%"),
    "events": ("0.08ms", "80ms", "12500/sec", "99.9%"),
}
DOC_CONCURRENT = {
    "manual": ("15-30 instances", "Yes", "Low"),
    "trigger": ("0 instances", "No", "Medium"),
    "events": ("0 instances", "No", "High"),
}
# The document's scaling guide: users, inserts/s (low, high; None = open), its recommendation.
DOC_SCALING = [
    ("100-1K", 10, 50, "DB Trigger"),
    ("1K-10K", 50, 500, "DB Trigger"),
    ("10K-100K", 500, 5000, "DB Trigger + Monitor"),
    ("100K-1M", 5000, 50000, "Event-Driven"),
    ("1M+", 50000, None, "Event-Driven + Sharding"),
]


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.3f} ms"


def rate(value: float | None, unit: str = "/s") -> str:
    return "-" if value is None else f"{value:,.0f}{unit}"


def pct(value: float | None) -> str:
    if value is None:
        return "-"
    return "100%" if value == 1 else f"{value:.1%}"


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s" if value < 100 else f"{value:,.0f} s"
