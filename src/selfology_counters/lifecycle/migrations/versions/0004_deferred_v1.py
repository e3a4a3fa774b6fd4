"""Deferred mode's tables: the answers' transaction id, its indexes, and the mode row.

Every counter function, trigger and view is installed after the revisions, from the model
(``lifecycle.settle``): they depend on this revision's column.

Revision ID: 0004_deferred_v1
Revises: 0003_consistency_view_v1
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from selfology_counters import model
from selfology_counters.lifecycle.migrations.sqlscript import drop_objects, run_named
from selfology_counters.lifecycle.revisions import INDEX_BLOCKS

revision = "0004_deferred_v1"
down_revision = "0003_consistency_view_v1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_named("deferred_v1.sql", "columns")
    # Built without blocking the bot's writes; each statement outside a transaction.
    with op.get_context().autocommit_block():
        for name in INDEX_BLOCKS:
            run_named("deferred_v1.sql", name)


def downgrade() -> None:
    # Every object reads the column this revision added; the release that downgrades puts
    # its own back.
    drop_objects(model.OBJECTS)
    run_named("deferred_v1.sql", "downgrade")
