"""Typed errors. Input errors are raised before anything is written."""

from __future__ import annotations


class SelfologyCountersError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(SelfologyCountersError, ValueError):
    """An argument is of the wrong type or out of range; nothing was written."""


class InvalidIdError(InvalidInputError):
    """An id is not a positive 64-bit integer."""


class InvalidAnswerError(InvalidInputError):
    """An answer is empty, too long, contains a NUL byte or is not a string."""


class InvalidQuestionIdError(InvalidInputError):
    """A question_json_id is empty, too long, contains a NUL byte or is not a string."""


class UnknownSessionError(SelfologyCountersError, LookupError):
    """No onboarding session has that id."""


class SessionNotActiveError(SelfologyCountersError):
    """The session is completed or abandoned; it takes no more answers."""


class UnknownAnswerError(SelfologyCountersError, LookupError):
    """No answer has that id."""


class RetriesExhaustedError(SelfologyCountersError):
    """PostgreSQL kept reporting deadlocks or serialization failures; the write was rolled back."""


class InvalidDsnError(SelfologyCountersError, ValueError):
    """A DSN (``--dsn``, ``SELFOLOGY_DSN``, ``DATABASE_URL``) is empty or does not parse."""


class DatabaseUnavailableError(SelfologyCountersError):
    """The database could not be reached, or the credentials or database name are wrong."""


class SchemaMissingError(SelfologyCountersError):
    """The selfology schema (or our part of it) is not installed; run ``migrate``."""


class LockWaitExhaustedError(SelfologyCountersError):
    """A schema change kept timing out on its short lock_timeout; nothing half-done was kept."""


class EmbeddedInUseError(SelfologyCountersError):
    """The embedded server was asked to stop while a live process still uses it."""


class DatabaseRefusedError(SelfologyCountersError):
    """PostgreSQL refused a statement for a reason of its own (a permission, a timeout, a
    constraint the input checks do not know); nothing was written."""


class DistributedUnsupportedError(SelfologyCountersError):
    """Citus (the tables distributed by user_id) cannot do what was asked; the message says
    why. Nothing was changed."""


class RolesError(SelfologyCountersError):
    """The owner, application and read-only roles could not be made what they should be."""


class FoldStalledError(SelfologyCountersError):
    """``worker --once`` could not fold within its bounded wait: the fold stayed busy (another
    worker, a row lock held by an idle session) or the database stayed unreachable."""
