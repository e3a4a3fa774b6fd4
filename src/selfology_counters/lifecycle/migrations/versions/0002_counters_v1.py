"""Counter functions and triggers v1 (installed by the lifecycle since 0004; see upgrade).

Revision ID: 0002_counters_v1
Revises: 0001_schema
Create Date: 2026-11-27
"""

from __future__ import annotations

from selfology_counters import model
from selfology_counters.lifecycle.migrations.sqlscript import drop_objects

revision = "0002_counters_v1"
down_revision = "0001_schema"
branch_labels = None
depends_on = None

OBJECTS = (*model.FUNCTIONS, *model.TRIGGERS)


def upgrade() -> None:
    # Since 0004 the objects are installed after every revision has run (lifecycle.settle),
    # because they read columns that later revisions add. This revision installed them once.
    pass


def downgrade() -> None:
    drop_objects(OBJECTS)
