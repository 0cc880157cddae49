"""Translation corpora: Multi30k (local copy or checksummed download) and an embedded English->Spanish Bible.

Multi30k task 1 (Elliott et al., 2016; https://github.com/multi30k/dataset): 29,000 train / 1,014 val
image-caption pairs in en/de/fr/cs, raw cased text. Files are looked up as ``{split}.{lang}.gz`` in
``data_dir``, else ``$FORMERS_DATA_DIR/multi30k``, else a ``shared/data/multi30k`` folder next to the
checkout; only then downloaded (into ``$FORMERS_DATA_DIR/multi30k`` or ``~/.cache/formers/multi30k``)
and verified against the SHA-256 sums below.

The Bible corpus (King James 1769 -> Reina-Valera 1909, both public domain) ships inside the package
as ``corpora/bible_en_es.tsv.gz``; :mod:`formers.data.corpora_build` documents how it was made.
"""

from __future__ import annotations

import os
from pathlib import Path

from formers.data.assets import unpack_asset
from formers.data.downloads import default_cache_dir, download, resolve_data_dir
from formers.data.parallel import ParallelText, open_text, read_parallel

# ----------------------------------------------------------------------------- Multi30k

MULTI30K_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{split}.{lang}.gz"
MULTI30K_LANGS = ("en", "de", "fr", "cs")
MULTI30K_SPLITS = ("train", "val")
MULTI30K_SIZES = {"train": 29_000, "val": 1_014}
# SHA-256 of the gzip files as distributed (computed from the project's offline copies).
MULTI30K_SHA256 = {
    "train.cs.gz": "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077",
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.cs.gz": "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
}


def load_multi30k(
    split: str, src_lang: str, tgt_lang: str, data_dir: str | os.PathLike[str] | None = None
) -> ParallelText:
    """Loads one Multi30k task-1 split as aligned sentence pairs.

    Args:
        split: ``"train"`` (29,000 pairs) or ``"val"`` (1,014 pairs).
        src_lang: one of ``en, de, fr, cs``.
        tgt_lang: another of ``en, de, fr, cs``.
        data_dir: folder holding ``{split}.{lang}.gz``; None searches ``$FORMERS_DATA_DIR/multi30k`` and
            a sibling ``shared/data/multi30k``, then downloads.

    Returns:
        The pairs in corpus order.

    Raises:
        ValueError: unknown split or language.
        FileNotFoundError: ``data_dir`` lacks the files.
        ConnectionError: the files are nowhere local and the download failed (e.g. offline).
    """
    if split not in MULTI30K_SPLITS:
        raise ValueError(f"split must be one of {MULTI30K_SPLITS}, got {split!r}")
    for name, lang in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
        if lang not in MULTI30K_LANGS:
            raise ValueError(f"{name} must be one of {MULTI30K_LANGS}, got {lang!r}")
    if src_lang == tgt_lang:
        raise ValueError(f"src_lang and tgt_lang must differ, got {src_lang!r} for both")
    files = [f"{split}.{src_lang}.gz", f"{split}.{tgt_lang}.gz"]
    folder = resolve_data_dir("multi30k", files, data_dir)
    if folder is None:
        folder = default_cache_dir() / "multi30k"
        for file, lang in zip(files, (src_lang, tgt_lang)):
            download(MULTI30K_URL.format(split=split, lang=lang), folder / file, MULTI30K_SHA256[file])
    return read_parallel(folder / files[0], folder / files[1])


# ----------------------------------------------------------------------------- Bible en->es

BIBLE_EN_ES_PATH = Path(__file__).resolve().parent / "corpora" / "bible_en_es.tsv.gz"
BIBLE_SPLITS = ("train", "valid", "test")
BIBLE_SPLIT_PERIOD = 50
BIBLE_SIZES = {"all": 30_295, "train": 28_974, "valid": 605, "test": 605}
"""Pairs per split with ``max_len_words=None`` ("all": verse pairs in the file)."""


def read_bible_en_es() -> list[tuple[str, str, str]]:
    """Returns every row of the embedded corpus as ``(reference, english, spanish)``, canonical order.

    ``reference`` is ``"Book.chapter.verse"`` with OSIS book names, e.g. ``"Gen.1.1"``.
    """
    rows = []
    with open_text(BIBLE_EN_ES_PATH) as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3:
                raise ValueError(f"{BIBLE_EN_ES_PATH} line {number}: expected 3 columns, got {len(fields)}")
            rows.append((fields[0], fields[1], fields[2]))
    return rows


