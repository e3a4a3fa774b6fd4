"""Alembic environment: used by ``selfology-counters migrate`` and by ``alembic upgrade head``."""

from __future__ import annotations

from alembic import context

from selfology_counters import config as dsn_config
from selfology_counters.migrate import VERSION_TABLE, engine_for, ensure_schema
from selfology_counters.sqlfiles import SCHEMA


def run_migrations_online() -> None:
    dsn = context.config.attributes.get("dsn") or dsn_config.resolve().dsn
    engine = engine_for(dsn)
    try:
        with engine.connect() as connection:
            ensure_schema(connection)
            connection.commit()
            context.configure(
                connection=connection,
                version_table=VERSION_TABLE,
                version_table_schema=SCHEMA,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("selfology-counters migrations run against a live database only")
run_migrations_online()
