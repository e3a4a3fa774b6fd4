"""The Alembic side of the lifecycle: our revisions, where they are recorded, running them.

Our revisions record themselves in ``selfology.selfology_counters_version``, never in the
``alembic_version`` table that the bot's own Alembic history uses. ``lifecycle.apply`` runs
them (and ``alembic upgrade head`` from the repository goes through ``lifecycle.apply`` too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from selfology_counters.config import redact
from selfology_counters.errors import DatabaseUnavailableError
from selfology_counters.sqlfiles import SCHEMA, query, quote_ident, render

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection, Engine

# Alembic and SQLAlchemy are imported where a revision is read or run, not with this module:
# the DAO and the operator's checks import the lifecycle's names but never run Alembic, and
# loading it costs a CLI call about half a second.

VERSION_TABLE = "selfology_counters_version"
SCRIPT_LOCATION = "selfology_counters.lifecycle:migrations"
FROM_LIFECYCLE = "selfology_counters.lifecycle"  # set in the config by lifecycle.apply
INDEX_BLOCKS = (
    "index_user_xid",
    "index_session_xid",
    "index_xid",
    "drop_user_index",
    "drop_session_index",
)
"""Revision 0004's index changes (sql/deferred_v1.sql), in order."""


def head_schema_sql(schema: str) -> list[str]:
    """What the revisions build, as scripts for a new schema in one transaction (the
    benchmarks' scratch schemas): the tables at head. The objects come from objects.py."""
    return [
        render("schema_v1.sql", schema),
        query("deferred_v1.sql", "columns", schema),
        *(query("deferred_v1.sql", name, schema, concurrently=False) for name in INDEX_BLOCKS),
    ]


def sqlalchemy_url(dsn: str) -> str:
    """A libpq DSN as a SQLAlchemy URL using the psycopg (3) driver."""
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix) :]
    return dsn


def engine_for(dsn: str) -> Engine:
    from sqlalchemy import create_engine, pool

    return create_engine(sqlalchemy_url(dsn), poolclass=pool.NullPool)


def alembic_config(dsn: str | None = None) -> Config:
    """Alembic configuration pointing at the migrations shipped in this package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.attributes[FROM_LIFECYCLE] = True
    if dsn is not None:
        cfg.attributes["dsn"] = dsn
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "version_table_schema": SCHEMA}
    )
    return context.get_current_revision()


def ensure_schema(connection: Connection) -> None:
    """Our version table lives in the ``selfology`` schema, so it must exist before Alembic."""
    from sqlalchemy import text

    connection.execute(text("CREATE SCHEMA IF NOT EXISTS " + quote_ident(SCHEMA)))


def run_upgrade(dsn: str, revision: str = "head") -> None:
    """Apply our pending revisions up to ``revision`` (tables and the objects they install)."""
    from alembic import command

    command.upgrade(alembic_config(dsn), revision)


def current(dsn: str) -> str | None:
    """The revision the database at ``dsn`` is at (None: none of ours)."""
    engine = engine_for(dsn)
    try:
        return _revision_or_unavailable(engine, dsn)
    finally:
        engine.dispose()


def _revision_or_unavailable(engine: Engine, dsn: str) -> str | None:
    from sqlalchemy import exc

    try:
        with engine.connect() as connection:
            return current_revision(connection)
    except (exc.OperationalError, exc.ArgumentError, ValueError, OverflowError) as error:
        reason = (str(getattr(error, "orig", None) or error).strip().splitlines() or [""])[0]
        raise DatabaseUnavailableError(f"cannot connect to {redact(dsn)}: {reason}") from None


def stamp(dsn: str, revision: str) -> None:
    """Record in our version table that the database is at ``revision`` (after adoption)."""
    from alembic import command

    command.stamp(alembic_config(dsn), revision)


def pending_revisions(at: str | None) -> list[str]:
    """Revisions an upgrade from ``at`` to head applies, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    revisions = script.iterate_revisions("head", at)
    return [revision.revision for revision in reversed(list(revisions))]
