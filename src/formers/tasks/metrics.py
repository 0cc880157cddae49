"""Evaluation metrics of the tasks: sacreBLEU for translation, accuracy / macro F1 and entity F1 for classification."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sacrebleu


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """sacreBLEU (13a tokenization, detokenized inputs) of hypotheses against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses for {len(references)} references")
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def accuracy_and_macro_f1(predictions: Sequence[int], targets: Sequence[int], num_labels: int) -> dict[str, float]:
    """Accuracy and macro F1 (classes absent from both predictions and targets are left out of the mean)."""
    pred = np.asarray(predictions, dtype=np.int64)
    gold = np.asarray(targets, dtype=np.int64)
    if pred.shape != gold.shape or pred.size == 0:
        raise ValueError(f"need as many predictions as targets (at least 1), got {pred.size} and {gold.size}")
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(confusion, (gold, pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(num_labels), where=present)
    return {"accuracy": float(tp.sum() / gold.size), "macro_f1": float(f1[present].mean())}


def is_bio(labels: Sequence[str]) -> bool:
    """Whether every tag is ``O`` or starts with ``B-`` / ``I-`` (an IOB/IOB2 entity scheme)."""
    return all(t == "O" or t.startswith(("B-", "I-")) for t in labels)


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entities ``(type, start, end)`` of a BIO tag sequence, as conlleval reads it (an ``I-`` after ``O`` or after
    another type starts an entity)."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, this = tag.partition("-")
        ends = prefix in ("O", "B") or (prefix == "I" and this != kind)
        if start is not None and ends:
            spans.add((kind, start, i))
            start, kind = None, None
        if prefix == "B" or (prefix == "I" and start is None):
            start, kind = i, this
    return spans


def entity_f1(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 over sentences (exact span and type match)."""
    tp = n_pred = n_gold = 0
    for p, g in zip(predicted, gold, strict=True):
        ps, gs = entity_spans(p), entity_spans(g)
        tp += len(ps & gs)
        n_pred += len(ps)
        n_gold += len(gs)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"entity_precision": precision, "entity_recall": recall, "entity_f1": f1}
