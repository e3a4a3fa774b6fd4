"""Rows the tests write the way the bot does, defined once."""

from __future__ import annotations

import asyncpg


async def new_session(conn: asyncpg.Connection, user_id: int) -> int:
    """A new onboarding session of ``user_id``; its id."""
    return await conn.fetchval(
        "INSERT INTO selfology.onboarding_sessions (user_id) VALUES ($1) RETURNING id", user_id
    )
