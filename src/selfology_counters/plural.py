"""Counted nouns in messages: "1 answer", "2 answers"."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an "s" unless the count is one."""
    return f"{count} {noun}" + ("" if count == 1 else "s")
