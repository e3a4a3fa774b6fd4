"""Figures quoted by hand in the recommendation and the adoption runbook are the decision
matrix's: each table that cites it holds no number the matrix does not show."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_analysis_ru import MATRIX, english_numbers, table_rows

DOCS = MATRIX.parent
CITING_TABLES = [
    (DOCS / "COUNTER_RECOMMENDATION.md", "## Scorecard"),
    (DOCS / "ADOPTING.md", "## Code that disabled `update_all_answer_counters_trigger`"),
]


@pytest.mark.parametrize(("path", "heading"), CITING_TABLES, ids=lambda v: getattr(v, "name", v))
def test_every_figure_of_a_citing_table_is_the_matrixs(path: Path, heading: str) -> None:
    text = path.read_text(encoding="utf-8")
    start = text.index(heading)
    section = text[start : text.find("\n## ", start + len(heading))]
    rows = table_rows(section)
    assert rows, f"no table under {heading!r} in {path.name}"
    shown = set(english_numbers(MATRIX.read_text(encoding="utf-8")))
    for row in rows:
        quoted = {n for cell in row[:-1] for n in english_numbers(cell)}  # last: where measured
        assert quoted - shown == set(), (path.name, row[:2])
