from __future__ import annotations

import json

import numpy as np
import pytest

from formers.data.labelled import (
    LabelVocab,
    file_format_of,
    read_labelled,
    read_token_labelled,
)


def test_csv_tsv_and_jsonl_read_the_same_records(tmp_path):
    rows = [("good, very good", "pos", "a"), ('say "hi"\nthere', "neg", "b"), ("ok", "1", "c")]
    (tmp_path / "d.csv").write_text(
        'sentence,y,other\n"good, very good",pos,a\n"say ""hi""\nthere",neg,b\nok,1,c\n', encoding="utf-8"
    )
    (tmp_path / "d.tsv").write_text(
        "sentence\ty\tother\ngood, very good\tpos\ta\n\"say \"\"hi\"\"\nthere\"\tneg\tb\nok\t1\tc\n", encoding="utf-8"
    )
    (tmp_path / "d.jsonl").write_text(
        "\n".join(json.dumps({"sentence": t, "y": y if y != "1" else 1, "other": o}) for t, y, o in rows) + "\n\n",
        encoding="utf-8",
    )
    for name in ("d.csv", "d.tsv", "d.jsonl"):
        data = read_labelled(tmp_path / name, text_column="sentence", label_column="y", text_pair_column="other")
        assert data.texts == [r[0] for r in rows], name
        assert data.labels == ["pos", "neg", "1"], name  # labels are strings whatever the format
        assert data.pairs == ["a", "b", "c"], name
    assert read_labelled(tmp_path / "d.csv", "sentence", "y").pairs is None
    assert len(read_labelled(tmp_path / "d.csv", "sentence", "y").subset([2, 0])) == 2


def test_bad_files_raise_clear_errors(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\nhello,pos\n", encoding="utf-8")
    with pytest.raises(KeyError, match="no column 'sentence'.*\\['label', 'text'\\]"):
        read_labelled(tmp_path / "d.csv", text_column="sentence")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_labelled(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="suffix"):
        file_format_of(tmp_path / "d.txt")
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: expected a JSON object"):
        read_labelled(tmp_path / "bad.jsonl")
    (tmp_path / "empty.csv").write_text("text,label\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no records"):
        read_labelled(tmp_path / "empty.csv")


def test_token_records_from_lists_and_strings(tmp_path):
    (tmp_path / "t.jsonl").write_text(
        json.dumps({"tokens": ["EU", "rejects", "German", "call"], "tags": ["B-ORG", "O", "B-MISC", "O"]}) + "\n",
        encoding="utf-8",
    )
    (tmp_path / "t.tsv").write_text("tokens\ttags\nEU rejects German call\tB-ORG O B-MISC O\n", encoding="utf-8")
    for name in ("t.jsonl", "t.tsv"):
        data = read_token_labelled(tmp_path / name)
        assert data.words == [["EU", "rejects", "German", "call"]] and data.tags == [["B-ORG", "O", "B-MISC", "O"]]
    (tmp_path / "bad.tsv").write_text("tokens\ttags\nEU rejects\tB-ORG\n", encoding="utf-8")
    with pytest.raises(ValueError, match="2 words but 1 tags"):
        read_token_labelled(tmp_path / "bad.tsv")


def test_label_vocab_is_sorted_and_round_trips(tmp_path):
    vocab = LabelVocab.from_data(["spam", "ham", "spam"])
    assert vocab.labels == ["ham", "spam"] and vocab.encode(["spam", "ham"]) == [1, 0]
    vocab.save(tmp_path)
    assert LabelVocab.load(tmp_path).labels == ["ham", "spam"]
    with pytest.raises(ValueError, match="unknown label 'eggs'"):
        vocab.id("eggs")
    with pytest.raises(FileNotFoundError, match="labels.json"):
        LabelVocab.load(tmp_path / "nowhere")


def test_bucketed_classification_batches_keep_every_token_and_label():
    from formers.data.labelled import ClassificationLoader, EncodedExample

    rng = np.random.default_rng(0)
    rows = []
    for i in range(50):
        n = int(rng.integers(3, 41))
        ids = rng.integers(5, 99, n).tolist()
        rows.append(EncodedExample(ids, [0] * n, i % 3) if i % 2 else EncodedExample(ids, [1] * n, [i % 3] * n))
    for level, examples in (("sequence", rows[1::2]), ("token", rows[0::2])):
        loader = ClassificationLoader(examples, 4, pad_id=0, seed=1, pad_multiple=16, max_len=40)
        seen = []
        for batch in loader:
            t = batch["input_ids"].shape[1]
            assert t in (16, 32, 40), (level, t)
            for row in range(len(batch["input_ids"])):
                n = int(batch["padding_mask"][row].sum())
                assert batch["padding_mask"][row, :n].all() and (batch["input_ids"][row, n:] == 0).all()
                label = batch["labels"][row].tolist()
                seen.append((batch["input_ids"][row, :n].tolist(), batch["token_type_ids"][row, :n].tolist(),
                             label[:n] if level == "token" else label))
        assert sorted(map(str, seen)) == sorted(str((e.input_ids, e.token_type_ids, e.label)) for e in examples)
    with pytest.raises(ValueError, match="pad_multiple must be a positive int, got 0"):
        list(ClassificationLoader(rows[1::2], 4, pad_id=0, pad_multiple=0))
