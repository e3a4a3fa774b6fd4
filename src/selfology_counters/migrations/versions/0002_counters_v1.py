"""Counter functions and triggers v1, and every counter recounted to the exact value.

Installing the triggers locks user_answers_new against writes until this transaction
commits, so the recount that follows sees every answer and no write slips between the two.

Revision ID: 0002_counters_v1
Revises: 0001_schema
Create Date: 2026-11-27
"""

from __future__ import annotations

from selfology_counters.migrations.sqlscript import run_sql_file

revision = "0002_counters_v1"
down_revision = "0001_schema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("counters_v1.sql")
    run_sql_file("recount_all_v1.sql")


def downgrade() -> None:
    run_sql_file("drop_counters_v1.sql")
