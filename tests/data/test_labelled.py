from __future__ import annotations

import json

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
