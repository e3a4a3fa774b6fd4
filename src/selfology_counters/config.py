"""Where the database is: ``--dsn``, else ``SELFOLOGY_DSN``, else ``DATABASE_URL``, else the
embedded PostgreSQL server kept in a per-user data directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

ENV_VARS = ("SELFOLOGY_DSN", "DATABASE_URL")


@dataclass(frozen=True)
class DatabaseTarget:
    """A resolved DSN and where it came from (for messages; never printed with a password)."""

    dsn: str
    source: str

    @property
    def redacted(self) -> str:
        return redact(self.dsn)


def explicit_dsn(cli_dsn: str | None = None) -> DatabaseTarget | None:
    """The DSN given on the command line or in the environment, if any."""
    if cli_dsn:
        return DatabaseTarget(cli_dsn, "--dsn")
    for var in ENV_VARS:
        value = os.environ.get(var)
        if value:
            return DatabaseTarget(value, var)
    return None


def resolve(cli_dsn: str | None = None) -> DatabaseTarget:
    """The database to use, starting the embedded server when nothing else is configured."""
    target = explicit_dsn(cli_dsn)
    if target is not None:
        return target
    from selfology_counters import embedded

    return DatabaseTarget(embedded.dsn(), "embedded")


def redact(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL form and ``password=`` form)."""
    if "://" not in dsn:
        return " ".join(
            "password=***" if part.lower().startswith("password=") else part for part in dsn.split()
        )
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:
        return "<a DSN that does not parse>"
    if password:
        userinfo = f"{parts.username or ''}:***@"
        parts = parts._replace(netloc=userinfo + parts.netloc.rsplit("@", 1)[1])
    # libpq also takes the password as a query parameter: ?password=...
    query = "&".join(
        "password=***" if item.lower().startswith("password=") else item
        for item in parts.query.split("&")
    )
    return urlunsplit(parts._replace(query=query))


def with_database(dsn: str, database: str) -> str:
    """``dsn`` (URL form) pointing at another database on the same server."""
    if "://" not in dsn:
        raise ValueError("a DSN in URL form (postgresql://...) is needed here")
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))
