"""Counter functions and triggers v1.

The counters of answers written before this revision are recounted by the lifecycle right
after it (``lifecycle.apply`` runs repair whenever a revision ran or an object was installed).

Revision ID: 0002_counters_v1
Revises: 0001_schema
Create Date: 2026-11-27
"""

from __future__ import annotations

from selfology_counters import model
from selfology_counters.lifecycle.migrations.sqlscript import drop_objects, install_objects

revision = "0002_counters_v1"
down_revision = "0001_schema"
branch_labels = None
depends_on = None

OBJECTS = (*model.FUNCTIONS, *model.TRIGGERS)


def upgrade() -> None:
    install_objects(OBJECTS)


def downgrade() -> None:
    drop_objects(OBJECTS)
