"""Writers in parallel lose nothing: many connections at once, then every counter against
COUNT(*)."""

from __future__ import annotations

import asyncio
import random

import asyncpg

from selfology_counters import OnboardingDAO
from tests.truth import assert_exact, counters

WRITERS = 100


async def open_connections(dsn: str, n: int) -> list[asyncpg.Connection]:
    """``n`` connections, or none: those opened are closed again if one fails."""
    results = await asyncio.gather(
        *(asyncpg.connect(dsn) for _ in range(n)), return_exceptions=True
    )
    opened = [r for r in results if isinstance(r, asyncpg.Connection)]
    if len(opened) < n:
        await asyncio.gather(*(c.close() for c in opened))
        error = next(r for r in results if isinstance(r, BaseException))
        raise error
    return opened


async def test_100_connections_insert_for_one_user_at_once(db: str) -> None:
    setup = await asyncpg.connect(db)
    sessions = [
        await setup.fetchval(
            "INSERT INTO selfology.onboarding_sessions (user_id) VALUES (1) RETURNING id"
        )
        for _ in range(10)
    ]
    await setup.execute("INSERT INTO selfology.digital_personality (user_id) VALUES (1)")
    await setup.close()  # 100 writers must fit in a server with max_connections = 100

    connections = await open_connections(db, WRITERS)
    start = asyncio.Event()

    async def writer(index: int, connection: asyncpg.Connection) -> None:
        await start.wait()
        for round_ in range(5):
            await connection.execute(
                "INSERT INTO selfology.user_answers_new (session_id, question_json_id, raw_answer)"
                " VALUES ($1, $2, 'same user, same moment')",
                sessions[(index + round_) % len(sessions)],
                f"q{index}-{round_}",
            )

    tasks = [asyncio.create_task(writer(i, c)) for i, c in enumerate(connections)]
    start.set()
    try:
        await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(c.close() for c in connections))

    check = await asyncpg.connect(db)
    try:
        assert await counters(check, sessions[0], 1) == (50, WRITERS * 5, WRITERS * 5)
        await assert_exact(check)
    finally:
        await check.close()


async def test_mixed_inserts_deletes_and_moves_across_users(db: str) -> None:
    users = list(range(1, 11))
    pool = await asyncpg.create_pool(db, min_size=20, max_size=20)
    dao = OnboardingDAO(pool)
    try:
        sessions = {u: [await dao.start_session(u) for _ in range(3)] for u in users}
        all_sessions = [s for group in sessions.values() for s in group]
        for u in users[::2]:
            await pool.execute("INSERT INTO selfology.digital_personality (user_id) VALUES ($1)", u)

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            for step in range(40):
                action = rng.random()
                if action < 0.5:
                    batch = [(f"q{seed}-{step}-{k}", "text") for k in range(rng.randint(1, 4))]
                    await dao.save_answers(rng.choice(all_sessions), batch)
                elif action < 0.7:
                    answer = await pool.fetchval(
                        "SELECT id FROM selfology.user_answers_new ORDER BY random() LIMIT 1"
                    )
                    if answer is not None:
                        await _retry_deadlock(
                            pool, "DELETE FROM selfology.user_answers_new WHERE id = $1", answer
                        )
                elif action < 0.9:
                    # Move a few answers to another session, often of another user.
                    await _retry_deadlock(
                        pool,
                        "UPDATE selfology.user_answers_new SET session_id = $1 WHERE id IN "
                        "(SELECT id FROM selfology.user_answers_new ORDER BY random() LIMIT 3)",
                        rng.choice(all_sessions),
                    )
                else:
                    await _retry_deadlock(
                        pool,
                        "DELETE FROM selfology.user_answers_new WHERE session_id = $1",
                        rng.choice(all_sessions),
                    )

        await asyncio.gather(*(worker(seed) for seed in range(20)))
        async with pool.acquire() as connection:
            await assert_exact(connection)
    finally:
        await pool.close()


async def _retry_deadlock(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    """Statements that lock answer rows in random order (a move of three, a delete of one that a
    move also holds) can deadlock on the answer rows themselves, before any counter trigger
    runs (seen: tuple locks of user_answers_new). PostgreSQL aborts one; it is retried like
    the DAO retries its own writes."""
    for _ in range(10):
        try:
            await pool.execute(sql, *args)
            return
        except asyncpg.DeadlockDetectedError:
            await asyncio.sleep(random.uniform(0, 0.01))
    raise AssertionError("deadlock retries exhausted")
