"""The package as the bot gets it (docs/ADOPTING.md, "Installing the package into the bot's
environment"): a wheel built from this checkout with ``pip wheel --no-deps``, installed into a
clean virtual environment, imported and run against a test database from outside the source
tree. The package is on no index, so this is the path that must work."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# About the wheel, not the server: run once, on the embedded pass (conftest.py).
pytestmark = pytest.mark.server_independent

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "selfology_counters"
DAO_ROUND_TRIP = """
import asyncio, sys
from selfology_counters import OnboardingDAO

async def main():
    async with await OnboardingDAO.connect(sys.argv[1]) as dao:
        session = await dao.start_session(31337)
        await dao.save_answer(session, "q_intro", "from the wheel")
        print(await dao.get_user_total_answers(31337), await dao.get_session_answer_count(session))

asyncio.run(main())
"""


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # As a shell in another directory runs it: no source tree or pytest path in the way.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SELFOLOGY_DSN")}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (a build in the checkout would ship
    whatever an earlier build left in build/)."""
    where = tmp_path_factory.mktemp("wheel")
    source = where / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        where / "dist",
        source,
        cwd=where,
    )
    assert built.returncode == 0, built.stderr
    [found] = (where / "dist").glob("selfology_counters-*-py3-none-any.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Path:
    """A clean virtual environment with the wheel (and its dependencies) installed."""
    where = wheel.parent.parent / "venv"
    assert run(sys.executable, "-m", "venv", where, cwd=wheel.parent).returncode == 0
    installed = run(where / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=where)
    assert installed.returncode == 0, installed.stderr
    return where


def test_the_wheel_carries_every_file_the_package_reads(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    patterns = ("**/*.py", "py.typed", "sql/*.sql", "**/migrations/*.mako")
    wanted = {
        f"selfology_counters/{path.relative_to(PACKAGE)}"
        for pattern in patterns
        for path in PACKAGE.glob(pattern)
        if "__pycache__" not in path.parts
    }
    assert wanted - names == set()


def test_installed_from_the_wheel_the_dao_and_check_work(
    venv: Path, empty_db: str, tmp_path: Path
) -> None:
    python, command = venv / "bin" / "python", venv / "bin" / "selfology-counters"
    where = run(
        python, "-c", "import selfology_counters; print(selfology_counters.__file__)", cwd=tmp_path
    )
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    # The bot's install stays free of the chart's dependencies.
    assert run(python, "-c", "import matplotlib", cwd=tmp_path).returncode != 0
    migrated = run(command, "migrate", "--dsn", empty_db, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    used = run(python, "-c", DAO_ROUND_TRIP, empty_db, cwd=tmp_path)
    assert used.returncode == 0, used.stderr
    assert used.stdout.split() == ["1", "1"]
    checked = run(command, "check", "--json", "--dsn", empty_db, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compare_says_a_command_that_installs_the_chart_there(venv: Path, tmp_path: Path) -> None:
    command = venv / "bin" / "selfology-counters"
    refused = run(
        command,
        "compare",
        "--out",
        tmp_path / "out",
        "--dsn",
        "postgresql://nobody@127.0.0.1:1/none",
        cwd=tmp_path,
    )
    assert refused.returncode == 2
    hint = refused.stderr.strip().split("install it: ", 1)[1]
    assert run(*shlex.split(hint), cwd=tmp_path).returncode == 0  # the hint works as printed
    assert run(venv / "bin" / "python", "-c", "import matplotlib", cwd=tmp_path).returncode == 0
