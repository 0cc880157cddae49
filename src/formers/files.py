"""Files on disk, a leaf every layer may import: atomic writes and JSON reading with errors that name the file.

Nothing here imports another formers module.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary file path next to ``path``; on success fsyncs it and renames it to ``path``.

    Write the content to the yielded path (any writer: ``write_text``, ``np.save``, ``save_file``). A failure
    removes the temporary file, so ``path`` holds either its old content or the complete new one.
    ``suffix`` keeps an extension some writers insist on (``np.save`` appends ``.npy`` otherwise).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any]:
    """Reads a JSON object, raising a ``ValueError`` that names the file when it is corrupt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt JSON in {path}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data
