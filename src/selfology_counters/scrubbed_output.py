"""Standard output and error with every password the command was given replaced by ``***``.

Error messages were scrubbed where they are made (``cli.say_error``); a command's ordinary
output echoes its own arguments too (``compare`` names the ``--out`` directory it wrote, in
its text and in its JSON), and an argument may hold a password: a DSN typed in the wrong
place, or the password itself. Scrubbing the streams covers every line, including those of
commands written later, instead of each place that prints."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from selfology_counters import config


class ScrubbingWriter:
    """A text stream that writes to ``stream`` what it is given, scrubbed of the passwords
    of ``dsns``. Everything else (``isatty``, ``fileno``, ``encoding``) is the stream's, so
    that click treats it as the terminal or pipe it is."""

    def __init__(self, stream: TextIO, dsns: Iterable[str]) -> None:
        self._stream = stream
        self._dsns = [dsn for dsn in dsns if dsn]

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes for a binary stream with b""
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._stream.write(config.scrub(text, self._dsns))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def scrubbed(dsns: Iterable[str]) -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` scrubbed of the passwords of ``dsns`` in the block."""
    given = list(dsns)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = ScrubbingWriter(stdout, given)
    sys.stderr = ScrubbingWriter(stderr, given)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr
