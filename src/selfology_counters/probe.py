"""Whether an installed object's definition is the one this release renders, asked of the
server itself, for the audit (objects.py) when a stamp cannot say.

A stamp holds the md5 of the definition PostgreSQL reported right after installing. A plain
``pg_dump``/``pg_restore`` rewrites a view's text (PostgreSQL adds an alias such as ``AS
text`` to a UNION branch), ``--no-comments`` drops every stamp, and a major-version upgrade
may print a definition differently: the object behaves the same, and the stamp no longer
matches. Then the model's objects are built in the session's temporary schema over empty
copies of our tables (``sql/probe.sql``), read back with their schema written as ours, and
compared with what is installed; a view through one more reading by PostgreSQL on both
sides. Everything is rolled back. A definition that differs is still named.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from selfology_counters import model
from selfology_counters.model import DbObject
from selfology_counters.sqlfiles import query

_FILE = "probe.sql"
# How PostgreSQL writes its own temporary schema in a definition; the rendered bodies hold
# the alias as the template wrote it.
_TEMP = "pg_temp"


class ProbeError(Exception):
    """This release's definitions could not be built here (no TEMP privilege, a read-only
    transaction, an older schema): the stamp's verdict stands."""


Key = tuple[str, str | None, str]  # kind, table, name: as the audit's catalog rows


def key(obj: DbObject) -> Key:
    return (obj.kind, obj.table, obj.name)


async def matching(
    connection: asyncpg.Connection,
    installed: dict[DbObject, str],
    schema: str,
    *,
    distributed: bool = False,
) -> set[DbObject]:
    """The objects of ``installed`` (each with its definition as read by the audit, under
    ``search_path = pg_catalog``) whose definition is this release's. Runs inside the
    audit's transaction, in a savepoint it always rolls back; :class:`ProbeError` when the
    server would not build them."""
    savepoint = connection.transaction()
    await savepoint.start()
    try:
        rendered = await _rendered(connection, schema, distributed)
        return {
            obj
            for obj, definition in installed.items()
            if key(obj) in rendered
            and await _normal(connection, obj, definition)
            == await _normal(connection, obj, rendered[key(obj)])
        }
    except asyncpg.PostgresError as exc:
        raise ProbeError(f"{type(exc).__name__}: {str(exc).strip()}") from None
    finally:
        await savepoint.rollback()


async def _rendered(
    connection: asyncpg.Connection, schema: str, distributed: bool
) -> dict[Key, str]:
    # objects imports this module
    from selfology_counters.objects import installed_rows, source_sql

    await connection.execute(query(_FILE, "copy_tables", schema))
    for obj in model.OBJECTS:
        await connection.execute(source_sql(obj, _TEMP, distributed=distributed))
    await connection.execute(query(_FILE, "view_roundtrip_function"))
    temp = await connection.fetchval(query(_FILE, "temp_schema"))
    await connection.fetchval(query(_FILE, "shadowing_search_path"), schema)
    rows = await installed_rows(connection, temp, [])
    await connection.execute(query("audit.sql", "catalog_search_path"))
    return {
        (r["kind"], r["table_name"], r["name"]): _as_ours(r["definition_text"], temp, schema)
        for r in rows
    }


def _as_ours(definition: str, temp: str, schema: str) -> str:
    """``definition`` of an object built in the temporary schema, with that schema written as
    ours: quoted where the template wrote it, bare where PostgreSQL did."""
    for written in _spellings(temp):
        definition = definition.replace(f'"{written}".', f'"{schema}".')
        definition = definition.replace(f"{written}.", f"{schema}.")
    return definition


def _spellings(temp: str) -> Iterable[str]:
    return (temp, _TEMP) if temp != _TEMP else (_TEMP,)


async def _normal(connection: asyncpg.Connection, obj: DbObject, definition: str) -> str:
    if obj.kind != "view":
        return definition
    return str(await connection.fetchval(query(_FILE, "view_roundtrip"), definition))
