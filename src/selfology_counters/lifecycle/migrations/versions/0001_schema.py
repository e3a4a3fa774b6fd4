"""The Selfology tables: sessions, answers (with user_id), user_stats, digital_personality.

Revision ID: 0001_schema
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from selfology_counters.lifecycle.migrations.sqlscript import refuse_original_schema, run_sql_file

revision = "0001_schema"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    refuse_original_schema()
    run_sql_file("schema_v1.sql")


def downgrade() -> None:
    run_sql_file("drop_schema_v1.sql")
