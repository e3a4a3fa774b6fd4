"""Every SQL text of the package: Mako templates in the ``sql/`` folder, rendered from the model.

A file is either a script (run whole) or a file of named queries, each introduced by a
``-- name: query_name --`` line. Templates see ``schema`` (the quoted schema name) and
``model`` (:mod:`selfology_counters.model`); every other fact about a counter comes from the
model, never from a value spliced in at run time. Values always travel as bind parameters.

The variant (one PostgreSQL, or Citus: ``distributed``) is chosen here, once, never tested
inside a template. A template imports the variant's defs as a namespace,
``<%namespace name="v" file="${context['variant']}"/>``: ``sql/variant_plain.sql`` or
``sql/variant_citus.sql``, two files with the same def names, each piece named for what it
means there. A named block whose Citus body differs whole has a block of its own,
``<name>_distributed``, which :func:`query` returns in its place for that variant.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import Any

from mako.lookup import TemplateLookup
from mako.template import Template

from selfology_counters import model
from selfology_counters.errors import InvalidInputError

SCHEMA = "selfology"
"""The schema the bot's tables live in."""

VARIANTS = {False: "variant_plain.sql", True: "variant_citus.sql"}
"""The defs a template's ``v`` namespace holds: one PostgreSQL's, or (``distributed``) Citus's."""

_NAME_LINE = re.compile(r"^-- name: (\w+) --\s*$", re.MULTILINE)


def quote_ident(name: str) -> str:
    """Quote a schema name for use in SQL; only plain lower-case identifiers are accepted
    (anything else is :class:`InvalidInputError`, a ValueError)."""
    if not isinstance(name, str) or not model.IDENTIFIER.fullmatch(name):
        raise InvalidInputError(f"not a valid schema name: {name!r}")
    return f'"{name}"'


@cache
def load(filename: str) -> str:
    """The raw text of ``sql/<filename>``."""
    return (files("selfology_counters") / "sql" / filename).read_text(encoding="utf-8")


@cache
def _lookup() -> TemplateLookup:
    # Templates include each other (``<%namespace file="truth.sql"/>``) by file name.
    return TemplateLookup(
        directories=[str(files("selfology_counters") / "sql")], strict_undefined=True
    )


def _template(filename: str) -> Template:
    return _lookup().get_template(filename)


@cache
def render(
    filename: str, schema: str = SCHEMA, *, distributed: bool = False, **context: Any
) -> str:
    """The template ``sql/<filename>`` rendered for ``schema`` from the model, in the variant
    for tables distributed by Citus (``distributed``) or for one PostgreSQL."""
    text = _template(filename).render(
        schema=quote_ident(schema),
        model=model,
        variant=VARIANTS[distributed],
        **context,
    )
    return str(text)


@cache
def _named(filename: str, schema: str, **context: Any) -> dict[str, str]:
    parts = _NAME_LINE.split(render(filename, schema, **context))
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def names(filename: str) -> list[str]:
    """The names of the queries in ``sql/<filename>``, in file order."""
    return list(_named(filename, SCHEMA))


def query(filename: str, name: str, schema: str = SCHEMA, **context: Any) -> str:
    """The named query ``name`` from ``sql/<filename>`` (``context``: the template's own
    switches, if it has any); for tables distributed by Citus (``distributed``), its block
    ``<name>_distributed`` instead where the file has one."""
    blocks = _named(filename, schema, **context)
    variant = f"{name}_distributed"
    chosen = variant if context.get("distributed") and variant in blocks else name
    try:
        return blocks[chosen]
    except KeyError:
        raise KeyError(f"no query named {name!r} in {filename}") from None
