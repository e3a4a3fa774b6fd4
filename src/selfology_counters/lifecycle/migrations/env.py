"""Alembic environment: used by ``selfology-counters migrate`` and by ``alembic upgrade head``."""

from __future__ import annotations

import sys
import time

from alembic import context

from selfology_counters import config as dsn_config
from selfology_counters.lifecycle import LOCK_POLL_S, run_sync, settle_dsn
from selfology_counters.lifecycle.revisions import (
    FROM_LIFECYCLE,
    VERSION_TABLE,
    engine_for,
    ensure_schema,
    head_revision,
)
from selfology_counters.sqlfiles import SCHEMA, query


def run_migrations_online(dsn: str, *, standalone: bool) -> None:
    engine = engine_for(dsn)
    try:
        with engine.connect() as connection:
            if standalone:  # `migrate` holds this lock already when it runs the revisions
                lock = query("catalog.sql", "lifecycle_lock")
                while not connection.exec_driver_sql(lock).scalar():
                    time.sleep(LOCK_POLL_S)
            ensure_schema(connection)
            connection.commit()
            context.configure(
                connection=connection,
                version_table=VERSION_TABLE,
                version_table_schema=SCHEMA,
                transaction_per_migration=True,
            )
            before = context.get_context().get_current_revision()
            with context.begin_transaction():
                context.run_migrations()
            if standalone and context.get_revision_argument() == head_revision():
                # Plain `alembic upgrade head` finishes like `selfology-counters migrate`:
                # reinstall what is not current, recount if anything changed.
                after = context.get_context().get_current_revision()
                run_sync(settle_dsn(dsn, recount=before != after))
    finally:
        engine.dispose()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("selfology-counters migrations run against a live database only")
    attributes = context.config.attributes
    if attributes.get(FROM_LIFECYCLE):  # `migrate` reports errors itself
        run_migrations_online(attributes.get("dsn") or dsn_config.resolve().dsn, standalone=False)
        return
    # Plain `alembic upgrade head`: one line like the CLI, not alembic's traceback.
    dsn = ""
    try:
        dsn = attributes.get("dsn") or dsn_config.resolve().dsn
        run_migrations_online(dsn, standalone=True)
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [repr(exc)]
        where = f" on {dsn_config.redact(dsn)}" if dsn else ""
        print(f"selfology-counters: error{where}: {reason[0]}", file=sys.stderr)
        raise SystemExit(2) from None  # 2: could not run, as the CLI says it


main()
