"""A short walk through the counters: record answers, delete one, read the counters back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from selfology_counters import model
from selfology_counters.connect import connect, create_pool, require_schema
from selfology_counters.dao import OnboardingDAO
from selfology_counters.lifecycle import DatabaseState, apply, detect
from selfology_counters.objects import current_mode
from selfology_counters.sqlfiles import query


@dataclass(frozen=True)
class DemoResult:
    user_id: int
    session_id: int
    answers_saved: int
    answers_deleted: int
    questions_answered: int
    total_answers_lifetime: int
    total_answers_analyzed: int | None
    session_count_star: int
    user_count_star: int
    mode: str = model.IMMEDIATE  # deferred: the three figures are exact reads, not stored

    @property
    def exact(self) -> bool:
        return (
            self.questions_answered == self.session_count_star
            and self.total_answers_lifetime == self.user_count_star
            and self.total_answers_analyzed in (None, self.user_count_star)
        )

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "exact": self.exact}


async def run_demo(
    dsn: str,
    user_id: int = 424242,
    *,
    migrate_empty: bool = False,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Record answers through the DAO and read the counters back. ``migrate_empty``: a
    database with none of our tables yet (a fresh embedded server) is migrated first;
    otherwise it is :class:`SchemaMissingError`."""
    pool = await create_pool(dsn, max_size=2)
    try:
        async with pool.acquire() as connection:
            if migrate_empty and await detect(connection) is DatabaseState.EMPTY:
                await apply(dsn, progress=progress)
            await require_schema(connection)
        dao = OnboardingDAO(pool)
        session_id = await dao.start_session(user_id)
        first = await dao.save_answer(session_id, "q_intro", "I like long walks.")
        await dao.save_answers(session_id, [(f"q_{n}", f"answer number {n}") for n in range(1, 10)])
        await dao.delete_answer(first)
        await dao.complete_session(session_id)
        return await _read_back(dsn, dao, user_id, session_id)
    finally:
        await pool.close()


async def _read_back(dsn: str, dao: OnboardingDAO, user_id: int, session_id: int) -> DemoResult:
    connection = await connect(dsn)
    try:
        rows = await connection.fetch(query("demo.sql", "counters_of_user"), user_id)
        answers = await connection.fetchval(query("demo.sql", "answers_of_user"), user_id)
        mode = await current_mode(connection)
    finally:
        await connection.close()
    found = {(r["counter"], r["key"]): r for r in rows}
    session = found[(model.SESSIONS.name, session_id)]
    return DemoResult(
        user_id=user_id,
        session_id=session_id,
        answers_saved=10,
        answers_deleted=1,
        questions_answered=session["stored"] + session["pending"],  # exact in either mode
        total_answers_lifetime=await dao.get_user_total_answers(user_id),
        total_answers_analyzed=await dao.get_personality_count(user_id),
        session_count_star=session["actual"],
        user_count_star=answers,
        mode=mode,
    )
