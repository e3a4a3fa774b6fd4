"""What the database holds for one user, for messages such as "no such user"."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import asyncpg

from selfology_counters.sqlfiles import SCHEMA, query


@dataclass(frozen=True)
class UserPresence:
    """How many answers, sessions and counter rows one user has."""

    user_id: int
    answers: int
    sessions: int
    user_stats_rows: int
    personality_rows: int

    @property
    def known(self) -> bool:
        """False when nothing at all is stored for the user (a mistyped id, say)."""
        return any((self.answers, self.sessions, self.user_stats_rows, self.personality_rows))

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "known": self.known}


async def presence(
    connection: asyncpg.Connection, user_id: int, schema: str = SCHEMA
) -> UserPresence:
    row = await connection.fetchrow(query("operator.sql", "user_presence", schema), user_id)
    return UserPresence(user_id=user_id, **dict(row))
