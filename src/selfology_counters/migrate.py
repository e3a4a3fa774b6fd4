"""Schema migrations (Alembic), runnable from the library, the CLI or ``alembic upgrade head``.

Our revisions record themselves in ``selfology.selfology_counters_version``, never in the
``alembic_version`` table that the bot's own Alembic history uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, exc, pool, text
from sqlalchemy.engine import Connection, Engine

from selfology_counters.config import redact
from selfology_counters.errors import DatabaseUnavailableError
from selfology_counters.sqlfiles import SCHEMA, quote_ident

VERSION_TABLE = "selfology_counters_version"
SCRIPT_LOCATION = "selfology_counters:migrations"


@dataclass(frozen=True)
class MigrationResult:
    """What ``upgrade`` did: the revision before and after, and whether anything ran."""

    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def sqlalchemy_url(dsn: str) -> str:
    """A libpq DSN as a SQLAlchemy URL using the psycopg (3) driver."""
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix) :]
    return dsn


def engine_for(dsn: str) -> Engine:
    return create_engine(sqlalchemy_url(dsn), poolclass=pool.NullPool)


def alembic_config(dsn: str | None = None) -> Config:
    """Alembic configuration pointing at the migrations shipped in this package."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if dsn is not None:
        cfg.attributes["dsn"] = dsn
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "version_table_schema": SCHEMA}
    )
    return context.get_current_revision()


def ensure_schema(connection: Connection) -> None:
    """Our version table lives in the ``selfology`` schema, so it must exist before Alembic."""
    connection.execute(text("CREATE SCHEMA IF NOT EXISTS " + quote_ident(SCHEMA)))


def upgrade(dsn: str, revision: str = "head") -> MigrationResult:
    """Upgrade the database at ``dsn`` to ``revision``; a no-op when it is already there."""
    engine = engine_for(dsn)
    try:
        before = _revision_or_unavailable(engine, dsn)
        command.upgrade(alembic_config(dsn), revision)
        with engine.connect() as connection:
            after = current_revision(connection)
    finally:
        engine.dispose()
    return MigrationResult(before, after)


def _revision_or_unavailable(engine: Engine, dsn: str) -> str | None:
    try:
        with engine.connect() as connection:
            return current_revision(connection)
    except (exc.OperationalError, exc.ArgumentError, ValueError, OverflowError) as error:
        reason = (str(getattr(error, "orig", None) or error).strip().splitlines() or [""])[0]
        raise DatabaseUnavailableError(f"cannot connect to {redact(dsn)}: {reason}") from None


def stamp_head(dsn: str) -> None:
    """Record in our version table that the database is at head (after adoption)."""
    command.stamp(alembic_config(dsn), "head")


def pending_revisions(dsn: str) -> list[str]:
    """Revisions ``upgrade`` would apply, oldest first."""
    engine = engine_for(dsn)
    try:
        current = _revision_or_unavailable(engine, dsn)
    finally:
        engine.dispose()
    script = ScriptDirectory.from_config(alembic_config())
    revisions = script.iterate_revisions("head", current)
    return [revision.revision for revision in reversed(list(revisions))]
