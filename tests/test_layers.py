"""The layers of the package, as imports (issue 21): the operator's runtime never imports the
benchmark, and the DAO (what the bot imports) loads neither Alembic nor SQLAlchemy. Each
module is imported in a fresh interpreter, so nothing another test imported hides a load."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import selfology_counters

# Needs no server of the suite's: run once, on the embedded pass (conftest.py).
pytestmark = pytest.mark.server_independent

RUNTIME = sorted(
    f"selfology_counters.{m.name}"
    for m in pkgutil.iter_modules(selfology_counters.__path__)
    if m.name != "bench"
)
# Imports each module in turn and names, for each, the modules it loaded first.
LOADED = """
import importlib, json, sys
loads = {}
for module in sys.argv[1:]:
    before = set(sys.modules)
    importlib.import_module(module)
    loads[module] = sorted(set(sys.modules) - before)
print(json.dumps(loads))
"""


def loads_of(*modules: str) -> dict[str, list[str]]:
    """For each of ``modules``, imported in turn in one fresh interpreter: what it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", LOADED, *modules], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_the_runtime_never_imports_the_benchmark() -> None:
    bench = {
        module: [m for m in loaded if m.startswith("selfology_counters.bench")]
        for module, loaded in loads_of(*RUNTIME).items()
    }
    assert {module: found for module, found in bench.items() if found} == {}


def test_the_dao_loads_no_migration_machinery() -> None:
    loaded = loads_of("selfology_counters.dao")["selfology_counters.dao"]
    heavy = [m for m in loaded if m.split(".")[0] in ("alembic", "sqlalchemy")]
    assert heavy == [], f"importing the DAO loads {heavy[:5]}"
