"""Text classification with a fine-tuned checkpoint: its labels (``labels.json``) and WordPiece vocabulary beside it.

A ``text_classification`` recipe (``formers train bert-finetune-spam-cpu``, or your own CSV/JSONL data) saves the
classifier, its vocabulary and its label names in every checkpoint. :func:`classify_texts` reads them back, checks
that the vocabulary is the model's and that every text fits the model before any of it runs, and returns each text's
labels ranked by probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from formers.data.labelled import LabelVocab, collate, encode_texts
from formers.data.tokenizers.wordpiece import WordPieceTokenizer, check_vocab_matches
from formers.devices import resolve_device
from formers.hub import from_pretrained, resolve_checkpoint_dir
from formers.models.bert import BertForSequenceClassification


def check_texts(texts: Sequence[str], pairs: Sequence[str] | None = None) -> None:
    """Raises a ``ValueError`` naming the first text that is not a non-empty str (and pairs of another length)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise ValueError(f"texts must be a non-empty list of str, got {texts!r}")
    if pairs is not None and (isinstance(pairs, str) or len(pairs) != len(texts)):
        raise ValueError(f"pairs must be a list of one text per text ({len(texts)}), got {pairs!r}")
    for name, group in (("text", texts), ("pair", pairs or [])):
        for i, text in enumerate(group):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{name} {i} is empty; every {name} needs some text, got {text!r}")


class TextClassifier:
    """A fine-tuned sequence classifier with its tokenizer and label names.

    Args:
        model: a :class:`formers.models.bert.BertForSequenceClassification`.
        tokenizer: its WordPiece tokenizer.
        labels: the label names, in class-id order.
    """

    def __init__(self, model: nn.Module, tokenizer: WordPieceTokenizer, labels: LabelVocab) -> None:
        if not isinstance(model, BertForSequenceClassification):
            raise ValueError(
                f"the model is a {type(model).__name__} (family {getattr(model, 'family', '?')!r}); classify-text "
                "needs a BERT sequence classifier (a text_classification run)"
            )
        if model.config.num_labels != len(labels):
            raise ValueError(
                f"the model has num_labels={model.config.num_labels}, but labels.json names {len(labels)} labels"
            )
        check_vocab_matches(tokenizer, model)
        self.model, self.tokenizer, self.labels = model.eval(), tokenizer, labels

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "auto") -> TextClassifier:
        """Loads a run or checkpoint directory written by a ``text_classification`` recipe."""
        directory = resolve_checkpoint_dir(directory)
        labels = LabelVocab.load(directory)
        tokenizer = WordPieceTokenizer.from_directory(directory)
        return cls(from_pretrained(directory, device=resolve_device(device)), tokenizer, labels)

    @torch.inference_mode()
    def __call__(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, top_k: int | None = None,
        truncate: bool = False, batch_size: int = 32,
    ) -> list[list[tuple[str, float]]]:
        """The labels of each text (and its pair), most likely first, with their probabilities.

        Args:
            texts: N texts.
            pairs: N second texts for sentence-pair classifiers, or None.
            top_k: labels per text (default: all).
            truncate: cut texts longer than the model's ``max_seq_len`` tokens instead of refusing them.
            batch_size: texts per forward pass.

        Raises:
            ValueError: no texts, an empty text, a text longer than ``max_seq_len`` tokens without ``truncate``
                (checked for every text before the model runs), ``pairs`` of another length, bad ``top_k``.
        """
        check_texts(texts, pairs)
        k = len(self.labels) if top_k is None else top_k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        limit = self.model.config.max_seq_len
        rows = encode_texts(self.tokenizer, texts, pairs, [0] * len(texts), 1 << 30)  # full lengths, to check
        too_long = [(i, len(r.input_ids)) for i, r in enumerate(rows) if len(r.input_ids) > limit]
        if too_long and not truncate:
            i, n = too_long[0]
            raise ValueError(
                f"{len(too_long)} text(s) are longer than the model's max_seq_len={limit} tokens (text {i}: {n} "
                "tokens); shorten them or pass truncate (--truncate) to cut them"
            )
        if too_long:
            rows = encode_texts(self.tokenizer, texts, pairs, [0] * len(texts), limit)
        device = next(self.model.parameters()).device
        probs = []
        for start in range(0, len(rows), batch_size):
            batch = collate(rows[start : start + batch_size], self.tokenizer.pad_id)
            logits = self.model(batch["input_ids"].to(device), batch["token_type_ids"].to(device),
                                batch["padding_mask"].to(device)).logits  # (B, num_labels)
            probs.append(logits.float().softmax(dim=-1).cpu())
        values, indices = torch.cat(probs).topk(min(k, len(self.labels)), dim=-1)  # (N, k)
        return [
            [(self.labels.labels[i], float(v)) for v, i in zip(row_v.tolist(), row_i.tolist(), strict=True)]
            for row_v, row_i in zip(values, indices, strict=True)
        ]


def classify_texts(
    directory: str | Path, texts: Sequence[str], top_k: int | None = None, device: str = "auto",
    truncate: bool = False, pairs: Sequence[str] | None = None,
) -> list[list[tuple[str, float]]]:
    """The labels of each text under the classifier in ``directory`` (see :meth:`TextClassifier.__call__`)."""
    check_texts(texts, pairs)  # before the model loads
    return TextClassifier.from_pretrained(directory, device)(texts, pairs, top_k, truncate)
