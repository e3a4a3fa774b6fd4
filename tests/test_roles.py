"""Least privilege (issue 12): the owner, the application role and the read-only role.

Each test gets a database of its own and three roles of its own (roles are global to the
server, which other test runs share), logs in as them with a password that `roles` set, and
drops them after the database. The oracle (tests/truth.py) runs as the administrator.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from selfology_counters import deferred, health, lifecycle, model, objects, roles
from selfology_counters.dao import OnboardingDAO
from selfology_counters.errors import RolesError
from tests.conftest import _admin, _database
from tests.test_cli import assert_one_line_error, cli
from tests.truth import assert_exact, assert_exact_reads, counters

BOT_INSERT = (
    "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
    " VALUES ($1, 'q', $2)"
)
DENIED = asyncpg.InsufficientPrivilegeError


@dataclass(frozen=True)
class Setup:
    """A migrated database whose roles `roles` made, and a DSN to log in as each."""

    admin: str
    names: roles.RoleNames
    password: str
    owner: str
    app: str
    readonly: str


def as_role(dsn: str, role: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(role)}:{quote(password)}@{host}"))


def fresh_names() -> roles.RoleNames:
    stem = f"sc_r{uuid.uuid4().hex[:10]}"
    return roles.RoleNames(f"{stem}_owner", f"{stem}_app", f"{stem}_ro")


@pytest.fixture
def fresh_roles(server_dsn: str) -> Iterator[roles.RoleNames]:
    """Three role names nobody uses; the roles are dropped after the test's database."""
    names = fresh_names()
    try:
        yield names
    finally:
        for role in names.all:
            _admin(server_dsn, f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def setup(server_dsn: str, template_db: str, fresh_roles: roles.RoleNames) -> Iterator[Setup]:
    password = secrets.token_urlsafe(16)
    with _database(server_dsn, "sc_roles", template_db) as admin:
        asyncio.run(_apply(admin, fresh_roles, dict.fromkeys(fresh_roles.all, password)))
        yield Setup(
            admin,
            fresh_roles,
            password,
            *(as_role(admin, role, password) for role in fresh_roles.all),
        )


async def _apply(dsn: str, names: roles.RoleNames, passwords: dict[str, str]) -> roles.RolesResult:
    connection = await asyncpg.connect(dsn)
    try:
        return await roles.apply(connection, names, passwords)
    finally:
        await connection.close()


@pytest.fixture
async def admin(setup: Setup) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(setup.admin)
    yield connection
    await connection.close()


@pytest.fixture
async def app(setup: Setup) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(setup.app)
    yield connection
    await connection.close()


@pytest.fixture
async def readonly(setup: Setup) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(setup.readonly)
    yield connection
    await connection.close()


def test_roles_are_created_checked_and_applying_again_changes_nothing(
    server_dsn: str, template_db: str, fresh_roles: roles.RoleNames
) -> None:
    async def body(dsn: str) -> None:
        connection = await asyncpg.connect(dsn)
        try:
            before = await roles.check(connection, fresh_roles)
            assert not before.ok
            assert {d.kind for d in before.differences} == {"role"}
            applied = await roles.apply(connection, fresh_roles)
            assert applied.ok and applied.differences  # it did something
            assert (await roles.check(connection, fresh_roles)).differences == []
            again = await roles.apply(connection, fresh_roles)
            assert again.ok and again.differences == []
        finally:
            await connection.close()

    with _database(server_dsn, "sc_roles", template_db) as dsn:
        asyncio.run(body(dsn))


async def test_the_bot_the_dao_and_deletes_are_counted_as_the_application_role(
    setup: Setup, admin: asyncpg.Connection, app: asyncpg.Connection
) -> None:
    s1, s2 = [
        await app.fetchval(
            "INSERT INTO selfology.onboarding_sessions (user_id) VALUES ($1) RETURNING id", user
        )
        for user in (7, 8)
    ]
    await app.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (7)")
    await app.execute(BOT_INSERT, s1, "the bot's own INSERT, user_id filled in")
    await app.execute(  # one statement, two sessions of two users
        "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
        " SELECT s, 'q', 'a' FROM unnest($1::bigint[]) s",
        [s1, s2, s2],
    )
    await app.execute(  # a move to another user's session
        "UPDATE selfology.user_answers_new SET session_id = $2 WHERE id ="
        " (SELECT min(id) FROM selfology.user_answers_new WHERE session_id = $1)",
        s1,
        s2,
    )
    await assert_exact(admin)
    async with await OnboardingDAO.connect(setup.app) as dao:
        session = await dao.start_session(7)
        first = await dao.save_answer(session, "q1", "hello")
        await dao.save_answers(session, [("q2", "a"), ("q3", "b")])
        await dao.delete_answer(first)
        assert await dao.get_user_total_answers(7) == 3
        assert await dao.get_personality_count(7) == 3
        await dao.complete_session(session)
    await app.execute("DELETE FROM selfology.user_answers_new WHERE session_id = $1", s2)
    await app.execute("DELETE FROM selfology.onboarding_sessions WHERE id = $1", s1)  # cascade
    await assert_exact(admin)
    assert await counters(admin, session, 7) == (2, 2, 2)


COUNTER_WRITES = [
    f"UPDATE selfology.{model.USER_STATS.table} SET {model.USER_STATS.column} = 0",
    f"UPDATE selfology.{model.USER_STATS.table} SET {model.USER_STATS.touched} = now()",
    f"DELETE FROM selfology.{model.USER_STATS.table}",
    f"TRUNCATE selfology.{model.USER_STATS.table}",
    f"INSERT INTO selfology.{model.USER_STATS.table} ({model.USER_STATS.key}) VALUES (99)",
    f"INSERT INTO selfology.{model.SESSIONS.table} (user_id, {model.SESSIONS.column})"
    " VALUES (9, 5)",
    f"UPDATE selfology.{model.ANSWERS} SET {model.XID} = 0",
    f"INSERT INTO selfology.{model.ANSWERS} (session_id, question_json_id, raw_answer, {model.XID})"
    " VALUES (1, 'q', 'a', 0)",
    f"TRUNCATE selfology.{model.ANSWERS}",
    "SET session_replication_role = replica",
    f"SELECT selfology.{model.FUNCTION['apply'].name}('{{1}}', '{{5}}', '{{7}}', '{{5}}')",
    f"SELECT * FROM selfology.{model.FUNCTION['fold'].name}()",
    f"SELECT selfology.{model.FUNCTION['set_mode'].name}('deferred')",
    f"ALTER TABLE selfology.{model.ANSWERS} DISABLE TRIGGER {model.TRIGGER['insert'].name}",
    "CREATE TABLE selfology.mine (x int)",
]


async def one_counted_answer(app: asyncpg.Connection) -> int:
    """A session of user 7 with one answer, and the user's personality row; its session."""
    session: int = await app.fetchval(
        "INSERT INTO selfology.onboarding_sessions (user_id) VALUES (7) RETURNING id"
    )
    await app.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (7)")
    await app.execute(BOT_INSERT, session, "a")
    return session


@pytest.mark.parametrize("statement", COUNTER_WRITES)
async def test_the_application_role_cannot_write_a_counter(
    statement: str, admin: asyncpg.Connection, app: asyncpg.Connection
) -> None:
    session = await one_counted_answer(app)
    before = await counters(admin, session, 7)
    with pytest.raises(DENIED):
        await app.execute(statement)
    assert await counters(admin, session, 7) == before == (1, 1, 1)
    await assert_exact(admin)


# The bot's own code writes these two counters ("+ 1", read-modify-write): allowed, so that its
# statements run, and undone, so that the counter stays the truth; the mark our repairs set
# does not help the application role.
UNDONE_WRITES = [
    f"UPDATE selfology.{model.SESSIONS.table} SET {model.SESSIONS.column} = 5",
    f"UPDATE selfology.{model.PERSONALITY.table} SET {model.PERSONALITY.column} = 5",
    f"UPDATE selfology.{model.SESSIONS.table}"
    f" SET {model.SESSIONS.column} = {model.SESSIONS.column} + 1",
    "SET selfology_counters.counting = on;"
    f" UPDATE selfology.{model.PERSONALITY.table} SET {model.PERSONALITY.column} = 9",
]


@pytest.mark.parametrize("statement", UNDONE_WRITES)
async def test_the_application_roles_counter_writes_run_and_change_nothing(
    statement: str, admin: asyncpg.Connection, app: asyncpg.Connection
) -> None:
    session = await one_counted_answer(app)
    await app.execute(statement)
    assert await counters(admin, session, 7) == (1, 1, 1)
    await assert_exact(admin)
    found = await health.check(app)  # the application role may run check
    assert found.audit is not None
    assert sum(o.writes for o in found.audit.overridden) == 1
    assert any("remove that statement" in note for note in found.notes)


async def test_objects_shadowing_ours_on_the_application_roles_search_path_change_nothing(
    setup: Setup, admin: asyncpg.Connection, app: asyncpg.Connection
) -> None:
    """Functions and tables the application role creates in a schema it puts first (even
    before pg_catalog) are never what our definer functions call or write: each of these would
    run with the owner's rights and corrupt the counters."""
    await admin.execute(f'CREATE SCHEMA shadow AUTHORIZATION "{setup.names.app}"')
    for table in (model.ANSWERS, *(c.table for c in model.COUNTERS), model.MODE_TABLE):
        await app.execute(f"CREATE TABLE shadow.{table} (LIKE selfology.{table})")
    await app.execute(f"""
        CREATE FUNCTION shadow.char_length(text) RETURNS integer LANGUAGE sql AS $$
            UPDATE selfology.{model.USER_STATS.table} SET {model.USER_STATS.column} = 1000;
            SELECT 999 $$;
        CREATE FUNCTION shadow.now() RETURNS timestamptz LANGUAGE sql
            AS $$ SELECT '2000-01-01'::timestamptz $$;
        CREATE FUNCTION shadow.cardinality(anyarray) RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
        CREATE FUNCTION shadow.keep(bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT $1 $$;
        CREATE AGGREGATE shadow.count(*) (SFUNC = shadow.keep, STYPE = bigint, INITCOND = '0');
        CREATE FUNCTION shadow.unnest(anyarray) RETURNS SETOF integer LANGUAGE sql
            AS $$ SELECT 0 $$;
        CREATE FUNCTION shadow.pg_current_snapshot() RETURNS pg_snapshot LANGUAGE sql
            AS $$ SELECT '1:1:'::pg_snapshot $$;
    """)
    # Usable by everyone, the owner included: a definer function without a fixed search_path
    # would find these (a schema the current user may not use is skipped), as it would in a
    # public schema that PUBLIC may create in (the default before PostgreSQL 15).
    await app.execute("GRANT USAGE ON SCHEMA shadow TO PUBLIC")
    await app.execute("SET search_path = shadow, pg_catalog, selfology")
    s1, s2 = [
        await app.fetchval(
            "INSERT INTO selfology.onboarding_sessions (user_id) VALUES ($1) RETURNING id", user
        )
        for user in (7, 8)
    ]
    text = "eleven char"
    await app.execute(BOT_INSERT, s1, text)  # the fill trigger computes answer_length
    await app.execute(  # several keys: the path through apply (its own unnest qualified)
        "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
        " SELECT s, 'q', 'a' FROM pg_catalog.unnest($1::bigint[]) s",
        [s1, s2, s2],
    )
    await app.execute("DELETE FROM selfology.user_answers_new WHERE session_id = $1", s2)
    assert await admin.fetchval(
        "SELECT answer_length FROM selfology.user_answers_new WHERE raw_answer = $1", text
    ) == len(text)
    await assert_exact(admin)
    assert await admin.fetchval(
        f"SELECT min({model.USER_STATS.touched}) > now() - interval '1 hour'"
        f" FROM selfology.{model.USER_STATS.table}"
    )
    for table in (model.ANSWERS, *(c.table for c in model.COUNTERS)):
        assert await admin.fetchval(f"SELECT count(*) FROM shadow.{table}") == 0


async def test_the_read_only_role_reads_counters_and_exact_readers_and_writes_nothing(
    admin: asyncpg.Connection, app: asyncpg.Connection, readonly: asyncpg.Connection
) -> None:
    session = await app.fetchval(
        "INSERT INTO selfology.onboarding_sessions (user_id) VALUES (7) RETURNING id"
    )
    await app.execute(BOT_INSERT, session, "a")
    await assert_exact_reads(readonly)
    for counter in model.COUNTERS:
        assert await readonly.fetchval(f"SELECT selfology.{counter.reader}(7)") in (1, None)
    assert (await health.check(readonly)).consistent
    for statement in (
        BOT_INSERT.replace("$1", str(session)).replace("$2", "'b'"),
        "INSERT INTO selfology.onboarding_sessions (user_id) VALUES (9)",
        f"UPDATE selfology.onboarding_sessions SET status = 'completed' WHERE id = {session}",
        "DELETE FROM selfology.user_answers_new",
        "INSERT INTO selfology.digital_personality (user_id) VALUES (7)",
        *COUNTER_WRITES,
    ):
        with pytest.raises(DENIED):
            await readonly.execute(statement)
    assert await counters(admin, session, 7) == (1, 1, None)


async def test_deferred_mode_counts_the_application_roles_writes_folded_by_the_owner(
    setup: Setup, admin: asyncpg.Connection, app: asyncpg.Connection
) -> None:
    owner = await asyncpg.connect(setup.owner)
    try:
        await deferred.set_mode(owner, model.DEFERRED)
        async with await OnboardingDAO.connect(setup.app) as dao:
            session = await dao.start_session(7)
            ids = await dao.save_answers(session, [("q1", "a"), ("q2", "b"), ("q3", "c")])
            await dao.delete_answer(ids[0])
            assert await dao.get_user_total_answers(7) == 2  # pending, read exactly
        await assert_exact_reads(app)
        with pytest.raises(DENIED):
            await app.fetch(f"SELECT * FROM selfology.{model.FUNCTION['fold'].name}()")
        worker = cli("worker", "--once", dsn=setup.owner)
        assert worker.returncode == 0, worker.stderr
        # How much a fold takes depends on the oldest transaction of the whole server (other
        # test runs share it): what must hold at any moment is that every read is exact.
        await assert_exact_reads(app)
        await app.execute(BOT_INSERT, session, "d")
        await deferred.set_mode(owner, model.IMMEDIATE)  # folds everything pending
        await assert_exact(admin)
    finally:
        await owner.close()


async def test_migrate_as_the_owner_upgrades_outdated_functions_and_keeps_them_private(
    setup: Setup, admin: asyncpg.Connection
) -> None:
    on_insert, fold = model.FUNCTION["on_insert"], model.FUNCTION["fold"]
    # As an earlier release installed it: the caller's rights and search_path.
    await admin.execute(f"ALTER FUNCTION selfology.{on_insert.name}() SECURITY INVOKER RESET ALL")
    await admin.execute(f"DROP FUNCTION selfology.{fold.name}()")  # and one missing
    outdated = {s.name for s in (await objects.audit(admin)).not_current}
    assert outdated == {on_insert.name, fold.name}
    outcome = await lifecycle.apply(setup.owner)
    assert {on_insert.name, fold.name} <= set(outcome.reinstalled)
    assert (await objects.audit(admin)).not_current == []
    # Every function runs as its owner but the keep triggers', which must see the writer's role.
    assert await admin.fetchval(
        "SELECT bool_and(prosecdef = (proname NOT LIKE 'selfology\\_counters\\_keep\\_%'))"
        " FROM pg_proc WHERE pronamespace = 'selfology'::regnamespace"
    )
    assert (await roles.check(admin, setup.names)).differences == []  # owner's, not PUBLIC's
    assert (await health.check(admin)).consistent


async def test_check_reports_every_privilege_too_many_and_apply_takes_it_back(
    setup: Setup, admin: asyncpg.Connection
) -> None:
    app_role, owner = f'"{setup.names.app}"', f'"{setup.names.owner}"'
    stats = f"selfology.{model.USER_STATS.table}"
    await admin.execute(f"""
        GRANT UPDATE ({model.USER_STATS.column}) ON {stats} TO {app_role};
        GRANT DELETE, TRUNCATE ON {stats} TO {app_role};
        GRANT INSERT ON selfology.{model.ANSWERS} TO {app_role};
        GRANT SELECT ON {stats} TO PUBLIC;
        GRANT {owner} TO {app_role};
        ALTER ROLE {app_role} CREATEROLE;
        REVOKE SELECT ON selfology.{model.SESSIONS.table} FROM {app_role};
        ALTER TABLE selfology.{model.PERSONALITY.table} OWNER TO CURRENT_USER;
    """)
    found = await roles.check(admin, setup.names)
    described = "\n".join(d.what for d in found.differences)
    assert {d.kind for d in found.differences} == {
        "extra",
        "missing",
        "membership",
        "attribute",
        "owner",
    }
    for part in (
        f"UPDATE on table {stats}.{model.USER_STATS.column}",
        "TRUNCATE on table",
        f"PUBLIC holds SELECT on table {stats}",
        "acts as",
        "createrole",
        f"lacks SELECT on table selfology.{model.SESSIONS.table}",
        f"INSERT on table selfology.{model.ANSWERS}",
    ):
        assert part in described
    checked = cli("roles", "--check", "--json", *_names_args(setup.names), dsn=setup.admin)
    assert checked.returncode == 1, checked.stderr
    assert len(json.loads(checked.stdout)["differences"]) == len(found.differences)
    with pytest.raises(RolesError, match="createrole"):  # not ours to take away
        await roles.apply(admin, setup.names)
    assert (await roles.check(admin, setup.names)).differences == found.differences
    await admin.execute(f"ALTER ROLE {app_role} NOCREATEROLE")
    assert (await roles.apply(admin, setup.names)).ok
    assert (await roles.check(admin, setup.names)).differences == []
    fixed = cli("roles", "--check", *_names_args(setup.names), dsn=setup.admin)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def _names_args(names: roles.RoleNames) -> list[str]:
    return ["--owner", names.owner, "--app", names.app, "--readonly", names.readonly]


def test_the_command_sets_passwords_without_ever_printing_them(
    server_dsn: str, template_db: str, fresh_roles: roles.RoleNames
) -> None:
    import os
    import subprocess

    from tests.test_cli import CLI

    password = "pw-" + secrets.token_hex(8)
    with _database(server_dsn, "sc_roles", template_db) as dsn:
        env = {
            **os.environ,
            "SELFOLOGY_DSN": dsn,
            "SELFOLOGY_APP_PASSWORD": password,
            "SELFOLOGY_READONLY_PASSWORD": password,
        }
        for args in (["roles"], ["roles", "--json"], ["roles", "--check"]):
            done = subprocess.run(
                [CLI, *args, *_names_args(fresh_roles)],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert password not in done.stdout + done.stderr
        stored = asyncio.run(_stored_password(dsn, fresh_roles.app))
        assert stored.startswith("SCRAM-SHA-256$") and password not in stored
        login = asyncio.run(_can_log_in(as_role(dsn, fresh_roles.readonly, password)))
        assert login == fresh_roles.readonly


async def _stored_password(dsn: str, role: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        return str(
            await connection.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
        )
    finally:
        await connection.close()


async def _can_log_in(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        return str(await connection.fetchval("SELECT current_user"))
    finally:
        await connection.close()


def test_bad_role_names_are_one_line_errors(db: str) -> None:
    for args in (["--app", ""], ["--app", "selfology_owner"], ["--readonly", "pg_monitor"]):
        assert_one_line_error(cli("roles", *args, dsn=db))
        assert_one_line_error(cli("roles", "--check", "--json", *args, dsn=db))


def test_the_commands_default_role_names_are_the_librarys() -> None:
    shown = cli("roles", "--help").stdout
    for name in roles.RoleNames().all:
        assert f"default: {name}" in shown


def test_an_adopted_original_database_works_as_the_application_role(
    server_dsn: str, fresh_roles: roles.RoleNames
) -> None:
    """The original schema: serial ids (the application role needs their sequences) and
    columns of the bot's that the model does not know (writable like any other)."""
    from tests.test_adopt import ORIGINAL

    async def body(dsn: str) -> None:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(ORIGINAL)
            await lifecycle.apply(dsn)
            await roles.apply(admin, fresh_roles, {fresh_roles.app: "app-pw"})
            app_dsn = as_role(dsn, fresh_roles.app, "app-pw")
            async with await OnboardingDAO.connect(app_dsn) as dao:
                session = await dao.start_session(7)
                await dao.save_answers(session, [("q1", "a"), ("q2", "b")])
            app = await asyncpg.connect(app_dsn)
            try:
                await app.execute(
                    "INSERT INTO selfology.digital_personality (user_id, traits) VALUES (7, '{}')"
                )
                await app.execute(BOT_INSERT, session, "c")
                await app.execute("UPDATE selfology.user_answers_new SET analysis_status = 'done'")
                with pytest.raises(DENIED):
                    await app.execute(
                        f"UPDATE selfology.{model.USER_STATS.table}"
                        f" SET {model.USER_STATS.column} = 0"
                    )
            finally:
                await app.close()
            await assert_exact(admin)
            assert await counters(admin, session, 7) == (3, 3, 3)
            assert (await roles.check(admin, fresh_roles)).differences == []
        finally:
            await admin.close()

    with _database(server_dsn, "sc_roles") as dsn:
        asyncio.run(body(dsn))


def test_the_scram_verifier_is_the_one_libpq_computes(server_dsn: str) -> None:
    """The servers under test trust every login, so a wrong verifier would pass unnoticed
    there: compare it with libpq's own (PQencryptPasswordConn), salt for salt."""
    import base64

    import psycopg

    with psycopg.connect(server_dsn) as connection:
        for password in ("pa55-word", secrets.token_urlsafe(24), "with space and 'quote'"):
            expected = connection.pgconn.encrypt_password(
                password.encode(), b"someone", b"scram-sha-256"
            ).decode()
            salt = base64.b64decode(expected.split("$")[1].split(":")[1])
            assert roles.scram_verifier(password, salt) == expected


def test_a_password_it_cannot_hash_as_a_client_would_is_refused_before_anything(
    db: str, fresh_roles: roles.RoleNames
) -> None:
    import os
    import subprocess

    from tests.test_cli import CLI

    env = {**os.environ, "SELFOLOGY_DSN": db, "SELFOLOGY_APP_PASSWORD": "pässwörd"}
    done = subprocess.run(
        [CLI, "roles", *_names_args(fresh_roles)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = assert_one_line_error(done)
    assert "ASCII" in line and "pässwörd" not in done.stdout + done.stderr
    assert asyncio.run(_role_count(db, fresh_roles)) == 0


async def _role_count(dsn: str, names: roles.RoleNames) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        query = "SELECT count(*) FROM pg_roles WHERE rolname = ANY ($1::text[])"
        return int(await connection.fetchval(query, list(names.all)))
    finally:
        await connection.close()


def test_roles_waits_for_the_bots_transactions_and_its_writes_go_on(
    server_dsn: str, template_db: str, fresh_roles: roles.RoleNames
) -> None:
    """Handing a table to the owner takes its lock: `roles` waits for a transaction of the
    bot's (short lock_timeout, retried) instead of failing, and writers keep writing."""
    from tests.events import Tally, wait_until_blocked_by

    async def body(dsn: str) -> None:
        bot = await asyncpg.connect(dsn)
        observer = await asyncpg.connect(dsn)
        admin = await asyncpg.connect(dsn)
        writes, stop = Tally(), asyncio.Event()
        async with await OnboardingDAO.connect(dsn) as dao:
            session, other = await dao.start_session(7), await dao.start_session(8)

            async def write() -> None:
                while not stop.is_set():
                    await dao.save_answer(session, "q", "a")
                    await writes.add()

            writer = asyncio.create_task(write())
            transaction = bot.transaction()
            try:
                await transaction.start()  # holds the answers' table lock until it commits
                await bot.execute(BOT_INSERT, other, "in an open transaction")
                applying = asyncio.create_task(roles.apply(admin, fresh_roles))
                await wait_until_blocked_by(observer, bot)
                await writes.reach(writes.count + 20)  # the writer is not held back meanwhile
                assert not applying.done()
                await transaction.commit()
                assert (await applying).ok
                await writes.reach(writes.count + 20)
            finally:
                if bot.is_in_transaction():
                    await transaction.rollback()
                stop.set()
                await writer
        await assert_exact(admin)
        assert (await roles.check(admin, fresh_roles)).differences == []
        for connection in (bot, observer, admin):
            await connection.close()

    with _database(server_dsn, "sc_roles", template_db) as dsn:
        asyncio.run(body(dsn))
