from __future__ import annotations

import numpy as np
import pytest
import torch

from formers.inference.word_vectors import UnknownWordError, WordVectors

keyed = pytest.importorskip("gensim.models.keyedvectors")


def _vectors(num: int = 300, dim: int = 12, seed: int = 0) -> tuple[list[str], np.ndarray]:
    words = [f"w{i}" for i in range(num)]
    words[5], words[9] = "Paris", "paris"  # two casings: case-insensitive lookups take the more frequent (first)
    return words, np.random.default_rng(seed).standard_normal((num, dim)).astype(np.float32)


@pytest.fixture
def pair() -> tuple[WordVectors, object]:
    words, vectors = _vectors()
    kv = keyed.KeyedVectors(vectors.shape[1])
    kv.add_vectors(words, vectors)
    return WordVectors(words, vectors), kv


def _same_ranking(ours, theirs):
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=2e-6)


def test_queries_equal_gensims(pair):
    wv, kv = pair
    _same_ranking(wv.most_similar("w3", topn=7), kv.most_similar("w3", topn=7))
    _same_ranking(wv.most_similar(["w1", "w2"], ["w3"], topn=10), kv.most_similar(["w1", "w2"], ["w3"], topn=10))
    _same_ranking(wv.most_similar(negative=["w4"], topn=5), kv.most_similar(negative=["w4"], topn=5))
    _same_ranking(wv.most_similar("w3", topn=5, restrict_vocab=50), kv.most_similar("w3", topn=5, restrict_vocab=50))
    _same_ranking(wv.analogy("w1", "w2", "w3", topn=4), kv.most_similar(positive=["w2", "w3"], negative=["w1"], topn=4))
    assert wv.similarity("w1", "w7") == pytest.approx(float(kv.similarity("w1", "w7")), abs=1e-6)
    for group in (["w1", "w2", "w3", "w4"], ["Paris", "w10", "w11"], ["w20", "w21", "w22", "w23", "w24"]):
        assert wv.doesnt_match(group) == kv.doesnt_match(group)
    assert torch.equal(wv["w8"], torch.tensor(kv["w8"]))


def test_unknown_words_raise_naming_the_word(pair):
    wv, _ = pair
    with pytest.raises(UnknownWordError, match=r"word 'nope' is not in the vocabulary \(300 words\)"):
        wv.most_similar("nope")
    with pytest.raises(KeyError):  # also a KeyError, like a mapping
        wv["PARIS"]
    with pytest.raises(ValueError, match="did you mean 'w1'"):  # and a ValueError, with a case hint
        wv.similarity("W1", "w2")
    with pytest.raises(UnknownWordError, match="'zzz'"):
        wv.doesnt_match(["w1", "zzz", "w2"])
    with pytest.raises(ValueError, match="at least one positive or negative word"):
        wv.most_similar()
    with pytest.raises(ValueError, match="at least 2 words"):
        wv.doesnt_match(["w1"])
    with pytest.raises(TypeError, match="word must be a str, got int"):
        wv.similarity(3, "w1")


