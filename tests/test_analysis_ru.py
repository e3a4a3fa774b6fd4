"""The Russian analysis shows the figures of the English decision matrix: both are written by
one `compare --out` run, and the committed pair comes from one run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selfology_counters.bench import compare_report, compare_ru
from selfology_counters.bench.compare import run_compare
from selfology_counters.bench.compare_format import ms
from selfology_counters.bench.compare_results import SMOKE

DOCS = Path(__file__).resolve().parent.parent / "docs"
RU_DOC = DOCS / compare_ru.DOC_NAME
MATRIX = DOCS / compare_report.REPORT_NAME
SECTION = re.compile(r"<!-- generated: ([a-z-]+) -->(.*?)<!-- /generated: \1 -->", re.DOTALL)


def english_numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text))


def russian_numbers(text: str) -> list[str]:
    text = re.sub(r"(?<=\d)\u00a0(?=\d{3}(?!\d))", "", text)
    return re.findall(r"\d+(?:\.\d+)?", re.sub(r"(?<=\d),(?=\d)", ".", text))


def sections(text: str) -> dict[str, str]:
    return {name: body for name, body in SECTION.findall(text)}


def table_rows(text: str) -> list[list[str]]:
    """The body rows of every Markdown table in ``text``, as cells."""
    rows, previous = [], ""
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---") and previous.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
        previous = line
    return rows


def english_claim_tables(matrix: str) -> str:
    start = matrix.index("## The document's tables, measured")
    return matrix[start : matrix.index("## What this means", start)]


def assert_same_figures(russian: str, english: str) -> None:
    """The Russian sections of one run against the English report of the same run."""
    found = sections(russian)
    assert set(found) == set(compare_ru.SECTIONS)
    # The document's two tables: row by row, cell by cell, the same numbers.
    ru_rows = table_rows(found["claims"])
    en_rows = table_rows(english_claim_tables(english))
    assert len(ru_rows) == len(en_rows) > 0
    for ru_row, en_row in zip(ru_rows, en_rows, strict=True):
        assert [russian_numbers(c) for c in ru_row[1:]] == [english_numbers(c) for c in en_row[1:]]
    # Every other figure of the Russian sections is one the English report shows.
    shown = set(english_numbers(english))
    for name, body in found.items():
        assert set(russian_numbers(body)) - shown == set(), name
    assert re.search(r"^- прогон: (\S+),", found["run"], re.M)[1] in english  # type: ignore[index]


@pytest.mark.chart
async def test_one_run_writes_the_same_figures_into_both_reports(db: str, tmp_path: Path) -> None:
    result = await run_compare(db, SMOKE, command="selfology-counters compare --smoke")
    filled, alone = tmp_path / "filled", tmp_path / "alone"
    filled.mkdir()
    shutil.copy(RU_DOC, filled / compare_ru.DOC_NAME)
    matrix, _chart, russian = compare_report.write_report(result, filled)
    assert russian == filled / compare_ru.DOC_NAME
    english, text = matrix.read_text(encoding="utf-8"), russian.read_text(encoding="utf-8")
    assert_same_figures(text, english)
    ours = result.sequential_of("ours")
    assert ours is not None and ms(ours.latency.avg_ms) in english
    assert compare_ru.ms_ru(ours.latency.avg_ms) in sections(text)["summary"]
    # The hand-written prose around the sections is kept as it was.
    original = RU_DOC.read_text(encoding="utf-8")
    assert SECTION.sub("", text) == SECTION.sub("", original)
    # Without a Russian analysis in DIR, the sections are written alone: the same text.
    alone.mkdir()
    *_, written = compare_report.write_report(result, alone)
    assert sections(written.read_text(encoding="utf-8")) == sections(text)
    assert compare_ru.problems(written) is None
    assert_same_figures(written.read_text(encoding="utf-8"), english)


def test_the_committed_reports_come_from_one_run() -> None:
    assert compare_ru.problems(RU_DOC) is None
    assert_same_figures(RU_DOC.read_text(encoding="utf-8"), MATRIX.read_text(encoding="utf-8"))


@pytest.mark.chart
def test_a_broken_russian_analysis_stops_compare_before_it_measures(tmp_path: Path) -> None:
    text = RU_DOC.read_text(encoding="utf-8")
    (tmp_path / compare_ru.DOC_NAME).write_text(
        text.replace("<!-- /generated: claims -->", ""), encoding="utf-8"
    )
    env = {**os.environ, "SELFOLOGY_DSN": "postgresql://nobody@127.0.0.1:1/none"}
    cli = str(Path(sys.executable).parent / "selfology-counters")
    result = subprocess.run(
        [cli, "compare", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "generated: NAME" in result.stderr and "database:" not in result.stderr
    assert not (tmp_path / compare_report.REPORT_NAME).exists()


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, "1 писатель"),
        (3, "3 писателя"),
        (12, "12 писателей"),
        (22, "22 писателя"),
        (100, "100 писателей"),
        (1000, "1\u00a0000 писателей"),
    ],
)
def test_numbers_agree_with_their_nouns(n: int, expected: str) -> None:
    assert compare_ru.plural(n, compare_ru.WRITERS) == expected
