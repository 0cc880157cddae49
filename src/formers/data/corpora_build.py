"""Builds the embedded English->Spanish Bible corpus from the SWORD modules (run once, by maintainers).

Source texts (both public domain), as packaged by Debian (``sword-text-kjv``, ``sword-text-sparv``)
and read with PyPI ``pysword``:

* ``engKJV2006eb``: King James Version (1769 text),
* ``spaRV1909eb``: Reina-Valera 1909.

Both modules use the KJV versification (31,102 verse slots), and most verses align by reference.
Where the Hebrew verse numbering differs, though, Reina-Valera leaves a slot empty (e.g. Num 12:16,
1 Sam 23:29, Jonah 1:17) and carries that verse's text into the next chapter, shifting it by one
verse (Spanish Num 13:1 is English Num 12:16), or merges two verses at a chapter end (2 Cor 13:12-13).
Such chapters are dropped: every chapter holding a verse empty on either side after cleaning, and
the chapter after it in the same book (checked by hand: the chapter after that is aligned again).
Elsewhere Reina-Valera splits verses at other points (Judg 14:18-20, 1 Kgs 22:43-53, 1 Chr 21),
shifting a run of verses by one with no empty slot. These are found with a word-translation table
learnt from the corpus itself (for each English content word, the Spanish word with the highest Dice
co-occurrence over verses): a verse is flagged when the neighbouring Spanish verse holds clearly
more of its translations than its own (a gain of at least 0.5 of at least 4 anchor words), and its
chapter is dropped. See :func:`misaligned_chapters`. In all, 30 chapters go (18 empty verses plus 789
others, 807 of 31,102 verses; some dropped chapters may be false alarms); 30,295 pairs remain.

Cleaning: footnotes (``<note>...</note>``, KJV only) are removed with their content; every other
OSIS tag is removed keeping its text (Strong's ``<w>`` words, italic ``<transChange>`` additions,
psalm titles, which the Spanish text also carries inside verse 1); HTML entities are unescaped; the
pilcrow ``¶`` and stray USFM markers (``\\nd``) are removed; whitespace is collapsed to single spaces.

Usage::

    python -m formers.data.corpora_build src/formers/data/corpora/bible_en_es.tsv.gz
"""

from __future__ import annotations

import argparse
import gzip
import html
import io
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SWORD_PATH = "/usr/share/sword"
ENGLISH_MODULE = "engKJV2006eb"
SPANISH_MODULE = "spaRV1909eb"

_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_USFM = re.compile(r"\\\+?[a-z]+\d*\*?")  # stray USFM character markers, e.g. \nd in a few KJV verses
_SPACE = re.compile(r"\s+")


def clean_verse(raw: str) -> str:
    """Turns one verse of OSIS markup into plain text (see the module docstring for the rules)."""
    text = _NOTE.sub(" ", raw)
    text = _TAG.sub(" ", text)
    text = _USFM.sub(" ", text)
    text = html.unescape(text).replace("¶", " ")
    text = _SPACE.sub(" ", text).strip()
    # A tag removed between a word and its punctuation ("<w>LORD</w>," or "¿<w>Con</w>") leaves a space
    # the source never has (no raw verse holds " ," or "¿ "), so it is taken out again.
    text = re.sub(r" ([,.;:!?)\]])", r"\1", text)
    return re.sub(r"([(\[¿¡]) ", r"\1", text)


@dataclass(frozen=True)
class BuildReport:
    """What :func:`build_bible_en_es` wrote.

    Attributes:
        path: the written file.
        num_pairs: verse pairs kept.
        num_empty: verses empty on one side after cleaning (dropped).
        num_misaligned: other verses dropped with their chapter (see the module docstring).
        dropped_chapters: the dropped chapters as ``"Book.chapter"``.
    """

    path: Path
    num_pairs: int
    num_empty: int
    num_misaligned: int
    dropped_chapters: tuple[str, ...]


_WORD = re.compile(r"\w+")


