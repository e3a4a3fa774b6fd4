"""Counted nouns in messages: "1 answer", "2 answers"."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an "s" unless the count is one."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def counted(count: int, nouns: str) -> str:
    """``count`` and the plural noun ``nouns`` ("sessions", "personalities"), made singular
    when the count is one."""
    if count != 1:
        return f"{count} {nouns}"
    one = nouns[:-3] + "y" if nouns.endswith("ies") else nouns.removesuffix("s")
    return f"{count} {one}"
