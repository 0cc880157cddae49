"""The data shipped inside the package: checksums, unpacking, and tinyshakespeare needing neither network nor shared/."""

from __future__ import annotations

import gzip

import pytest

from formers.data import corpora, downloads
from formers.data.assets import ASSETS, ASSETS_DIR, unpack_asset
from formers.data.corpora import TINYSHAKESPEARE_SHA256, tinyshakespeare_path
from formers.data.downloads import ChecksumError, sha256_of
from formers.data.tokenizers import gpt2_bpe
from formers.data.tokenizers.gpt2_bpe import GPT2_FILES, GPT2BPETokenizer


def test_manifest_matches_the_loaders_checksums_and_the_files_are_small():
    assert ASSETS["tinyshakespeare/input.txt"] == TINYSHAKESPEARE_SHA256
    assert {f"gpt2-bpe/{name}": sha for name, (_, sha) in GPT2_FILES.items()} == {
        k: v for k, v in ASSETS.items() if k.startswith("gpt2-bpe/")
    }
    total = sum((ASSETS_DIR / f"{asset}.gz").stat().st_size for asset in ASSETS)
    assert total < 1_100_000, total  # gzip -9: about 1 MB for the three files
    assert "MIT" in (ASSETS_DIR / "gpt2-bpe" / "LICENSE").read_text(encoding="utf-8")


def test_unpack_writes_a_checked_copy_once(tmp_path):
    path = unpack_asset("tinyshakespeare/input.txt", tmp_path)
    assert path == tmp_path / "tinyshakespeare" / "input.txt" and sha256_of(path) == TINYSHAKESPEARE_SHA256
    assert unpack_asset("tinyshakespeare/input.txt", tmp_path) == path  # found, not rewritten
    path.write_text("tampered")
    with pytest.raises(ChecksumError):
        unpack_asset("tinyshakespeare/input.txt", tmp_path)
    assert path.read_text() == "tampered"  # a user's file is never replaced
    with pytest.raises(ValueError, match="asset must be one of"):
        unpack_asset("multi30k/train.en", tmp_path)


def test_tinyshakespeare_comes_from_the_package_without_network_or_shared_data(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMERS_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(corpora, "resolve_data_dir", lambda *a, **k: None)  # as if no shared/data were beside us

    def offline(*args, **kwargs):
        raise AssertionError("tinyshakespeare_path tried the network")

    monkeypatch.setattr(corpora, "download", offline)
    monkeypatch.setattr(downloads, "download", offline)
    path = tinyshakespeare_path()
    assert path == tmp_path / "cache" / "tinyshakespeare" / "input.txt"
    assert path.read_bytes() == gzip.decompress((ASSETS_DIR / "tinyshakespeare" / "input.txt.gz").read_bytes())
    assert len(path.read_text(encoding="utf-8")) == 1_115_394


def test_gpt2_tokenizer_comes_from_the_package_without_network_or_shared_data(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMERS_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(gpt2_bpe, "resolve_data_dir", lambda *a, **k: None)

    def offline(*args, **kwargs):
        raise AssertionError("find_gpt2_files tried the network")

    monkeypatch.setattr(gpt2_bpe, "download", offline)
    tok = GPT2BPETokenizer.from_gpt2_dir()
    assert tok.encode("Hello world") == [15496, 995] and tok.vocab_size == 50257
    assert sha256_of(tmp_path / "cache" / "gpt2-bpe" / "vocab.bpe") == GPT2_FILES["vocab.bpe"][1]


def test_every_shipped_file_is_package_data():
    """A wheel (not only an editable install) carries the files: pyproject's package-data globs name each one."""
    import tomllib

    package = ASSETS_DIR.parents[1]  # src/formers
    pyproject = tomllib.loads((package.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["formers"]
    listed = {p for pattern in globs for p in package.glob(pattern)}
    shipped = {p for p in ASSETS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert shipped and shipped <= listed, sorted(str(p.relative_to(package)) for p in shipped - listed)
