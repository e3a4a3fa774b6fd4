"""Least privilege: the owner, the application role and the read-only role.

The **owner** owns the schema and every object of ours; ``migrate``, ``repair``, ``mode`` and
``worker`` run as it, and the counter functions run with its rights (``SECURITY DEFINER``,
``sql/objects.sql``). The **application role** (the bot) inserts, moves and deletes answers,
creates and completes sessions, and reads everything of ours, but writes no counter column,
no ``user_stats`` row and not the answers' ``xid``. The **read-only role** (monitoring,
``check``, ``watch`` without auto-repair) reads. What each may do is derived from the model
in ``sql/roles.sql``; :func:`check` lists every difference from it, :func:`apply` removes
them (creating the roles when missing) in one transaction and is idempotent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from selfology_counters.errors import InvalidInputError, RolesError, SchemaMissingError
from selfology_counters.lifecycle.ddl import retrying, set_local_lock_timeout
from selfology_counters.lifecycle.revisions import VERSION_TABLE
from selfology_counters.sqlfiles import SCHEMA, query

DEFAULT_OWNER, DEFAULT_APP, DEFAULT_READONLY = (
    "selfology_owner",
    "selfology_app",
    "selfology_readonly",
)
PASSWORD_VARIABLES = (
    "SELFOLOGY_OWNER_PASSWORD",
    "SELFOLOGY_APP_PASSWORD",
    "SELFOLOGY_READONLY_PASSWORD",
)
"""Where the CLI reads each role's new password (owner, app, read-only): never an option,
which would show in ``ps`` and the shell's history."""
_SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)
_PARAMETER_PRIVILEGES = 150000  # GRANT SET ON PARAMETER exists from PostgreSQL 15
_ROLE_KINDS = ("role", "membership", "parameter")


@dataclass(frozen=True)
class RoleNames:
    """The three roles' names (any name PostgreSQL takes; quoted where used)."""

    owner: str = DEFAULT_OWNER
    app: str = DEFAULT_APP
    readonly: str = DEFAULT_READONLY

    def __post_init__(self) -> None:
        for name in self.all:
            if not name or len(name.encode()) > 63 or "\0" in name:
                raise InvalidInputError(f"not a usable role name: {name!r} (1 to 63 bytes)")
            if name.lower() == "public" or name.startswith("pg_"):
                raise InvalidInputError(f"role name {name!r} is reserved by PostgreSQL")
        if len(set(self.all)) != len(self.all):
            raise InvalidInputError("the owner, application and read-only roles must differ")

    @property
    def all(self) -> tuple[str, str, str]:
        return (self.owner, self.app, self.readonly)

    def as_dict(self) -> dict[str, str]:
        return {"owner": self.owner, "app": self.app, "readonly": self.readonly}


@dataclass(frozen=True)
class Difference:
    """One way the catalog differs from what the roles should be, and the statement that
    removes it."""

    kind: str  # role | attribute | membership | parameter | owner | missing | extra
    what: str
    statement: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "what": self.what, "statement": self.statement}


@dataclass
class RolesResult:
    """What :func:`check` found, or :func:`apply` found and fixed. Never holds a password."""

    names: RoleNames
    differences: list[Difference]  # before applying
    applied: bool = False
    passwords_set: list[str] = field(default_factory=list)  # role names, never passwords

    @property
    def ok(self) -> bool:
        """As they should be: nothing differed, or everything that did was fixed."""
        return self.applied or not self.differences

    def as_dict(self) -> dict[str, Any]:
        return {
            "roles": self.names.as_dict(),
            "ok": self.ok,
            "applied": self.applied,
            "differences": [d.as_dict() for d in self.differences],
            "passwords_set": self.passwords_set,
        }


async def check(
    connection: asyncpg.Connection, names: RoleNames, schema: str = SCHEMA
) -> RolesResult:
    """Every difference between the catalog and what the three roles should be; changes
    nothing."""
    await _require_schema(connection, schema)
    async with connection.transaction(readonly=True):
        return RolesResult(names, await _differences(connection, names, schema))


async def apply(
    connection: asyncpg.Connection,
    names: RoleNames,
    passwords: Mapping[str, str] | None = None,
    schema: str = SCHEMA,
) -> RolesResult:
    """Create the roles when missing and make the catalog what they should be, in one
    transaction (short lock waits, retried: handing a table over locks it). An existing role
    that is a superuser (or may create roles, ...) is refused, not altered. ``passwords``
    maps a role name to its new password, sent as a SCRAM verifier only. Needs a superuser
    (or the objects' current owner with CREATEROLE and membership in the new owner)."""
    await _require_schema(connection, schema)
    secrets = dict(passwords or {})
    unknown = set(secrets) - set(names.all)
    if unknown:
        raise InvalidInputError("a password was given for a role that is not one of the three")
    if not all(password.isascii() and password.isprintable() for password in secrets.values()):
        # A client normalises a non-ASCII password (SASLprep) before proving it; a verifier
        # computed from the raw text would not match. psql's \password handles those.
        raise InvalidInputError("a password must be printable ASCII (set others with \\password)")
    current = await connection.fetchval(_sql("current_role_name"))
    if current in names.all:
        raise InvalidInputError(
            f"run 'roles' as an administrator, not as {current!r}, one of the roles it manages"
        )

    async def once() -> RolesResult:
        async with connection.transaction():
            await set_local_lock_timeout(connection)
            differences = await _differences(connection, names, schema)
            if differences:  # nothing to change: no lock, the bot is not held back at all
                await _run(connection, "lock_counted_tables_sql", schema)
                differences = await _differences(connection, names, schema)
            fixed = await _fix(connection, names, schema, differences)
            for role, password in sorted(secrets.items()):
                await _run(connection, "password_sql", role, scram_verifier(password))
            left = await _differences(connection, names, schema)
            if left:
                raise RolesError(f"still differs after applying: {left[0].what}")
        return RolesResult(names, fixed, applied=True, passwords_set=sorted(secrets))

    return await retrying(once)


