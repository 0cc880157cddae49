"""The Huffman tree of hierarchical softmax, built as the word2vec C tool's ``CreateBinaryTree`` builds it.

Words sorted by descending count are leaves ``0 .. V-1``; the ``V - 1`` inner nodes are created in order, each
merging the two smallest of the remaining leaves (taken from the end of the sorted list) and inner nodes (taken in
creation order): the two-queue construction, linear after sorting. The second node picked is the ``1`` child.
Inner node ``V + a`` is row ``a`` of the output table; the root is row ``V - 2``.

A word's path lists, from the root down, the inner nodes passed (``points``) and the branch taken at each
(``codes``): word2vec's ``vocab[w].point`` / ``vocab[w].code``. Frequent words get short codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HuffmanTree:
    """Paths of every word through the tree, padded to the longest.

    Attributes:
        points: ``(V, L)`` int64 inner-node rows from the root down (``0`` past a word's length).
        codes: ``(V, L)`` uint8 branch taken at each of them (``0`` past a word's length).
        lengths: ``(V,)`` int64 code length of each word.
    """

    points: np.ndarray
    codes: np.ndarray
    lengths: np.ndarray

    @property
    def max_length(self) -> int:
        """``L``, the longest code."""
        return self.points.shape[1]


def huffman_tree(counts: np.ndarray) -> HuffmanTree:
    """Builds the Huffman tree of word counts sorted in descending order.

    Args:
        counts: ``(V,)`` positive counts, most frequent first (a :class:`Vocabulary`'s ``counts``), ``V >= 2``.

    Returns:
        The :class:`HuffmanTree`; its mean code length weighted by ``counts`` is minimal (a Huffman code).

    Raises:
        ValueError: fewer than 2 words, counts not positive or not sorted in descending order.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or counts.shape[0] < 2:
        raise ValueError(f"counts must be a 1-D array of at least 2 words, got shape {counts.shape}")
    if (counts < 1).any():
        raise ValueError(f"counts must be >= 1, got a minimum of {int(counts.min())}")
    if (np.diff(counts) > 0).any():
        raise ValueError("counts must be sorted in descending order (most frequent word first)")
    vocab_size = counts.shape[0]
    weight = counts.tolist() + [0] * (vocab_size - 1)  # leaves, then inner nodes as they are created
    parent = [0] * (2 * vocab_size - 1)
    branch = [0] * (2 * vocab_size - 1)
    leaf, inner = vocab_size - 1, vocab_size  # next smallest leaf (walking down), next inner node (walking up)
    for a in range(vocab_size - 1):
        picked = []
        for _ in range(2):
            if leaf >= 0 and (inner >= vocab_size + a or weight[leaf] < weight[inner]):
                picked.append(leaf)
                leaf -= 1
            else:
                picked.append(inner)
                inner += 1
        node = vocab_size + a
        weight[node] = weight[picked[0]] + weight[picked[1]]
        parent[picked[0]] = parent[picked[1]] = node
        branch[picked[1]] = 1
    return _paths(np.array(parent, dtype=np.int64), np.array(branch, dtype=np.uint8), vocab_size)


def _paths(parent: np.ndarray, branch: np.ndarray, vocab_size: int) -> HuffmanTree:
    """Walks every leaf up to the root at once (one numpy step per tree level) and reverses the paths."""
    root = 2 * vocab_size - 2
    up_nodes, up_codes = [], []  # level k: the k-th node above each leaf, and the branch taken into the node below
    node = np.arange(vocab_size, dtype=np.int64)
    active = np.ones(vocab_size, dtype=bool)
    while active.any():
        up_codes.append(np.where(active, branch[node], 0))
        node = np.where(active, parent[node], root)
        up_nodes.append(node - vocab_size)  # inner node row
        active = node != root
    up_points = np.stack(up_nodes, axis=1)  # (V, L) from the leaf's parent up to the root
    up_code = np.stack(up_codes, axis=1)  # (V, L)
    lengths = (np.cumsum(up_points == vocab_size - 2, axis=1) == 0).sum(axis=1) + 1  # levels up to the first root
    max_len = int(lengths.max())
    # reverse each row's first `length` entries: position j from the root is entry length - 1 - j from the leaf
    j = np.arange(max_len)[None, :]
    src = np.clip(lengths[:, None] - 1 - j, 0, None)  # (V, L)
    valid = j < lengths[:, None]
    points = np.where(valid, np.take_along_axis(up_points, src, axis=1), 0)
    codes = np.where(valid, np.take_along_axis(up_code, src, axis=1), 0).astype(np.uint8)
    return HuffmanTree(points.astype(np.int64), codes, lengths.astype(np.int64))