def _analogy_file(path, words: list[str], rng: np.random.Generator) -> None:
    lines = []
    for section in ("capital-common-countries", "gram1-adjective-to-adverb"):
        lines.append(f": {section}")
        for _ in range(150):
            a, b, c, d = rng.choice(words, 4, replace=False)
            lines.append(f"{a} {b} {c} {d}")
        lines.append("w1 w2 w3 unknownword")  # skipped: a word outside the vocabulary
        lines.append("PARIS w2 w3 w4")  # case-insensitive: PARIS is Paris
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_analogy_and_pair_evaluations_equal_gensims(tmp_path):
    # low-dimensional vectors make many analogies come out right, so the counts compare something
    words, vectors = _vectors(num=60, dim=2, seed=3)
    kv = keyed.KeyedVectors(2)
    kv.add_vectors(words, vectors)
    wv = WordVectors(words, vectors)
    rng = np.random.default_rng(1)
    _analogy_file(tmp_path / "q.txt", words, rng)
    for restrict in (300_000, 40):
        ours = wv.evaluate_analogies(tmp_path / "q.txt", restrict_vocab=restrict)
        score, sections = kv.evaluate_word_analogies(str(tmp_path / "q.txt"), restrict_vocab=restrict)
        assert [(s.name, s.correct, s.total) for s in ours.sections] == [
            (s["section"], len(s["correct"]), len(s["correct"]) + len(s["incorrect"])) for s in sections[:-1]
        ]
        assert ours.accuracy == pytest.approx(score)
        assert ours.questions == 304 and ours.skipped == 304 - ours.total
        if restrict == 300_000:
            assert ours.correct >= 5 and ours.skipped == 2
    lines = ["# comment", "# another"] + [
        f"{a}\t{b}\t{rng.uniform(0, 10):.2f}" for a, b in (rng.choice(words, 2, replace=False) for _ in range(80))
    ] + ["w1\tunknownword\t5.0", "PARIS\tw3\t7.5", "w4\tw6\t7.5"]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ours = wv.evaluate_pairs(tmp_path / "pairs.tsv")
    pearson, spearman, oov = kv.evaluate_word_pairs(str(tmp_path / "pairs.tsv"))
    assert ours.spearman == pytest.approx(spearman.statistic, abs=1e-9)
    assert ours.pearson == pytest.approx(pearson.statistic, abs=1e-6)
    assert ours.pairs == 82 and ours.skipped == 1 and 100 * ours.oov_ratio == pytest.approx(oov)


def test_analogy_sections_split_semantic_from_syntactic(tmp_path):
    words = ["a", "b", "c", "d", "e", "f"]
    vectors = np.array([[1, 0], [0, 1], [2, 0], [0, 2], [5, 5], [-3, 1]], dtype=np.float32)
    wv = WordVectors(words, vectors)
    (tmp_path / "q.txt").write_text(": family\na b c d\n: gram2-opposite\nc d a b\na b e f\n", encoding="utf-8")
    result = wv.evaluate_analogies(tmp_path / "q.txt")
    assert [(s.name, s.total) for s in result.sections] == [("family", 1), ("gram2-opposite", 2)]
    assert result.semantic_accuracy == result.sections[0].accuracy
    assert result.syntactic_accuracy == result.sections[1].accuracy
    assert result.total == 3


def test_malformed_evaluation_files_name_file_and_line(tmp_path, pair):
    wv, _ = pair
    (tmp_path / "q.txt").write_text("w1 w2 w3 w4\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"q.txt:1: a question before the first ': section' line"):
        wv.evaluate_analogies(tmp_path / "q.txt")
    (tmp_path / "q.txt").write_text(": s\nw1 w2 w3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"q.txt:2: expected 4 words 'a b c expected', got 'w1 w2 w3'"):
        wv.evaluate_analogies(tmp_path / "q.txt")
    (tmp_path / "p.tsv").write_text("w1\tw2\tlots\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.tsv:1: expected 'word1\tword2\tscore'"):
        wv.evaluate_pairs(tmp_path / "p.tsv")
    (tmp_path / "p.tsv").write_text("x\ty\t1.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no pair has both words among the first 300000 words"):
        wv.evaluate_pairs(tmp_path / "p.tsv")


@pytest.mark.parametrize("fmt", ["formers", "text", "binary"])
def test_save_and_load_every_format(tmp_path, fmt):
    words, vectors = _vectors(num=20, dim=5)
    counts = np.arange(20, 0, -1)
    wv = WordVectors(words, vectors, counts if fmt == "formers" else None)
    path = tmp_path / {"formers": "vecs", "text": "vecs.txt", "binary": "vecs.bin"}[fmt]
    wv.save(path, format=fmt)
    loaded = WordVectors.load(path)
    assert loaded.words == words and torch.equal(loaded.vectors, wv.vectors)
    if fmt == "formers":
        assert loaded.counts.tolist() == counts.tolist()
        assert sorted(p.name for p in path.iterdir()) == ["vectors.safetensors", "vocab.txt"]
    with pytest.raises(ValueError, match="format must be one of"):
        wv.save(tmp_path / "x", format="pickle")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        WordVectors.load(tmp_path / "absent")
