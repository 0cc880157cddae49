"""Tests for formers.data.corpora: the embedded Bible corpus and Multi30k lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from formers.data.corpora import (
    BIBLE_EN_ES_PATH,
    BIBLE_SIZES,
    MULTI30K_SHA256,
    MULTI30K_URL,
    load_bible_en_es,
    load_multi30k,
    read_bible_en_es,
)
from formers.data.downloads import sha256_of

MULTI30K = Path(__file__).resolve().parents[3] / "shared" / "data" / "multi30k"
needs_multi30k = pytest.mark.skipif(
    not MULTI30K.is_dir(),
    reason=f"no Multi30k copy at {MULTI30K} (research-use licence: not shipped); put train/val.{{en,de}}.gz from "
    f"{MULTI30K_URL.format(split='train', lang='en').rsplit('/', 1)[0]}/ there",
)


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, str, str]]:
    return read_bible_en_es()


def test_bible_file_is_deterministic_gzip() -> None:
    header = BIBLE_EN_ES_PATH.read_bytes()[:10]
    assert header[:2] == b"\x1f\x8b" and header[4:8] == b"\0\0\0\0", "gzip mtime must be 0"


def test_bible_rows_and_alignment(rows: list[tuple[str, str, str]]) -> None:
    assert len(rows) == BIBLE_SIZES["all"]
    assert len({ref for ref, _, _ in rows}) == len(rows)
    by_ref = {ref: (en, es) for ref, en, es in rows}
    assert by_ref["Gen.1.1"] == ("In the beginning God created the heaven and the earth.",
                                 "EN el principio crió Dios los cielos y la tierra.")
    assert by_ref["John.3.16"][1].startswith("Porque de tal manera amó Dios al mundo")
    assert by_ref["Rev.22.21"][1] == "La gracia de nuestro Señor Jesucristo sea con todos vosotros. Amén."
    # Chapters where Reina-Valera's verse numbering shifts were dropped, not left misaligned.
    assert not any(ref.startswith(("Num.13.", "Jonah.2.", "Judg.14.", "1Kgs.22.")) for ref in by_ref)
    for _, en, es in rows:
        assert en and es and "¶" not in en and "<" not in en + es and "  " not in en + es and "\\" not in en


def test_bible_splits_sizes_and_disjoint(rows: list[tuple[str, str, str]]) -> None:
    splits = {name: load_bible_en_es(name) for name in ("train", "valid", "test")}
    for name, text in splits.items():
        assert len(text) == BIBLE_SIZES[name], name
    train_text = set(splits["train"].src) | set(splits["train"].tgt)
    for held in ("valid", "test"):
        assert not train_text & (set(splits[held].src) | set(splits[held].tgt)), f"{held} text leaks into train"
    assert not set(splits["valid"]) & set(splits["test"])
    assert sum(map(len, splits.values())) <= len(rows)


def test_bible_max_len_words() -> None:
    text = load_bible_en_es("valid", max_len_words=20)
    assert len(text) + text.num_skipped == BIBLE_SIZES["valid"] and text.num_skipped > 0
    assert all(len(s.split()) <= 20 and len(t.split()) <= 20 for s, t in text)
    with pytest.raises(ValueError, match="split must be one of .* got 'dev'"):
        load_bible_en_es("dev")
    with pytest.raises(ValueError, match="max_len_words must be None or a positive int, got 0"):
        load_bible_en_es("train", max_len_words=0)


@needs_multi30k
def test_multi30k_local_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, digest in MULTI30K_SHA256.items():
        assert sha256_of(MULTI30K / name) == digest, name
    val = load_multi30k("val", "en", "de", data_dir=MULTI30K)
    assert len(val) == 1014
    monkeypatch.setenv("FORMERS_DATA_DIR", str(MULTI30K.parent))
    monkeypatch.chdir(tmp_path)
    train = load_multi30k("train", "de", "en")
    assert len(train) == 29000 and train.src[0].startswith("Zwei junge weiße Männer")


def test_multi30k_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of .* got 'test'"):
        load_multi30k("test", "en", "de")
    with pytest.raises(ValueError, match="tgt_lang must be one of .* got 'xx'"):
        load_multi30k("val", "en", "xx")
    with pytest.raises(FileNotFoundError, match="lacks the multi30k files"):
        load_multi30k("val", "en", "de", data_dir=tmp_path)
