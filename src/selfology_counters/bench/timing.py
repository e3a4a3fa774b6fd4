"""Latency samples and the figures reported from them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class LatencySummary:
    """Milliseconds per operation, and operations per second of wall time."""

    count: int
    avg_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    total_ms: float
    per_second: float

    @classmethod
    def of(cls, samples_s: list[float]) -> LatencySummary:
        ms = sorted(s * 1000 for s in samples_s)
        total = sum(ms)
        return cls(
            count=len(ms),
            avg_ms=total / len(ms),
            p50_ms=percentile(ms, 50),
            p95_ms=percentile(ms, 95),
            p99_ms=percentile(ms, 99),
            total_ms=total,
            per_second=len(ms) / (total / 1000) if total else 0.0,
        )


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)
