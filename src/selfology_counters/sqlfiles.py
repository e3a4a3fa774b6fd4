"""Every SQL text of the package, loaded from the ``sql/`` folder.

SQL lives in ``.sql`` files. A file is either a script (run whole, e.g. by a migration) or a
file of named queries, each introduced by a ``-- name: query_name --`` line. The only thing
ever substituted into SQL text is a schema name, through :func:`quote_ident`; values always
travel as bind parameters.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib.resources import files

SCHEMA = "selfology"
"""The schema the bot's tables live in."""

_SCHEMA_TOKEN = "@schema@"
_DIGEST_TOKEN = "@digest@"
_NAME_LINE = re.compile(r"^-- name: (\w+) --\s*$", re.MULTILINE)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_ident(name: str) -> str:
    """Quote a schema name for use in SQL; only plain lower-case identifiers are accepted."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid schema name: {name!r}")
    return f'"{name}"'


@cache
def load(filename: str) -> str:
    """The raw text of ``sql/<filename>``."""
    return (files("selfology_counters") / "sql" / filename).read_text(encoding="utf-8")


def digest(filename: str) -> str:
    """The stamp that objects installed from ``filename`` carry as their comment."""
    return "selfology-counters:" + hashlib.sha256(load(filename).encode()).hexdigest()[:16]


def render(filename: str, schema: str = SCHEMA) -> str:
    """A script with its placeholders replaced: the quoted ``schema`` and the file's digest."""
    text = load(filename).replace(_SCHEMA_TOKEN, quote_ident(schema))
    return text.replace(_DIGEST_TOKEN, digest(filename))


@cache
def _named(filename: str, schema: str) -> dict[str, str]:
    text = render(filename, schema)
    parts = _NAME_LINE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def query(filename: str, name: str, schema: str = SCHEMA) -> str:
    """The named query ``name`` from ``sql/<filename>``."""
    try:
        return _named(filename, schema)[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in {filename}") from None
