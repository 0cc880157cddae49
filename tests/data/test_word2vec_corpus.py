from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from formers.data.word2vec import (
    EncodedCorpus,
    Word2VecLoader,
    chunk_seed,
    prepare_corpus,
)

TEXT = "the cat sat on the mat\nthe dog sat\nzebra\n\nthe cat ran on the mat the end\n"


@pytest.fixture
def corpus(tmp_path) -> EncodedCorpus:
    (tmp_path / "c.txt").write_text(TEXT, encoding="utf-8")
    prepare_corpus(tmp_path / "c.txt", tmp_path / "prepared", min_count=2)
    return EncodedCorpus(tmp_path / "prepared")


def test_prepare_writes_kept_ids_per_sentence_dropping_unknown_words(corpus):
    vocab = corpus.vocab
    assert vocab.words == ["the", "cat", "sat", "on", "mat"]
    assert vocab.counts.tolist() == [6, 2, 2, 2, 2]
    assert corpus.meta.total_words == 18 and corpus.meta.kept_words == 14
    decoded = [vocab.words[i] for i in corpus.tokens]
    assert decoded == "the cat sat on the mat the sat the cat on the mat the".split()
    assert corpus.sentence_ends.tolist() == [6, 8, 14]  # "zebra" alone leaves no sentence
    meta = json.loads((corpus.folder / "meta.json").read_text())
    assert meta["tokenizer"] == "whitespace" and meta["min_count"] == 2


def test_long_sentences_are_cut_into_pieces(tmp_path):
    (tmp_path / "c.txt").write_text("a b " * 10 + "\n", encoding="utf-8")
    meta = prepare_corpus(tmp_path / "c.txt", tmp_path / "p", min_count=1, max_sentence_len=6)
    corpus = EncodedCorpus(tmp_path / "p")
    assert meta.num_sentences == 4 and corpus.sentence_ends.tolist() == [6, 12, 18, 20]


def test_chunks_hold_whole_sentences_unless_one_is_too_long(corpus):
    assert corpus.chunk_bounds(8).tolist() == [0, 8, 14]
    assert corpus.chunk_bounds(100).tolist() == [0, 14]
    assert corpus.chunk_bounds(4).tolist() == [0, 4, 8, 12, 14]  # 6-word sentences are cut at 4
    words, lengths = corpus.chunk(0, 8)
    assert words.tolist() == corpus.tokens[:8].tolist() and lengths.tolist() == [6, 2]
    words, lengths = corpus.chunk(4, 12)
    assert lengths.tolist() == [2, 2, 4]


def test_loader_is_deterministic_resumable_and_reports_progress(corpus):
    loader = Word2VecLoader(corpus, words_per_batch=8, seed=3, epochs=2)
    assert len(loader) == 2
    loader.set_epoch(1)
    batches = list(loader)
    assert [b["progress"] for b in batches] == [0.5, 0.5 + 8 / 14 / 2]
    assert [b["progress_end"] for b in batches] == [0.5 + 8 / 14 / 2, 1.0]
    assert batches[0]["seed"] == chunk_seed(3, 1, 0) != chunk_seed(3, 0, 0)
    assert [b["sentence_lengths"].tolist() for b in batches] == [[6, 2], [6]]
    assert len(list(loader)) == 2  # a finished epoch iterates again
    loader.set_epoch(1)
    first = next(iter(loader))
    state = loader.state_dict()
    assert state == {"position": 1}
    resumed = Word2VecLoader(corpus, words_per_batch=8, seed=3, epochs=2)
    resumed.set_epoch(1)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == 1 and torch.equal(rest[0]["words"], batches[1]["words"]) and rest[0]["seed"] == batches[1]["seed"]
    assert torch.equal(first["words"], batches[0]["words"])


def test_bad_corpora_raise_naming_the_file(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"empty.txt holds no words"):
        prepare_corpus(tmp_path / "empty.txt", tmp_path / "p1")
    (tmp_path / "rare.txt").write_text("a b c\nd e\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no word of .*rare.txt occurs min_count=5 times"):
        prepare_corpus(tmp_path / "rare.txt", tmp_path / "p2")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        prepare_corpus(tmp_path / "missing.txt", tmp_path / "p3")
    with pytest.raises(FileNotFoundError, match="holds no meta.json"):
        EncodedCorpus(tmp_path)


def test_a_damaged_prepared_folder_is_detected(corpus):
    with open(corpus.folder / "tokens.bin", "ab") as fh:
        fh.write(np.zeros(3, dtype=np.uint32).tobytes())
    with pytest.raises(ValueError, match=r"tokens.bin holds 17 entries, .*meta.json says 14"):
        EncodedCorpus(corpus.folder)


def test_loader_rejects_bad_arguments(corpus):
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        Word2VecLoader(corpus, seed=-1)
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        Word2VecLoader(corpus, epochs=0)
    with pytest.raises(ValueError, match="words_per_batch must be >= 1"):
        Word2VecLoader(corpus, words_per_batch=0)
