"""Where the database is: ``--dsn``, else ``SELFOLOGY_DSN``, else ``DATABASE_URL``, else the
embedded PostgreSQL server kept in a per-user data directory."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from selfology_counters.errors import InvalidDsnError

ENV_VARS = ("SELFOLOGY_DSN", "DATABASE_URL")

DSN_FORMS = (
    "a URL (postgresql://user@host:5432/dbname) or libpq key=value pairs "
    "(host=... port=... dbname=...)"
)
# How to write a password a URL cannot carry as it is.
PASSWORD_FORMS = (
    "percent-encode them (/ as %2F, ? as %3F, # as %23, @ as %40, % as %25), or give the DSN "
    "as key=value pairs (password='...'), or leave the password out and put it in ~/.pgpass"
)


@dataclass(frozen=True)
class DatabaseTarget:
    """A resolved DSN and where it came from (for messages; never printed with a password)."""

    dsn: str
    source: str

    @property
    def redacted(self) -> str:
        return redact(self.dsn)


def explicit_dsn(cli_dsn: str | None = None) -> DatabaseTarget | None:
    """The DSN given on the command line or in the environment, if any, as a URL.

    An empty one is an error, not "nothing configured": a cron line whose variable expanded to
    nothing must not check the embedded server instead and stay green.
    """
    if cli_dsn is not None:
        return DatabaseTarget(_given("--dsn", cli_dsn), "--dsn")
    for var in ENV_VARS:
        value = os.environ.get(var)
        if value is not None:
            return DatabaseTarget(_given(f"${var}", value), var)
    return None


def _given(where: str, value: str) -> str:
    if not value.strip():
        state = "is empty" if where.startswith("-") else "is set but empty"
        raise InvalidDsnError(
            f"{where} {state}: give {DSN_FORMS}, or leave it out to use the embedded server"
        )
    return as_url(value)


def as_url(dsn: str) -> str:
    """``dsn`` in URL form: a URL is returned as is, libpq key=value pairs are converted.

    asyncpg reads only URLs, and one form downstream keeps ``with_database`` and the
    SQLAlchemy URL simple. Raises :class:`InvalidDsnError` (which never shows the text, as it
    may hold a password) when the pairs do not parse.
    """
    if "://" in dsn:
        if _credentials_spill(dsn):
            raise InvalidDsnError(
                "the DSN's user name or password holds a / ? # or @ written as is, which ends "
                f"it early in a URL (the rest would be read as host, port or database): "
                f"{PASSWORD_FORMS}"
            )
        return dsn
    if "=" not in dsn:
        return dsn
    from psycopg import conninfo

    try:
        pairs = conninfo.conninfo_to_dict(dsn)
    except Exception:
        raise InvalidDsnError(f"the DSN does not parse: give {DSN_FORMS}") from None
    return _url_from_pairs({k: str(v) for k, v in pairs.items()})


_HOSTSPEC = re.compile(r"(\[[^\]]*\]|[^:\[\],]*)(:\d*)?(,(\[[^\]]*\]|[^:\[\],]*)(:\d*)?)*")


def _credentials_spill(url: str) -> bool:
    """Whether ``url``'s user name or password holds a "/", "?", "#" or "@" as typed.

    A URL parser ends the netloc at the first "/", "?" or "#", and asyncpg the user name and
    password at the first "@": the rest of the password becomes the port ("invalid literal
    for int()"), the database or the query, and errors quote it. Told by an "@" after the
    netloc that comes before any "=" (in the query, "@" belongs to a value), by a netloc whose
    port is not a number while an "@" follows, or by two "@" in the netloc."""
    rest = url.split("://", 1)[1]
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    netloc, after = rest[:end], rest[end:]
    if netloc.count("@") > 1:
        return True
    if "@" not in after:
        return False
    if "=" not in after.split("@", 1)[0]:
        return True
    return "@" not in netloc and not _HOSTSPEC.fullmatch(netloc)


def _url_from_pairs(pairs: dict[str, str]) -> str:
    user = pairs.pop("user", "")
    password = pairs.pop("password", None)
    userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    host = pairs.pop("host", "") if _plain_host(pairs.get("host", "")) else ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = pairs.pop("port", "") if host and pairs.get("port", "").isdigit() else ""
    netloc = (f"{userinfo}@" if userinfo else "") + host + (f":{port}" if port else "")
    path = "/" + quote(pairs.pop("dbname", ""), safe="")
    # The rest (a socket directory as host, several hosts, sslmode, ...) as query parameters,
    # which asyncpg and psycopg both read.
    query = urlencode(pairs)
    return f"postgresql://{netloc}{path}" + (f"?{query}" if query else "")


def _plain_host(host: str) -> bool:
    return bool(host) and "/" not in host and "," not in host


def resolve(cli_dsn: str | None = None) -> DatabaseTarget:
    """The database to use, starting the embedded server when nothing else is configured.

    Raises :class:`InvalidDsnError` for an empty or unparsable DSN."""
    target = explicit_dsn(cli_dsn)
    if target is not None:
        return target
    from selfology_counters import embedded

    return DatabaseTarget(embedded.dsn(), "embedded")


def redact(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL form and ``password=`` form), also
    when it does not parse the way a URL should (a user name holding ``#`` or ``/``)."""
    return scrub(_redact_parsed(dsn), [dsn])


def _redact_parsed(dsn: str) -> str:
    if "://" not in dsn:
        try:
            url = as_url(dsn)
        except InvalidDsnError:
            url = dsn
        if "://" in url:  # parsed as libpq pairs, quoted values included
            return _redact_parsed(url)
        return " ".join(
            "password=***" if part.lower().startswith("password=") else part for part in dsn.split()
        )
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:
        return "<a DSN that does not parse>"
    if not password and "password=" not in parts.query.lower():
        return dsn  # nothing to hide (and urlunsplit would drop the // of an empty host)
    if password:
        userinfo = f"{parts.username or ''}:***@"
        parts = parts._replace(netloc=userinfo + parts.netloc.rsplit("@", 1)[1])
    # libpq also takes the password as a query parameter: ?password=...
    query = "&".join(
        "password=***" if item.lower().startswith("password=") else item
        for item in parts.query.split("&")
    )
    return urlunsplit(parts._replace(query=query))


_PASSWORD_PAIR = re.compile(r"password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^\s&]+))", re.IGNORECASE)


def passwords(dsn: str) -> list[str]:
    """Every form in which ``dsn``'s password may appear in a message: as written, and
    percent-decoded (from the URL's user part, a ``password=`` query parameter, or a libpq
    ``password=`` pair). Empty when it holds none."""
    try:
        url = as_url(dsn)
    except InvalidDsnError:
        url = dsn
    found: set[str] = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            found |= {parts.password, unquote(parts.password)}
        found |= {value for key, value in parse_qsl(parts.query) if key.lower() == "password"}
    except ValueError:
        pass
    # As typed, whatever parsed: "...:secret@" and "password=secret" (quoted or not).
    for quoted, bare in _PASSWORD_PAIR.findall(dsn):
        found.add(quoted.replace("\\'", "'").replace("\\\\", "\\") if quoted else bare)
    # "user:secret@host" as typed, even where a URL parser sees no password (a "#" or "/" in
    # the user name ends the netloc early): up to the first "@" and up to the last.
    rest = dsn.split("://", 1)[1] if "://" in dsn else ""
    for userinfo in {rest.split("@", 1)[0], rest.rsplit("@", 1)[0]} if "@" in rest else ():
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
    return sorted((p for p in found if p), key=len, reverse=True)


SHORTEST_SCRUBBED_ANYWHERE = 4  # a shorter password is scrubbed only where a DSN puts it


def scrub(text: str, dsns: Iterable[str]) -> str:
    """``text`` with every password of ``dsns`` replaced by ``***``: wherever it stands after
    ``user:`` or ``password=``, and anywhere at all unless it is so short that ordinary words
    hold it ("p" would maul "postgresql")."""
    for dsn in dsns:
        for secret in passwords(dsn):
            if len(secret) >= SHORTEST_SCRUBBED_ANYWHERE:
                text = text.replace(secret, "***")
                continue
            for before, after in ((":", "@"), ("=", ""), ("='", "'")):
                text = text.replace(f"{before}{secret}{after}", f"{before}***{after}")
    return text


def with_database(dsn: str, database: str) -> str:
    """``dsn`` (URL form) pointing at another database on the same server."""
    if "://" not in dsn:
        raise ValueError("a DSN in URL form (postgresql://...) is needed here")
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))