def scram_verifier(password: str, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 7677, as libpq's
    PQencryptPasswordConn computes it), so that the password itself is never sent."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def _require_schema(connection: asyncpg.Connection, schema: str) -> None:
    if not await connection.fetchval(query("catalog.sql", "answers_table"), schema):
        raise SchemaMissingError(f"schema {schema!r} has no counters yet: run migrate first")


async def _differences(
    connection: asyncpg.Connection, names: RoleNames, schema: str
) -> list[Difference]:
    found = await _role_differences(connection, names)
    if any(d.kind == "role" for d in found):
        return found  # privileges of a role that does not exist cannot be read
    for row in await connection.fetch(_sql("wrong_owners"), schema, names.owner):
        found.append(
            Difference("owner", f"{row['what']} is owned by {row['owner']}", row["statement"])
        )
    wanted = await connection.fetch(_sql("wanted_privileges"), schema, names.app, names.readonly)
    held = await connection.fetch(_sql("held_privileges"), schema, names.app, names.readonly)
    have = {_privilege_key(row) for row in held}
    should = {_privilege_key(row) for row in wanted}
    found += [
        Difference("missing", f"{row['grantee']} lacks {_describe(row)}", row["statement"])
        for row in wanted
        if _privilege_key(row) not in have
    ]
    found += [
        Difference("extra", f"{row['grantee']} holds {_describe(row)}", row["statement"])
        for row in held
        if _privilege_key(row) not in should
    ]
    return found


async def _role_differences(connection: asyncpg.Connection, names: RoleNames) -> list[Difference]:
    found = []
    for role in names.all:
        row = await connection.fetchrow(_sql("role_attributes"), role, names.owner)
        if row is None:
            statement = await _statement(connection, "create_role_sql", role)
            found.append(Difference("role", f"role {role} does not exist", statement))
            continue
        powers = [
            a
            for a in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
            if row[a]
        ]
        if powers:
            found.append(
                Difference(
                    "attribute",
                    f"role {role} has {', '.join(p.removeprefix('rol') for p in powers)}",
                    await _statement(connection, "restrict_role_sql", role),
                )
            )
        if role != names.owner and row["member_of_owner"]:
            statement = await _statement(connection, "leave_owner_sql", names.owner, role)
            if not row["direct_member_of_owner"]:
                statement = f"-- {role} is a member of {names.owner} through another role"
            found.append(Difference("membership", f"role {role} acts as {names.owner}", statement))
    found += await _parameter_differences(connection, names)
    return found


async def _parameter_differences(
    connection: asyncpg.Connection, names: RoleNames
) -> list[Difference]:
    """The application role may not SET session_replication_role (it would switch the counter
    triggers off for its own writes); before PostgreSQL 15 only a superuser can."""
    server = connection.get_server_version()
    if server.major * 10000 < _PARAMETER_PRIVILEGES:
        return []
    found = []
    for role in (names.app, names.readonly):
        exists = await connection.fetchval(_sql("role_exists"), role)
        if exists and await connection.fetchval(_sql("can_set_replication_role"), role):
            found.append(
                Difference(
                    "parameter",
                    f"role {role} may SET session_replication_role",
                    await _statement(connection, "revoke_set_replication_role_sql", role),
                )
            )
    return found


async def _fix(
    connection: asyncpg.Connection, names: RoleNames, schema: str, found: list[Difference]
) -> list[Difference]:
    """Run the statements that remove ``found``, in order: the roles and their grants,
    then owners, then every REVOKE and only then the GRANTs (a table-level REVOKE also takes
    the column-level privileges, so what is missing is read again). Returns all it fixed."""
    powers = [d for d in found if d.kind == "attribute"]
    if powers:  # an existing role with powers: not ours to take away (it may be postgres)
        raise RolesError(
            f"{powers[0].what}: choose another name, or run {powers[0].statement!r} yourself"
        )
    fixed: list[Difference] = []
    for kinds in (_ROLE_KINDS, ("owner",), ("extra",), ("missing",)):
        if fixed:
            found = await _differences(connection, names, schema)
        for difference in found:
            if difference.kind in kinds:
                if difference.statement.startswith("--"):
                    raise InvalidInputError(f"{difference.what}: remove that membership by hand")
                await connection.execute(difference.statement)
                fixed.append(difference)
    return fixed


def _privilege_key(row: asyncpg.Record) -> tuple[str, str, str, str, str]:
    return (row["grantee"], row["privilege"], row["kind"], row["object"], row["col"])


def _describe(row: asyncpg.Record) -> str:
    on = f"{row['object']}.{row['col']}" if row["col"] else row["object"]
    return f"{row['privilege']} on {row['kind'].lower()} {on}"


def _sql(name: str) -> str:
    return query("roles.sql", name, version_table=VERSION_TABLE)


async def _statement(connection: asyncpg.Connection, name: str, *args: str) -> str:
    return str(await connection.fetchval(_sql(name), *args))


async def _run(connection: asyncpg.Connection, name: str, *args: str) -> None:
    await connection.execute(await _statement(connection, name, *args))
