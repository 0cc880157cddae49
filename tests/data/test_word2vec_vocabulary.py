from __future__ import annotations

import gzip
import heapq

import numpy as np
import pytest

from formers.data.word2vec import (
    Vocabulary,
    build_vocabulary,
    count_words,
    huffman_tree,
    read_sentences,
)


def test_read_sentences_streams_plain_and_gzip_files_with_both_tokenizers(tmp_path):
    (tmp_path / "a.txt").write_text("The cat, the DOG.\n\n  \nA cat\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write("dog's day\n")
    paths = [tmp_path / "a.txt", tmp_path / "b.txt.gz"]
    assert list(read_sentences(paths, "whitespace")) == [["The", "cat,", "the", "DOG."], ["A", "cat"], ["dog's", "day"]]
    assert list(read_sentences(paths, "lowercase_letters")) == [
        ["the", "cat", "the", "dog"], ["a", "cat"], ["dog", "s", "day"]
    ]


def test_read_sentences_rejects_unknown_tokenizer_missing_file_and_bad_utf8(tmp_path):
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        list(read_sentences(tmp_path / "x", "bpe"))
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        list(read_sentences(tmp_path / "nope.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: not UTF-8"):
        list(read_sentences(bad))


def test_vocabulary_keeps_min_count_sorted_by_count_then_first_occurrence():
    sentences = [["b", "a", "c"], ["a", "b", "d"], ["a", "c", "e"], ["b"]]
    vocab = build_vocabulary(sentences, min_count=2)
    assert vocab.words == ["b", "a", "c"]  # b and a tie at 3: b was seen first
    assert vocab.counts.tolist() == [3, 3, 2]
    assert vocab.total_words == 10 and vocab.num_sentences == 4
    assert vocab.retained_words == 8 and "d" not in vocab and vocab.index["c"] == 2


def test_max_vocab_size_prunes_like_gensim():
    gensim_utils = pytest.importorskip("gensim.utils")
    rng = np.random.default_rng(0)
    sentences = [[f"w{int(x)}" for x in rng.zipf(1.3, size=20)] for _ in range(300)]
    counts, total, num = count_words(sentences, max_vocab_size=40)
    # gensim's scan_vocab loop, verbatim in effect
    expected: dict[str, int] = {}
    min_reduce = 1
    for sentence in sentences:
        for word in sentence:
            expected[word] = expected.get(word, 0) + 1
        if len(expected) > 40:
            gensim_utils.prune_vocab(expected, min_reduce)
            min_reduce += 1
    assert counts == expected and total == 6000 and num == 300


def test_vocabulary_errors_name_the_problem():
    with pytest.raises(ValueError, match="holds no words"):
        build_vocabulary([[], []], min_count=1, source="empty.txt")
    with pytest.raises(ValueError, match=r"no word of tiny.txt occurs min_count=5 .*'a', occurs 2 times"):
        build_vocabulary([["a", "b", "a"]], min_count=5, source="tiny.txt")
    with pytest.raises(ValueError, match="min_count must be an int >= 1, got 0"):
        build_vocabulary([["a"]], min_count=0)
    with pytest.raises(ValueError, match="max_vocab_size must be >= 1 or None, got 0"):
        build_vocabulary([["a"]], min_count=1, max_vocab_size=0)
    with pytest.raises(ValueError, match="words must be unique, got 'x' twice"):
        Vocabulary(["x", "y", "x"], np.array([3, 2, 1]))


def test_keep_probabilities_follow_the_c_tool_formula():
    vocab = Vocabulary(["the", "of", "rare"], np.array([100_000, 10_000, 3]))
    p = vocab.keep_probabilities(1e-3)
    t = 1e-3 * 110_003
    expected = [min(1.0, (np.sqrt(c / t) + 1) * t / c) for c in (100_000, 10_000, 3)]
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    assert p[2] == 1.0 and p[0] < p[1] < 1.0
    assert (vocab.keep_probabilities(0) == 1).all()
    with pytest.raises(ValueError, match="sample must be >= 0"):
        vocab.keep_probabilities(-1.0)


def test_vocabulary_file_round_trip_and_errors(tmp_path):
    vocab = Vocabulary(["é", "b"], np.array([5, 3]))
    vocab.save(tmp_path / "vocab.txt")
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8") == "é 5\nb 3\n"
    loaded = Vocabulary.load(tmp_path / "vocab.txt")
    assert loaded.words == ["é", "b"] and loaded.counts.tolist() == [5, 3]
    (tmp_path / "bad.txt").write_text("a 1\nb two\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 'word count', got 'b two'"):
        Vocabulary.load(tmp_path / "bad.txt")
    with pytest.raises(ValueError, match="cannot save word 'a b'"):
        Vocabulary(["a b"], np.array([1])).save(tmp_path / "x.txt")


def _optimal_cost(counts: list[int]) -> int:
    heap = list(counts)
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    return cost


@pytest.mark.parametrize("size", [2, 3, 17, 500])
def test_huffman_codes_are_optimal_prefix_free_paths_from_the_root(size):
    rng = np.random.default_rng(size)
    counts = np.sort(rng.integers(1, 10_000, size=size))[::-1]
    tree = huffman_tree(counts)
    lengths = tree.lengths
    assert int((counts * lengths).sum()) == _optimal_cost(counts.tolist())  # a Huffman code
    codes = ["".join(str(c) for c in tree.codes[w, : lengths[w]]) for w in range(size)]
    assert len(set(codes)) == size
    assert not any(a != b and b.startswith(a) for a in codes for b in codes)  # prefix-free
    assert abs(sum(2.0 ** -len(c) for c in codes) - 1.0) < 1e-12  # a full binary tree (Kraft equality)
    assert (tree.points[:, 0] == size - 2).all()  # every path starts at the root, inner row V - 2
    # the same prefix always passes the same inner node: points are a function of the code prefix
    node_of_prefix: dict[str, int] = {}
    for w, code in enumerate(codes):
        for depth in range(len(code)):
            node = int(tree.points[w, depth])
            assert 0 <= node < size - 1
            assert node_of_prefix.setdefault(code[:depth], node) == node
    assert (tree.codes[np.arange(tree.max_length)[None, :] >= lengths[:, None]] == 0).all()


def test_huffman_tree_matches_the_c_tool_on_a_worked_example():
    # CreateBinaryTree by hand on counts [5, 3, 2, 1]: a=0 merges words 3 and 2 into node 4 (weight 3; word 2, picked
    # second, is the 1-branch); a=1: word 1 (3) is not smaller than node 4 (3), so node 4 then word 1 make node 5 (6);
    # a=2: word 0 (5) then node 5 make the root 6. Inner rows are node - V: root 2, node 5 -> 1, node 4 -> 0.
    tree = huffman_tree(np.array([5, 3, 2, 1]))
    assert tree.lengths.tolist() == [1, 2, 3, 3]
    assert tree.codes[0, :1].tolist() == [0]
    assert tree.codes[1, :2].tolist() == [1, 1] and tree.points[1, :2].tolist() == [2, 1]
    assert tree.codes[2, :3].tolist() == [1, 0, 1] and tree.points[2, :3].tolist() == [2, 1, 0]
    assert tree.codes[3, :3].tolist() == [1, 0, 0] and tree.points[3, :3].tolist() == [2, 1, 0]


def test_huffman_tree_rejects_bad_counts():
    with pytest.raises(ValueError, match="at least 2 words"):
        huffman_tree(np.array([3]))
    with pytest.raises(ValueError, match="descending"):
        huffman_tree(np.array([1, 3]))
    with pytest.raises(ValueError, match=">= 1"):
        huffman_tree(np.array([3, 0]))