def bible_split_of(position: int) -> str:
    """The split of the verse at 0-based ``position`` in the file, before duplicate removal (see below)."""
    slot = position % BIBLE_SPLIT_PERIOD
    return "valid" if slot == BIBLE_SPLIT_PERIOD - 2 else "test" if slot == BIBLE_SPLIT_PERIOD - 1 else "train"


def load_bible_en_es(split: str = "train", max_len_words: int | None = None) -> ParallelText:
    """Loads a fixed split of the embedded KJV -> Reina-Valera 1909 verse pairs (English source, Spanish target).

    Split rule (deterministic, no data needed beyond the file): of every 50 consecutive verses in
    canonical order, the 49th goes to ``valid`` and the 50th to ``test``; the rest are ``train``
    candidates. The Bible repeats many verses word for word ("And the LORD spake unto Moses, saying,"),
    so a training pair whose English or Spanish text also occurs in valid or test is removed, which
    keeps the evaluation sentences unseen. Sizes: train 28,974, valid 605, test 605 (of 30,295 pairs;
    111 train candidates removed as duplicates).

    Args:
        split: ``"train"``, ``"valid"`` or ``"test"``.
        max_len_words: if given, drop pairs with more than this many whitespace-separated words on
            either side (counted in ``num_skipped``); applied after the split, so it never moves a verse
            between splits.

    Returns:
        The pairs in canonical order.

    Raises:
        ValueError: unknown split or a non-positive ``max_len_words``.
    """
    if split not in BIBLE_SPLITS:
        raise ValueError(f"split must be one of {BIBLE_SPLITS}, got {split!r}")
    if max_len_words is not None and (not isinstance(max_len_words, int) or max_len_words < 1):
        raise ValueError(f"max_len_words must be None or a positive int, got {max_len_words!r}")
    rows = read_bible_en_es()
    held_out = [(en, es) for i, (_, en, es) in enumerate(rows) if bible_split_of(i) != "train"]
    held_en = {en for en, _ in held_out}
    held_es = {es for _, es in held_out}
    pairs = []
    for i, (_, en, es) in enumerate(rows):
        if bible_split_of(i) != split:
            continue
        if split == "train" and (en in held_en or es in held_es):
            continue
        pairs.append((en, es))
    skipped = 0
    if max_len_words is not None:
        kept = [(en, es) for en, es in pairs if len(en.split()) <= max_len_words and len(es.split()) <= max_len_words]
        skipped = len(pairs) - len(kept)
        pairs = kept
    return ParallelText([en for en, _ in pairs], [es for _, es in pairs], skipped)


# ----------------------------------------------------------------------------- tinyshakespeare

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def tinyshakespeare_path(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of tinyshakespeare's ``input.txt`` (1,115,394 characters): a local copy if any, else the package's own.

    Searched in ``data_dir``, ``$FORMERS_DATA_DIR/tinyshakespeare`` and a sibling ``shared/data/tinyshakespeare``;
    else the copy shipped in the package is unpacked into the cache (:func:`formers.data.assets.unpack_asset`), and
    only an installation without it downloads the file (checked against its sha256).
    """
    folder = resolve_data_dir("tinyshakespeare", ["input.txt"], data_dir)
    if folder is not None:
        return folder / "input.txt"
    shipped = unpack_asset("tinyshakespeare/input.txt")
    if shipped is not None:
        return shipped
    folder = default_cache_dir() / "tinyshakespeare"
    download(TINYSHAKESPEARE_URL, folder / "input.txt", TINYSHAKESPEARE_SHA256)
    return folder / "input.txt"


def load_corpus_split(
    corpus: str, split: str, src_lang: str | None, tgt_lang: str | None, data_dir: str | None = None
) -> tuple[list[str], list[str]]:
    """Sources and references of a built-in corpus split."""
    if corpus == "multi30k":
        if not src_lang or not tgt_lang:
            raise ValueError(f"multi30k needs src_lang and tgt_lang, got {src_lang!r} and {tgt_lang!r}")
        pairs = load_multi30k(split, src_lang, tgt_lang, data_dir=data_dir)
    elif corpus == "bible-en-es":
        pairs = load_bible_en_es(split=split)
        if (src_lang, tgt_lang) == ("es", "en"):
            return list(pairs.tgt), list(pairs.src)
        if (src_lang, tgt_lang) not in (("en", "es"), (None, None)):
            raise ValueError(f"bible-en-es pairs English and Spanish, got src_lang={src_lang!r} tgt_lang={tgt_lang!r}")
    else:
        raise ValueError(f"corpus must be 'multi30k' or 'bible-en-es', got {corpus!r}")
    return list(pairs.src), list(pairs.tgt)
