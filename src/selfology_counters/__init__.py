"""selfology-counters: exact answer counters for Selfology, kept by PostgreSQL.

Public API: :class:`OnboardingDAO`, the typed errors, :func:`resolve_dsn` and :func:`upgrade`.
"""

from __future__ import annotations

from selfology_counters.config import resolve as resolve_dsn
from selfology_counters.dao import Answer, OnboardingDAO
from selfology_counters.errors import (
    DatabaseRefusedError,
    DatabaseUnavailableError,
    InvalidAnswerError,
    InvalidIdError,
    InvalidInputError,
    InvalidQuestionIdError,
    RetriesExhaustedError,
    SchemaMissingError,
    SelfologyCountersError,
    SessionNotActiveError,
    UnknownAnswerError,
    UnknownSessionError,
)
from selfology_counters.lifecycle import upgrade

__all__ = [
    "Answer",
    "DatabaseRefusedError",
    "DatabaseUnavailableError",
    "InvalidAnswerError",
    "InvalidIdError",
    "InvalidInputError",
    "InvalidQuestionIdError",
    "OnboardingDAO",
    "RetriesExhaustedError",
    "SchemaMissingError",
    "SelfologyCountersError",
    "SessionNotActiveError",
    "UnknownAnswerError",
    "UnknownSessionError",
    "resolve_dsn",
    "upgrade",
]
