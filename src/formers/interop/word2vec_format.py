"""The word2vec C tool's vector files, text and binary, as written by ``word2vec.c`` and read by gensim's
``KeyedVectors.load_word2vec_format``.

Both start with a header line ``"<V> <D>\\n"``. Text rows are ``word v1 ... vD`` separated by single spaces; formers
writes each float32 with 9 significant digits, which reads back to the same float32. Binary rows are the word's
UTF-8 bytes, a space, and ``D`` little-endian float32: the C tool ends each row with ``\\n``, gensim writes none;
the reader accepts both (a newline before a word is skipped, as gensim does).

Malformed files raise a ``ValueError`` naming the file and the line (text) or row and byte offset (binary):
a bad header, a row with the wrong number of values (mixed dimensions), a truncated binary row, fewer or more
rows than the header says, a duplicate word.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

from formers.files import atomic_file

_FLOAT32_LE = np.dtype("<f4")


def _check_words(words: Sequence[str], vectors: np.ndarray) -> None:
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be 2-D (V, D), got shape {vectors.shape}")
    if len(words) != vectors.shape[0]:
        raise ValueError(f"words has {len(words)} entries but vectors has {vectors.shape[0]} rows")
    for word in words:
        if not isinstance(word, str) or not word or any(c.isspace() for c in word):
            raise ValueError(f"word {word!r} cannot be written: words must be non-empty strings without whitespace")


def save_word2vec_format(
    path: str | os.PathLike[str], words: Sequence[str], vectors: np.ndarray, binary: bool = False
) -> None:
    """Writes ``words`` and their ``vectors`` in the C tool's format, atomically.

    Args:
        path: the file to write.
        words: ``V`` words without whitespace, in row order.
        vectors: ``(V, D)`` array (converted to float32).
        binary: the binary format (else text).
    """
    vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    _check_words(words, vectors)
    num, dim = vectors.shape
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(f"{num} {dim}\n".encode())
        if binary:
            for word, row in zip(words, vectors.astype(_FLOAT32_LE)):
                fh.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
        else:
            fmt = " ".join(["%.9g"] * dim)
            for word, row in zip(words, vectors.tolist()):
                fh.write(f"{word} {fmt % tuple(row)}\n".encode("utf-8"))


def _header(fh: BinaryIO, name: str) -> tuple[int, int]:
    line = fh.readline()
    parts = line.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{name}:1: expected a header '<words> <dimensions>', got {line[:80]!r}")
    num, dim = int(parts[0]), int(parts[1])
    if dim < 1:
        raise ValueError(f"{name}:1: the header gives {dim} dimensions, expected at least 1")
    return num, dim


def _decode(raw: bytes, name: str, where: str, unicode_errors: str) -> str:
    try:
        return raw.decode("utf-8", errors=unicode_errors)
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}:{where}: word {raw!r} is not UTF-8 ({e}); pass unicode_errors='replace'") from None


def _read_text(fh: BinaryIO, name: str, num: int, dim: int, unicode_errors: str) -> tuple[list[str], np.ndarray]:
    words: list[str] = []
    vectors = np.empty((num, dim), dtype=np.float32)
    for line_no, line in enumerate(fh, start=2):
        if not line.strip():
            continue
        parts = line.rstrip(b"\r\n").rstrip(b" ").split(b" ")
        word = _decode(parts[0], name, str(line_no), unicode_errors)
        if len(words) == num:
            raise ValueError(f"{name}:{line_no}: more rows than the header's {num} (word {word!r})")
        if len(parts) - 1 != dim:
            raise ValueError(
                f"{name}:{line_no}: word {word!r} has {len(parts) - 1} values, expected {dim} (the header's dimensions)"
            )
        try:
            vectors[len(words)] = [float(x) for x in parts[1:]]
        except ValueError:
            raise ValueError(f"{name}:{line_no}: word {word!r} has a value that is not a number") from None
        words.append(word)
    if len(words) != num:
        raise ValueError(f"{name}: the header says {num} words, the file has {len(words)} rows")
    return words, vectors


def _read_binary(fh: BinaryIO, name: str, num: int, dim: int, unicode_errors: str) -> tuple[list[str], np.ndarray]:
    data = fh.read()
    offset = 0
    words: list[str] = []
    vectors = np.empty((num, dim), dtype=np.float32)
    row_bytes = dim * _FLOAT32_LE.itemsize
    while True:
        while offset < len(data) and data[offset : offset + 1] in (b"\n", b"\r"):
            offset += 1  # the C tool ends rows with a newline, gensim does not
        if offset >= len(data):
            break
        space = data.find(b" ", offset)
        if space < 0:
            raise ValueError(f"{name}: row {len(words) + 1} (byte {offset}): no space after the word {data[offset:offset + 40]!r}")
        word = _decode(data[offset:space], name, f"row {len(words) + 1}", unicode_errors)
        if len(words) == num:
            raise ValueError(f"{name}: row {num + 1} (word {word!r}): more rows than the header's {num}")
        start = space + 1
        if len(data) - start < row_bytes:
            raise ValueError(
                f"{name}: row {len(words) + 1} (word {word!r}) is truncated: {len(data) - start} of its {row_bytes} "
                f"vector bytes ({dim} float32) are present"
            )
        vectors[len(words)] = np.frombuffer(data, dtype=_FLOAT32_LE, count=dim, offset=start)
        words.append(word)
        offset = start + row_bytes
    if len(words) != num:
        raise ValueError(f"{name}: the header says {num} words, the file has {len(words)} rows")
    return words, vectors


def load_word2vec_format(
    path: str | os.PathLike[str], binary: bool | None = None, unicode_errors: str = "strict"
) -> tuple[list[str], np.ndarray]:
    """Reads a C-format vector file.

    Args:
        path: the file.
        binary: the binary format; ``None`` guesses from the bytes after the header (text rows are printable).
        unicode_errors: how undecodable words are handled (``"strict"`` raises; the C tool may cut UTF-8
            characters in half, ``"replace"`` reads such files).

    Returns:
        ``(words, vectors (V, D) float32)`` in file order.

    Raises:
        ValueError: a malformed file (see the module docstring), naming file and line or row.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vector file {os.fspath(path)!r} does not exist")
    name = os.fspath(path)
    with open(path, "rb") as fh:
        num, dim = _header(fh, name)
        if binary is None:
            binary = _looks_binary(fh.read(4096))
            fh.seek(0)
            fh.readline()
        words, vectors = (_read_binary if binary else _read_text)(fh, name, num, dim, unicode_errors)
    seen: dict[str, int] = {}
    for i, word in enumerate(words):
        if word in seen:
            raise ValueError(f"{name}: word {word!r} appears twice (rows {seen[word] + 1} and {i + 1})")
        seen[word] = i
    return words, vectors


def _looks_binary(sample: bytes) -> bool:
    """Text rows are UTF-8 words and ASCII numbers; binary rows hold raw float bytes, rarely all printable."""
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start < len(sample) - 4  # a multi-byte character cut at the sample's end is still text
    return any(b < 32 and b not in (9, 10, 13) for b in sample)
