"""Fetching public data files: local copies first, then a checksummed, atomic download.

Every dataset loader in ``formers.data`` resolves its files through :func:`resolve_data_dir` (a
``data_dir`` argument, else ``$FORMERS_DATA_DIR/<name>``, else a sibling ``shared/data/<name>``
checkout) and falls back to :func:`download`, which verifies a hard-coded SHA-256 before the file
is moved into place, so a half-written or tampered file is never seen under its final name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

DATA_DIR_ENV = "FORMERS_DATA_DIR"
"""Environment variable naming a folder that holds local dataset copies, one sub-folder per dataset."""

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file's SHA-256 differs from the expected one."""


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Returns the hex SHA-256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], sha256: str) -> None:
    """Raises :class:`ChecksumError` unless the file at ``path`` has SHA-256 ``sha256``."""
    actual = sha256_of(path)
    if actual != sha256.lower():
        raise ChecksumError(f"checksum mismatch for {os.fspath(path)}: expected sha256 {sha256.lower()}, got {actual}")


def default_cache_dir() -> Path:
    """Where downloads land when no folder is given: ``$FORMERS_DATA_DIR``, else ``~/.cache/formers``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "formers"


def download(url: str, dest: str | os.PathLike[str], sha256: str, timeout: float = 60.0) -> Path:
    """Downloads ``url`` to ``dest`` unless a file with the right checksum is already there.

    The bytes go to a temporary file in ``dest``'s folder, are checked, and only then renamed onto
    ``dest`` (an atomic rename), so an interrupted or corrupt download never leaves a bad file behind.

    Args:
        url: address to fetch.
        dest: final file path; parent folders are created.
        sha256: expected hex SHA-256 of the file.
        timeout: socket timeout in seconds.

    Returns:
        The path ``dest``.

    Raises:
        ChecksumError: an existing or downloaded file has the wrong checksum (an existing file is
            left untouched and not overwritten, so a user-supplied copy is never silently replaced).
        ConnectionError: the machine is offline or the server refused; the message says how to supply
            the file by hand.
    """
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise ValueError(f"sha256 must be a 64-character hex digest, got {sha256!r}")
    dest = Path(dest)
    if dest.exists():
        verify_sha256(dest, sha256)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https URLs only)
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as exc:
                raise ConnectionError(
                    f"could not download {url} ({exc}); if this machine is offline, fetch the file elsewhere "
                    f"and place it at {dest}, or point ${DATA_DIR_ENV} / data_dir at a folder holding it"
                ) from exc
        verify_sha256(tmp_name, sha256)
        os.replace(tmp_name, dest)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    return dest


def resolve_data_dir(name: str, required_files: list[str], data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Finds a local folder holding a dataset's files, or None when there is none.

    Looks, in order, at ``data_dir`` (which then must hold the files), ``$FORMERS_DATA_DIR/<name>``,
    and ``shared/data/<name>`` next to the project checkout (searched upward from the current
    directory and from this package's location, as ``../shared/data/<name>`` of a repository root).

    Args:
        name: dataset folder name, e.g. ``"multi30k"``.
        required_files: file names that must all exist in the folder.
        data_dir: explicit folder; if given and incomplete, raises instead of searching further.

    Returns:
        The folder, or None if no candidate holds every required file.

    Raises:
        FileNotFoundError: ``data_dir`` was given but lacks some of ``required_files``.
    """
    if data_dir is not None:
        folder = Path(data_dir)
        missing = [f for f in required_files if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"data_dir={os.fspath(folder)!r} lacks the {name} files {missing}")
        return folder
    candidates: list[Path] = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        candidates.append(Path(env) / name)
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for parent in (start, *start.parents):
            candidates.append(parent / "shared" / "data" / name)
    for folder in candidates:
        if all((folder / f).is_file() for f in required_files):
            return folder
    return None