def misaligned_chapters(
    verses: list[tuple[str, str, str]], min_gain: float = 0.5, min_anchors: int = 4, min_dice: float = 0.3
) -> set[str]:
    """Finds chapters where some verse matches a neighbouring verse of the other language better than its own.

    Args:
        verses: ``(reference, english, spanish)`` rows in canonical order.
        min_gain: flag a verse when a neighbour's anchor coverage exceeds its own by this much.
        min_anchors: only judge verses with at least this many English anchor words.
        min_dice: an English word's best Spanish co-occurrence partner must reach this Dice score
            to serve as an anchor.

    Returns:
        Chapters (``"Book.chapter"``) holding at least one flagged verse.
    """
    en = [sorted({w.lower() for w in _WORD.findall(e)}) for _, e, _ in verses]
    es = [sorted({w.lower() for w in _WORD.findall(t)}) for _, _, t in verses]
    freq_en = Counter(w for words in en for w in words)
    freq_es = Counter(w for words in es for w in words)
    # The most frequent words (function words) co-occur with everything; keep content words only.
    stop_en = {w for w, _ in freq_en.most_common(60)}
    stop_es = {w for w, _ in freq_es.most_common(60)}
    pairs: Counter[tuple[str, str]] = Counter()
    for a, b in zip(en, es):
        content_es = [w for w in b if w not in stop_es and freq_es[w] >= 3]
        for x in a:
            if x not in stop_en and freq_en[x] >= 3:
                pairs.update((x, y) for y in content_es)
    best: dict[str, tuple[float, str]] = {}
    for (x, y), count in sorted(pairs.items()):
        dice = 2 * count / (freq_en[x] + freq_es[y])
        if dice > best.get(x, (0.0, ""))[0]:
            best[x] = (dice, y)
    anchor = {x: y for x, (dice, y) in best.items() if dice >= min_dice}

    def coverage(i: int, j: int) -> float:
        words = [w for w in en[i] if w in anchor]
        return sum(anchor[w] in es[j] for w in words) / len(words)

    chapters = [ref.rsplit(".", 1)[0] for ref, _, _ in verses]
    flagged = set()
    for i in range(len(verses)):
        if sum(w in anchor for w in en[i]) < min_anchors:
            continue
        own = coverage(i, i)
        for j in (i - 1, i + 1):
            if 0 <= j < len(verses) and chapters[j] == chapters[i] and coverage(i, j) - own >= min_gain:
                flagged.add(chapters[i])
    return flagged


def _verses(module: str, sword_path: str) -> tuple[list[str], list[str]]:
    """Returns (references "Book.chapter.verse", raw verse texts) of a Bible module in canonical order."""
    from pysword.modules import SwordModules  # build-time dependency only

    modules = SwordModules(sword_path)
    modules.parse_modules()
    bible = modules.get_bible_from_module(module)
    refs = []
    for testament in ("ot", "nt"):
        for book in bible.get_structure().get_books().get(testament, []):
            for chapter, num_verses in enumerate(book.chapter_lengths, start=1):
                refs.extend(f"{book.osis_name}.{chapter}.{verse}" for verse in range(1, num_verses + 1))
    texts = list(bible.get_iter(clean=False))
    if len(texts) != len(refs):
        raise ValueError(f"module {module}: structure lists {len(refs)} verses but {len(texts)} texts came back")
    return refs, texts


def build_bible_en_es(out: str | os.PathLike[str], sword_path: str = SWORD_PATH) -> BuildReport:
    """Extracts, aligns and cleans KJV/RV1909 verse pairs and writes them as a deterministic gzip TSV.

    Each line is ``Book.chapter.verse<TAB>english<TAB>spanish``, in canonical order; the gzip header
    carries no name or timestamp (``mtime=0``), so rebuilding gives identical bytes.

    Args:
        out: destination ``.tsv.gz`` path.
        sword_path: folder of installed SWORD modules.

    Returns:
        The path, the counts of kept and dropped verses, and the dropped chapters.
    """
    en_refs, en_raw = _verses(ENGLISH_MODULE, sword_path)
    es_refs, es_raw = _verses(SPANISH_MODULE, sword_path)
    es_by_ref = dict(zip(es_refs, es_raw))
    verses = [(ref, clean_verse(raw), clean_verse(es_by_ref[ref])) for ref, raw in zip(en_refs, en_raw) if ref in es_by_ref]
    chapter_order = list(dict.fromkeys(ref.rsplit(".", 1)[0] for ref, _, _ in verses))
    broken = {ref.rsplit(".", 1)[0] for ref, en, es in verses if not en or not es}
    dropped_chapters = set(broken)
    for chapter, following in zip(chapter_order, chapter_order[1:]):
        if chapter in broken and chapter.split(".")[0] == following.split(".")[0]:
            dropped_chapters.add(following)  # the shifted Spanish text lands in the next chapter
    remaining = [(ref, en, es) for ref, en, es in verses if ref.rsplit(".", 1)[0] not in dropped_chapters]
    dropped_chapters |= misaligned_chapters(remaining)
    lines: list[str] = []
    num_empty = num_misaligned = 0
    for ref, en, es in verses:
        if not en or not es:
            num_empty += 1
        elif ref.rsplit(".", 1)[0] in dropped_chapters:
            num_misaligned += 1
        else:
            if "\t" in en + es or "\n" in en + es:
                raise ValueError(f"verse {ref} still holds a tab or newline after cleaning")
            lines.append(f"{ref}\t{en}\t{es}\n")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(lines).encode("utf-8")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(payload)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, out)
    ordered = tuple(c for c in chapter_order if c in dropped_chapters)
    return BuildReport(out, len(lines), num_empty, num_misaligned, ordered)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m formers.data.corpora_build OUT``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="destination .tsv.gz")
    parser.add_argument("--sword-path", default=SWORD_PATH, help="folder of installed SWORD modules")
    args = parser.parse_args(argv)
    report = build_bible_en_es(args.out, args.sword_path)
    print(
        f"wrote {report.num_pairs} verse pairs to {report.path}; dropped {report.num_empty} verses empty on one side "
        f"and {report.num_misaligned} more in {len(report.dropped_chapters)} misaligned chapters: "
        + " ".join(report.dropped_chapters)
    )


if __name__ == "__main__":
    main()
