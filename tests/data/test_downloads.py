"""Tests for formers.data.downloads: checksums, atomic writes, offline errors, local-copy lookup."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from formers.data.downloads import (
    ChecksumError,
    download,
    resolve_data_dir,
    sha256_of,
    verify_sha256,
)


def test_checksum_mismatch_raises(tmp_path: Path) -> None:
    file = tmp_path / "a.txt"
    file.write_bytes(b"hello")
    good = hashlib.sha256(b"hello").hexdigest()
    assert sha256_of(file) == good
    verify_sha256(file, good)
    with pytest.raises(ChecksumError, match=f"expected sha256 {'0' * 64}, got {good}"):
        verify_sha256(file, "0" * 64)
    # An existing file with the wrong checksum is reported and left alone, never re-downloaded over.
    with pytest.raises(ChecksumError):
        download("https://example.invalid/a.txt", file, "0" * 64)
    assert file.read_bytes() == b"hello"


def test_download_file_url_atomic(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    dest = tmp_path / "out" / "dest.bin"
    with pytest.raises(ChecksumError):
        download(src.as_uri(), dest, "f" * 64)
    assert not dest.exists() and list(dest.parent.iterdir()) == [], "a bad download must leave no file behind"
    assert download(src.as_uri(), dest, good) == dest
    assert dest.read_bytes() == b"payload"


def test_offline_error_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match="offline.*place it at"):
        download("http://127.0.0.1:9/none.gz", tmp_path / "none.gz", "0" * 64, timeout=2)
    with pytest.raises(ValueError, match="64-character hex digest"):
        download("http://127.0.0.1:9/none.gz", tmp_path / "none.gz", "abc")


def test_resolve_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.gz").write_bytes(b"")
    monkeypatch.setenv("FORMERS_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("ds", ["a.gz"]) == tmp_path / "ds"
    assert resolve_data_dir("ds", ["b.gz"]) is None
    with pytest.raises(FileNotFoundError, match="lacks the ds files"):
        resolve_data_dir("ds", ["b.gz"], data_dir=tmp_path / "ds")
