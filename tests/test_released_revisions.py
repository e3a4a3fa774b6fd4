"""Released revisions are never edited again (procrastinate pins its migrations the same way):
a database that ran one must be able to trust that its text is what ran. A change of schema
is a new revision; a change of a counter function, trigger or view needs none (the lifecycle
reinstalls every object that is not current, from the model, after the revisions).

0002 and 0003 were edited once, before this test existed, to install nothing (their objects
moved to the lifecycle when 0004 made them read a later column); they are pinned as they
are now rather than edited back, which would be a second edit of a released file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

VERSIONS = Path(__file__).parent.parent / "src/selfology_counters/lifecycle/migrations/versions"
RELEASED = {
    "0001_schema.py": "06b9599c82b1a7bd5b0f0d5f33e6f84b6ff6118f90f22a82039eeba7dc3c662f",
    "0002_counters_v1.py": "d452743d58d0e0cbea383d5060381fe83ce4f5e51e9ce379c7a668c69d681f09",
    "0003_consistency_view_v1.py": (
        "e1d8d4c042d0a6f5968324832825d76b89abbe747c74a3e4c78e788c5c142162"
    ),
    "0004_deferred_v1.py": "bc2704f375cb0e69c45c308ee0180879978e0df4583851fed6dcb0be9efbcd77",
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_a_released_revision_is_never_edited(name: str) -> None:
    digest = hashlib.sha256((VERSIONS / name).read_bytes()).hexdigest()
    assert digest == RELEASED[name], f"{name} was edited: add a new revision instead"


def test_every_revision_on_disk_is_pinned_once_released() -> None:
    on_disk = {p.name for p in VERSIONS.glob("[0-9]*.py")}
    assert on_disk == set(RELEASED), "pin a new revision here when it is released"
