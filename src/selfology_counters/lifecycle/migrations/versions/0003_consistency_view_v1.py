"""The view selfology.counter_consistency_check (sessions, users, personalities, missing rows).

Revision ID: 0003_consistency_view_v1
Revises: 0002_counters_v1
Create Date: 2026-11-27
"""

from __future__ import annotations

from selfology_counters import model
from selfology_counters.lifecycle.migrations.sqlscript import drop_objects

revision = "0003_consistency_view_v1"
down_revision = "0002_counters_v1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Since 0004 the objects are installed after every revision has run (lifecycle.settle),
    # because they read columns that later revisions add. This revision installed them once.
    pass


def downgrade() -> None:
    drop_objects(model.VIEWS)
