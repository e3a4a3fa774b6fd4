"""Every public entry point of OnboardingDAO fed arbitrary input (Hypothesis): it either does
what valid input asks, or raises one of the package's typed errors and writes nothing; the
counters equal COUNT(*) after every call. Whether the input was valid is decided here,
independently of the package's own checks (validation.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfology_counters import OnboardingDAO, SelfologyCountersError
from tests.truth import assert_exact

MAX_ANSWER = 50  # the DAO's limit in this test, so that oversized text is cheap to make
BIGINT = 2**63 - 1
SNAPSHOT = """
SELECT (SELECT count(*) FROM selfology.user_answers_new) AS answers,
       (SELECT count(*) FROM selfology.onboarding_sessions) AS sessions,
       (SELECT count(*) FILTER (WHERE status = 'active') FROM selfology.onboarding_sessions)
           AS active,
       (SELECT count(*) FROM selfology.user_stats) AS stats_rows,
       (SELECT coalesce(sum(total_answers_lifetime), 0) FROM selfology.user_stats) AS lifetime,
       (SELECT coalesce(sum(questions_answered), 0) FROM selfology.onboarding_sessions) AS qa
"""
# Ids that name real rows, filled in per example: without them the fuzz would only ever
# reach "unknown session".
KNOWN = ("ACTIVE_SESSION", "COMPLETED_SESSION", "ANSWER", "USER")

# Text from every corner: NUL, lone surrogates (a Python str may hold them, UTF-8 cannot),
# whitespace only, right-to-left marks, astral characters, and lengths around the limit.
TEXT = st.one_of(
    st.text(max_size=MAX_ANSWER + 5),
    st.text(st.characters(codec=None, categories=None), max_size=20),
    st.text(st.sampled_from("\x00\ud800\udfff \t\n\u200f\U0001f600aZ'\"\\;%_"), max_size=20),
    st.integers(MAX_ANSWER - 1, MAX_ANSWER + 1).map(lambda n: "x" * n),
    st.just("q" * 256),
)
VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(1, BIGINT),
    st.sampled_from([0, -1, BIGINT, BIGINT + 1, 2**64, -(2**63)]),
    st.floats(),
    st.decimals(allow_nan=True),
    st.binary(max_size=8),
    TEXT,
    st.sampled_from(KNOWN),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
ID = st.one_of(VALUE, st.sampled_from(KNOWN), st.sampled_from(KNOWN))
PAIRS = st.one_of(
    st.lists(st.tuples(TEXT, TEXT), max_size=4),
    st.lists(st.one_of(st.tuples(VALUE, VALUE), st.tuples(TEXT), VALUE), max_size=3),
    VALUE,
)
CALLS = st.one_of(
    st.tuples(st.just("start_session"), ID),
    st.tuples(st.just("save_answer"), ID, st.one_of(TEXT, VALUE), st.one_of(TEXT, VALUE)),
    st.tuples(st.just("save_answers"), ID, PAIRS),
    st.tuples(st.just("delete_answer"), ID),
    st.tuples(st.just("complete_session"), ID),
    st.tuples(st.just("get_user_total_answers"), ID),
    st.tuples(st.just("get_personality_count"), ID),
    st.tuples(st.just("get_session_answers"), ID),
)
WRITES = {"start_session", "save_answer", "save_answers", "delete_answer", "complete_session"}


def valid_id(value: object) -> bool:
    return type(value) is int and 0 < value <= BIGINT


def valid_text(value: object, limit: int) -> bool:
    if type(value) is not str or not value.strip() or len(value) > limit or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_pairs(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(p, tuple)
        and len(p) == 2
        and valid_text(p[0], 255)
        and valid_text(p[1], MAX_ANSWER)
        for p in value
    )


def valid(call: tuple) -> bool:
    """Whether the package may accept ``call`` (known ids already substituted)."""
    name, *args = call
    if not valid_id(args[0]):
        return False
    if name == "save_answer":
        return valid_text(args[1], 255) and valid_text(args[2], MAX_ANSWER)
    if name == "save_answers":
        return valid_pairs(args[1])
    return True


class World:
    """One database, one pool and one event loop for every example of a test."""

    def __init__(self, db: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool: asyncpg.Pool = self.run(self._open(db))
        self.dao = OnboardingDAO(self.pool, max_answer_length=MAX_ANSWER)

    @staticmethod
    async def _open(db: str) -> asyncpg.Pool:
        return await asyncpg.create_pool(db, min_size=1, max_size=2)

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self.pool.close())
        self.loop.close()

    async def known(self) -> dict[str, int]:
        active = await self.dao.start_session(77)
        await self.dao.save_answer(active, "q", "a")
        completed = await self.dao.start_session(78)
        await self.dao.complete_session(completed)
        answer = await self.pool.fetchval("SELECT max(id) FROM selfology.user_answers_new")
        return {
            "ACTIVE_SESSION": active,
            "COMPLETED_SESSION": completed,
            "ANSWER": answer,
            "USER": 77,
        }


@pytest.fixture
def world(db: str) -> Iterator[World]:
    world = World(db)
    yield world
    world.close()


def substitute(value: object, known: dict[str, int]) -> object:
    return known[value] if isinstance(value, str) and value in known else value


async def call_and_check(world: World, call: tuple) -> None:
    known = await world.known()
    name, *raw = call
    args = [substitute(a, known) for a in raw]
    before = await world.pool.fetchrow(SNAPSHOT)
    try:
        await getattr(world.dao, name)(*args)
    except SelfologyCountersError:
        assert await world.pool.fetchrow(SNAPSHOT) == before, call  # nothing written
    else:
        assert valid((name, *args)), f"accepted bad input: {call!r}"
        if name not in WRITES:
            assert await world.pool.fetchrow(SNAPSHOT) == before, call
    async with world.pool.acquire() as connection:
        await assert_exact(connection)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(call=CALLS)
def test_every_dao_call_does_what_valid_input_asks_or_raises_typed_and_writes_nothing(
    world: World, call: tuple
) -> None:
    world.run(call_and_check(world, call))


PASSWORD = "Fz9-pw-QUOKKA"  # distinctive: it must never show in an error's text
SETTING = st.one_of(VALUE, st.integers(-2, 12))
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "pool_size": SETTING,
        "max_answer_length": SETTING,
        "max_retries": SETTING,
        "schema": st.one_of(st.just("selfology"), st.just("Selfology"), TEXT, VALUE),
        "metrics": st.one_of(st.booleans(), VALUE),
    },
)


def dsns(db: str) -> st.SearchStrategy[object]:
    """The test's database with a password added (the servers under test trust local
    connections, so it is ignored), broken variants of it, and anything else."""
    parts = urlsplit(db)
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.netloc.rsplit('@', 1)[-1]}"
    good = urlunsplit(parts._replace(netloc=netloc))
    closed = f"postgresql://someone:{PASSWORD}@127.0.0.1:1/nowhere"
    broken = [
        closed,
        closed.replace(":1/", ":99999/"),
        closed.replace(":1/", ":port/"),
        closed.replace("postgresql", "mysql"),
        closed.replace("127.0.0.1", "[::1"),
        f"host=127.0.0.1 port=1 user=someone password={PASSWORD} dbname=x",
        f"host=127.0.0.1 port=1 password='{PASSWORD} x' dbname=x",
        f"host=127.0.0.1 port=1 password={PASSWORD} dbname",
        good.replace(PASSWORD, PASSWORD + "%zz"),
        good + "&sslmode=bogus",
        "",
        good.rsplit("/", 1)[0] + "/no_such_database",
    ]
    return st.one_of(
        st.just(good),
        st.sampled_from(broken),
        st.text(max_size=20).map(lambda t: closed.replace("someone", t)),
        VALUE,
    )


@pytest.fixture
def dsn_strategy(db: str) -> st.SearchStrategy[object]:
    return dsns(db)


def well_formed(dsn: object, options: dict[str, Any]) -> bool:
    """What connect may accept: a DSN string, settings of the right type and range."""

    def count(name: str, low: int, high: int) -> bool:
        value = options.get(name, low)
        return type(value) is int and low <= value <= high

    schema = options.get("schema", "selfology")
    return (
        isinstance(dsn, str)
        and bool(dsn.strip())
        and count("pool_size", 1, 10_000)
        and count("max_answer_length", 1, 2**31 - 1)
        and count("max_retries", 0, 100)
        and isinstance(options.get("metrics", False), bool)
        and isinstance(schema, str)
        and re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema) is not None
    )


def valid_options(options: dict[str, Any]) -> bool:
    def count(name: str, low: int) -> bool:
        value = options.get(name, low)
        return type(value) is int and value >= low

    metrics = options.get("metrics", False)
    return (
        count("pool_size", 1)
        and count("max_answer_length", 1)
        and count("max_retries", 0)
        and options.get("schema", "selfology") == "selfology"  # no other schema has our tables
        and (isinstance(metrics, bool))
    )


async def connect_and_check(db: str, dsn: object, options: dict[str, Any]) -> None:
    try:
        dao = await OnboardingDAO.connect(dsn, **options)  # type: ignore[arg-type]
    except SelfologyCountersError as exc:
        assert PASSWORD not in str(exc), exc
        return
    assert well_formed(dsn, options), f"accepted {dsn!r} {options!r}"
    try:
        session = await dao.start_session(5)
        assert await dao.save_answer(session, "q", "a") > 0
        assert await dao.get_user_total_answers(5) >= 1
    except SelfologyCountersError as exc:
        # Options that are well formed but do not fit this database (another schema).
        assert PASSWORD not in str(exc), exc
        assert not valid_options(options), (options, exc)
    finally:
        await dao.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), options=OPTIONS)
def test_connect_with_any_dsn_and_options_raises_typed_errors_without_the_password(
    db: str,
    dsn_strategy: st.SearchStrategy[object],
    data: st.DataObject,
    options: dict[str, Any],
) -> None:
    dsn = data.draw(dsn_strategy)
    asyncio.run(connect_and_check(db, dsn, options))
