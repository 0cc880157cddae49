"""Sentences from the command line, a file or stdin, read as UTF-8 with the failing line named in errors.

Used by ``formers translate``/``evaluate`` and ``formers embed``/``similarity``. Bytes are decoded strictly as
UTF-8 (a leading byte-order mark is dropped): an undecodable byte is refused in one line naming the source, the
line and the column, never replaced, since a silently mangled sentence would give a wrong translation or embedding
with no warning. Lines end at ``\\n`` (a ``\\r`` before it is dropped), as ``wc -l`` and editors count them, so
that outputs stay aligned with input lines.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from formers.layers import check_text


def split_lines(text: str) -> list[str]:
    """The lines of ``text``: split at ``\\n`` only, a trailing ``\\r`` dropped, no empty line after a final ``\\n``."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def decode_lines(data: bytes, source: str) -> list[str]:
    """The lines of UTF-8 ``data``; raises a ValueError naming ``source``, the line and column of a bad byte."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(
            f"{source} line {line} is not valid UTF-8 (byte 0x{data[e.start]:02x} at column {column}); "
            "save the text as UTF-8"
        ) from None
    return split_lines(text)


def read_file_lines(path: Path, option: str) -> list[str]:
    """The lines of the UTF-8 file ``path`` given as ``option`` (e.g. ``--file``)."""
    if not path.is_file():
        raise FileNotFoundError(f"{option} {str(path)!r} does not exist or is not a file")
    return decode_lines(path.read_bytes(), f"{option} {str(path)!r}")


def read_stdin_lines() -> list[str]:
    """The lines of stdin, decoded as UTF-8 whatever the locale."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return decode_lines(buffer.read(), "stdin")
    lines = split_lines(sys.stdin.read())  # an already-decoded stream (a notebook, a test)
    for i, line in enumerate(lines):
        check_text(line, f"stdin line {i + 1}")
    return lines


def check_arguments(texts: Sequence[str]) -> None:
    """Raises if a command-line sentence holds bytes that were not UTF-8 (Python keeps them as surrogates)."""
    for i, text in enumerate(texts):
        check_text(text, f"sentence argument {i + 1}")


def blank_lines(texts: Sequence[str]) -> list[int]:
    """The 1-based numbers of the blank (empty or whitespace-only) lines of ``texts``."""
    return [i + 1 for i, text in enumerate(texts) if not text.strip()]
