"""OnboardingDAO: records and reads answers over an asyncpg pool.

It never writes a counter: the database's triggers keep them, in the same transaction as the
answer. It validates every argument before sending anything, and retries a write that
PostgreSQL aborted with a deadlock or serialization failure (bounded).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from selfology_counters import validation
from selfology_counters.connect import RETRYABLE, create_pool, retried
from selfology_counters.context import Counters, bind
from selfology_counters.errors import (
    DatabaseRefusedError,
    DatabaseUnavailableError,
    InvalidAnswerError,
    InvalidInputError,
    RetriesExhaustedError,
    SchemaMissingError,
    SessionNotActiveError,
    UnknownAnswerError,
    UnknownSessionError,
)
from selfology_counters.sqlfiles import SCHEMA, query, quote_ident

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

T = TypeVar("T")
Write = Callable[[Callable[[asyncpg.Connection], Awaitable[Any]]], Awaitable[Any]]
Statement = Callable[[asyncpg.Connection], Awaitable[T]]


@dataclass(frozen=True)
class Answer:
    id: int
    question_json_id: str
    raw_answer: str
    answer_length: int
    answered_at: datetime


class OnboardingDAO:
    """Data access for onboarding sessions and answers.

    Build it from a pool you own (``OnboardingDAO(pool)``; it will never close it) or from a
    DSN (``await OnboardingDAO.connect(dsn)``; :meth:`close` closes the pool it opened).
    Answers to a completed or abandoned session are refused with
    :class:`SessionNotActiveError`.

    ``metrics`` records how long each answer insert takes (retries included) in the histogram
    ``answer_insert_duration_seconds`` of a ``prometheus_client`` registry: pass the registry,
    or True for the default one, which the bot serves with its other metrics. Off (the
    default), the DAO takes no timings and does not import ``prometheus_client``.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_answer_length: int = validation.DEFAULT_MAX_ANSWER_LENGTH,
        max_retries: int = 5,
        schema: str = SCHEMA,
        metrics: CollectorRegistry | bool = False,
    ) -> None:
        _check_options(pool, max_answer_length, max_retries, schema, metrics)
        self._pool = pool
        self._owns_pool = False
        self.max_answer_length = max_answer_length
        self.max_retries = max_retries
        self._schema = schema
        self._sql = {name: query("dao.sql", name, schema) for name in _QUERIES}
        # The variant (Citus: tables distributed by user_id) is bound on the first answer.
        # There an answer's INSERT names its session's user, which never changes on Citus, so
        # the user of each session is remembered (bounded) instead of looked up every time.
        self._counters: Counters | None = None
        self._owners: dict[int, int] = {}
        self._insert_one: Write = self._write
        self._insert_many: Write = self._write
        if metrics is not False:
            self._time_inserts(metrics)

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        pool_size: int = 10,
        max_answer_length: int = validation.DEFAULT_MAX_ANSWER_LENGTH,
        max_retries: int = 5,
        schema: str = SCHEMA,
        metrics: CollectorRegistry | bool = False,
    ) -> OnboardingDAO:
        """A DAO with a pool of its own (up to ``pool_size`` connections) on ``dsn``."""
        validation.check_count(pool_size, "pool_size", 1, MAX_POOL_SIZE)
        _check_options(None, max_answer_length, max_retries, schema, metrics)
        pool = await create_pool(dsn, max_size=pool_size)
        dao = cls(
            pool,
            max_answer_length=max_answer_length,
            max_retries=max_retries,
            schema=schema,
            metrics=metrics,
        )
        dao._owns_pool = True
        return dao

    async def close(self) -> None:
        """Close the pool if this DAO opened it; a pool passed in is left alone."""
        if self._owns_pool:
            await self._pool.close()

    async def __aenter__(self) -> OnboardingDAO:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start_session(self, user_id: int) -> int:
        """Open a new active onboarding session for ``user_id``; returns its id."""
        validation.check_id(user_id, "user_id")
        return int(await self._write(lambda c: c.fetchval(self._sql["start_session"], user_id)))

    async def save_answer(self, session_id: int, question_json_id: str, raw_answer: str) -> int:
        """Record one answer in an active session; returns the answer's id."""
        validation.check_id(session_id, "session_id")
        validation.check_question_id(question_json_id)
        validation.check_answer(raw_answer, self.max_answer_length)
        owner = await self._session_owner(session_id)
        sql = self._sql["insert_answer"]
        answer_id = await self._insert_one(
            self._if_active(
                session_id,
                owner,
                lambda c: c.fetchval(
                    sql, session_id, question_json_id, raw_answer, len(raw_answer), *owner
                ),
            )
        )
        if answer_id is None:
            await self._raise_session_refused(session_id)
        return int(answer_id)

    async def save_answers(self, session_id: int, answers: Sequence[tuple[str, str]]) -> list[int]:
        """Record many answers of one session in one statement; returns their ids in order."""
        validation.check_id(session_id, "session_id")
        question_ids, texts = _validated_pairs(answers, self.max_answer_length)
        if not texts:
            return []
        lengths = [len(text) for text in texts]
        owner = await self._session_owner(session_id)
        sql = self._sql["insert_answers"]
        rows = await self._insert_many(
            self._if_active(
                session_id,
                owner,
                lambda c: c.fetch(sql, session_id, question_ids, texts, lengths, *owner),
            )
        )
        if not rows:
            await self._raise_session_refused(session_id)
        # Ids come from one sequence, drawn in insertion order within the statement.
        return sorted(int(row["id"]) for row in rows)

    async def delete_answer(self, answer_id: int) -> None:
        """Delete one answer; its session's and user's counters go down with it."""
        validation.check_id(answer_id, "answer_id")
        deleted = await self._write(lambda c: c.fetchval(self._sql["delete_answer"], answer_id))
        if deleted is None:
            raise UnknownAnswerError(f"answer {answer_id} does not exist")

    async def complete_session(self, session_id: int) -> None:
        """Mark an active session completed; it accepts no more answers. A session that is
        already completed or abandoned is left as it is."""
        validation.check_id(session_id, "session_id")
        sql = self._sql["complete_session"]
        if await self._write(lambda c: c.fetchval(sql, session_id)) is None:
            status = await self._read("fetchval", self._sql["session_status"], session_id)
            if status is None:
                raise UnknownSessionError(f"onboarding session {session_id} does not exist")

    async def get_user_total_answers(self, user_id: int) -> int:
        """The user's answers, exact in either counter mode: ``user_stats.total_answers_lifetime``
        plus the answers not folded yet (deferred mode); 0 for a user who never answered."""
        validation.check_id(user_id, "user_id")
        value = await self._read("fetchval", self._sql["user_total_answers"], user_id)
        return int(value or 0)

    async def get_personality_count(self, user_id: int) -> int | None:
        """``digital_personality.total_answers_analyzed``, exact in either counter mode, or None
        without such a row."""
        validation.check_id(user_id, "user_id")
        value = await self._read("fetchval", self._sql["personality_count"], user_id)
        return None if value is None else int(value)

    async def get_session_answer_count(self, session_id: int) -> int:
        """The session's answers, exact in either counter mode:
        ``onboarding_sessions.questions_answered`` plus the answers not folded yet (deferred
        mode). :class:`UnknownSessionError` for no such session."""
        validation.check_id(session_id, "session_id")
        owner = await self._session_owner(session_id)
        sql = self._sql["session_answer_count"]
        value = await self._read("fetchval", sql, session_id, *owner)
        if value is None:
            raise UnknownSessionError(f"onboarding session {session_id} does not exist")
        return int(value)

    async def create_personality(self, user_id: int) -> bool:
        """Create the user's ``digital_personality`` row, unless there is one; True when it
        was created. Its counter is not written here: the database starts it at the user's
        true count by itself (read it with :meth:`get_personality_count`)."""
        validation.check_id(user_id, "user_id")
        sql = self._sql["create_personality"]
        return await self._write(lambda c: c.fetchval(sql, user_id)) is not None

    async def get_session_answers(self, session_id: int) -> list[Answer]:
        """The answers of one session, oldest first."""
        validation.check_id(session_id, "session_id")
        rows = await self._read("fetch", self._sql["session_answers"], session_id)
        status_sql = self._sql["session_status"]
        if not rows and await self._read("fetchval", status_sql, session_id) is None:
            raise UnknownSessionError(f"onboarding session {session_id} does not exist")
        return [Answer(**dict(row)) for row in rows]

    async def _read(self, method: str, sql: str, *args: Any) -> Any:
        """``pool.fetchval`` or ``pool.fetch``, with the database's errors typed."""
        with _typed_database_errors():
            return await getattr(self._pool, method)(sql, *args)

    async def _session_owner(self, session_id: int) -> tuple[int, ...]:
        """On Citus, ``(user_id,)`` of the session (the extra argument of the distributed
        inserts); elsewhere ``()``. :class:`UnknownSessionError` for no such session."""
        if self._counters is None:
            with _typed_database_errors():
                async with self._pool.acquire() as connection:
                    counters = await bind(connection, self._schema)
            self._sql = {name: counters.sql("dao.sql", name) for name in _QUERIES}
            self._counters = counters
        if not self._counters.distributed:
            return ()
        owner = self._owners.get(session_id)
        if owner is None:
            owner = await self._read("fetchval", self._sql["session_owner"], session_id)
            if owner is None:
                raise UnknownSessionError(f"onboarding session {session_id} does not exist")
            if len(self._owners) >= _OWNERS_KEPT:
                self._owners.clear()
            self._owners[session_id] = owner
        return (owner,)

    def _if_active(
        self, session_id: int, owner: tuple[int, ...], insert: Statement[T]
    ) -> Statement[T | None]:
        """``insert`` as is, where it checks the session itself; on Citus (``owner`` given)
        in a transaction that first locks the session on its shard and finds it active
        (None when it is not), since Citus cannot lock it in the INSERT."""
        if not owner:
            return insert
        lock = self._sql["lock_session"]

        async def locked(connection: asyncpg.Connection) -> T | None:
            async with connection.transaction():
                if await connection.fetchval(lock, session_id, *owner) != "active":
                    return None
                return await insert(connection)

        return locked

    async def _raise_session_refused(self, session_id: int) -> None:
        status = await self._read("fetchval", self._sql["session_status"], session_id)
        if status is None:
            raise UnknownSessionError(f"onboarding session {session_id} does not exist")
        raise SessionNotActiveError(
            f"onboarding session {session_id} is {status}; it takes no more answers"
        )

    def _time_inserts(self, registry: CollectorRegistry | bool) -> None:
        """Route the two answer inserts through :meth:`_timed` (the only cost of metrics)."""
        from prometheus_client import REGISTRY

        from selfology_counters.metrics import insert_histogram

        histogram = insert_histogram(REGISTRY if isinstance(registry, bool) else registry)
        self._insert_one = partial(self._timed, histogram.labels(operation="save_answer"))
        self._insert_many = partial(self._timed, histogram.labels(operation="save_answers"))

    async def _timed(
        self, histogram: Any, statement: Callable[[asyncpg.Connection], Awaitable[T]]
    ) -> T:
        started = time.perf_counter()
        try:
            return await self._write(statement)
        finally:
            histogram.observe(time.perf_counter() - started)

    async def _write(self, statement: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run one write statement (its own transaction), retrying deadlocks and
        serialization failures with jittered backoff."""

        async def once() -> T:
            with _typed_database_errors():
                async with self._pool.acquire() as connection:
                    return await statement(connection)

        try:
            return await retried(once, self.max_retries + 1)
        except RETRYABLE as exc:
            raise RetriesExhaustedError(
                f"gave up after {self.max_retries + 1} attempts: {type(exc).__name__}: {exc}"
            ) from None


@contextmanager
def _typed_database_errors() -> Iterator[None]:
    """The database's errors as the package's typed ones (deadlocks and serialization
    failures pass through: the write retries them). The statement was rolled back."""
    try:
        yield
    except RETRYABLE:
        raise
    except asyncpg.exceptions.ForeignKeyViolationError as exc:
        # The session was deleted between our lookup and the insert.
        raise UnknownSessionError(str(exc)) from None
    except asyncpg.exceptions.DataError as exc:
        # A limit of the table stricter than ours (an adopted database's varchar(50)).
        raise InvalidInputError(f"the database refused the value: {exc}") from None
    except _SCHEMA_MISSING as exc:
        raise SchemaMissingError(
            f"{exc}: the counter schema is not installed here; run 'selfology-counters migrate'"
        ) from None
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        raise DatabaseUnavailableError(f"lost the database: {type(exc).__name__}: {exc}") from None
    except asyncpg.PostgresError as exc:
        raise DatabaseRefusedError(f"{type(exc).__name__}: {exc}") from None


_SCHEMA_MISSING = (
    asyncpg.exceptions.UndefinedTableError,
    asyncpg.exceptions.UndefinedFunctionError,
    asyncpg.exceptions.UndefinedColumnError,
    asyncpg.exceptions.InvalidSchemaNameError,
)
MAX_POOL_SIZE = 10_000  # asyncpg allocates every slot up front; PostgreSQL allows fewer
MAX_RETRIES = 100


def _check_options(
    pool: object, max_answer_length: object, max_retries: object, schema: object, metrics: object
) -> None:
    """Every constructor argument, before anything is opened: :class:`InvalidInputError`."""
    if pool is not None and not isinstance(pool, asyncpg.Pool):
        raise InvalidInputError(f"pool must be an asyncpg.Pool, not {type(pool).__name__}")
    validation.check_count(max_answer_length, "max_answer_length", 1, 2**31 - 1)
    validation.check_count(max_retries, "max_retries", 0, MAX_RETRIES)
    quote_ident(schema)  # type: ignore[arg-type]
    if not isinstance(metrics, bool) and not callable(getattr(metrics, "register", None)):
        raise InvalidInputError(
            "metrics must be True, False or a prometheus_client CollectorRegistry, "
            f"not {type(metrics).__name__}"
        )


_OWNERS_KEPT = 100_000  # sessions whose user the DAO remembers on Citus
_QUERIES = (
    "start_session",
    "session_owner",
    "lock_session",
    "insert_answer",
    "insert_answers",
    "session_status",
    "delete_answer",
    "complete_session",
    "user_total_answers",
    "personality_count",
    "session_answer_count",
    "create_personality",
    "session_answers",
)


def _validated_pairs(
    answers: Sequence[tuple[str, str]], max_length: int
) -> tuple[list[str], list[str]]:
    if isinstance(answers, (str, bytes)) or not isinstance(answers, Sequence):
        raise InvalidAnswerError("answers must be a list of (question_json_id, raw_answer) pairs")
    question_ids: list[str] = []
    texts: list[str] = []
    for index, pair in enumerate(answers):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidAnswerError(
                f"answers[{index}] is not a (question_json_id, raw_answer) pair"
            )
        question_ids.append(validation.check_question_id(pair[0]))
        texts.append(validation.check_answer(pair[1], max_length))
    return question_ids, texts
