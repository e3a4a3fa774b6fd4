"""Input checks of the DAO: everything is checked before anything is sent to the database."""

from __future__ import annotations

from selfology_counters.errors import (
    InvalidAnswerError,
    InvalidIdError,
    InvalidInputError,
    InvalidQuestionIdError,
)

MAX_ID = 2**63 - 1
DEFAULT_MAX_ANSWER_LENGTH = 10_000
MAX_QUESTION_ID_LENGTH = 255


def check_id(value: object, what: str) -> int:
    """``value`` as a positive bigint id, or :class:`InvalidIdError`."""
    # bool is an int subclass, but True is not an id.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidIdError(f"{what} must be an integer, not {type(value).__name__}")
    if not 0 < value <= MAX_ID:
        raise InvalidIdError(f"{what} must be a positive 64-bit integer, got {value}")
    return value


def check_answer(value: object, max_length: int) -> str:
    """``value`` as an answer text, or :class:`InvalidAnswerError`."""
    if not isinstance(value, str):
        raise InvalidAnswerError(f"raw_answer must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidAnswerError("raw_answer is empty")
    if len(value) > max_length:
        raise InvalidAnswerError(
            f"raw_answer is {len(value)} characters long; the limit is {max_length}"
        )
    if "\x00" in value:
        raise InvalidAnswerError("raw_answer contains a NUL byte")
    if not _is_utf8(value):
        raise InvalidAnswerError("raw_answer contains a lone surrogate, which UTF-8 cannot hold")
    return value


def check_question_id(value: object) -> str:
    """``value`` as a question_json_id, or :class:`InvalidQuestionIdError`."""
    if not isinstance(value, str):
        raise InvalidQuestionIdError(
            f"question_json_id must be a string, not {type(value).__name__}"
        )
    if not value.strip():
        raise InvalidQuestionIdError("question_json_id is empty")
    if len(value) > MAX_QUESTION_ID_LENGTH:
        raise InvalidQuestionIdError(
            f"question_json_id is {len(value)} characters long; "
            f"the limit is {MAX_QUESTION_ID_LENGTH}"
        )
    if "\x00" in value:
        raise InvalidQuestionIdError("question_json_id contains a NUL byte")
    if not _is_utf8(value):
        raise InvalidQuestionIdError(
            "question_json_id contains a lone surrogate, which UTF-8 cannot hold"
        )
    return value


def _is_utf8(value: str) -> bool:
    # A Python str may hold lone surrogates (from a lenient decoder); PostgreSQL's UTF-8 cannot,
    # and asyncpg would refuse it only after the statement was sent.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_count(value: object, what: str, minimum: int, maximum: int) -> int:
    """``value`` as an integer setting between ``minimum`` and ``maximum``, or
    :class:`InvalidInputError`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"{what} must be an integer, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise InvalidInputError(f"{what} must be between {minimum} and {maximum}, got {value}")
    return value
