"""Fine-tuning BERT on the user's labelled data: sequence classification and token classification.

Data are CSV / TSV / JSONL files (:mod:`formers.data.labelled`) with configurable text (and text-pair) and
label columns, or a built-in real dataset (``spam-assassin``, :mod:`formers.data.spam_assassin`, written to CSV
and read back through the same reader). The label vocabulary is saved as ``labels.json`` in every checkpoint,
next to the WordPiece ``vocab.txt``, so a checkpoint directory is all that prediction needs.

Fine-tuning starts from a pretrained directory read by ``formers.from_pretrained`` (a ``bert-pretrain`` run, a
formers BERT checkpoint, or a Hugging Face BERT directory such as all-MiniLM-L6-v2): its encoder (and, for
sequence classification, its pooler when it has one) is copied into a fresh ``BertForSequenceClassification``
/ ``BertForTokenClassification`` whose classifier starts from BERT's init.

Metrics:

- sequence classification: accuracy and macro F1 (the unweighted mean of per-class F1);
- token classification: labels sit on the first sub-token of each word (-100 on the others and on
  ``[CLS]``/``[SEP]``, as the paper does for NER), and the prediction of a word is that of its first sub-token;
  token accuracy and macro F1 over words, and, when every tag is ``O`` or ``B-``/``I-`` prefixed, entity
  (span) precision/recall/F1 as conlleval computes them. Words cut by ``max_len`` are not scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.devices import move_to_device
from formers.layers.cross_entropy import IGNORE_INDEX
from formers.layers.validation import value_checks
from formers.tasks.metrics import accuracy_and_macro_f1, entity_f1, is_bio
from formers.training.task import StepOutput


def _logits(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    with value_checks(False):
        return model(batch["input_ids"], batch["token_type_ids"], batch["padding_mask"]).logits


class SequenceClassificationTask:
    """Cross-entropy over one label per sequence; evaluation: accuracy, macro F1 and mean loss.

    Args:
        num_labels: classes.
    """
    capturable = True  # training_step: device work only (train.cuda_graphs may replay it as a CUDA graph)

    def __init__(self, num_labels: int) -> None:
        self.num_labels = num_labels

    def training_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        """Mean cross-entropy of the batch's sequences."""
        loss = F.cross_entropy(_logits(model, batch).float(), batch["labels"])
        return StepOutput(loss=loss, num_tokens=batch["input_ids"].numel())

    @torch.no_grad()
    def predict(self, model: nn.Module, batches) -> tuple[list[int], list[int], float]:
        """(predictions, targets, mean loss) over ``batches``."""
        device = next(model.parameters()).device
        preds, golds, loss_sum = [], [], 0.0
        for batch in batches:
            batch = move_to_device(batch, device)
            logits = _logits(model, batch).float()
            loss_sum += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            preds += logits.argmax(-1).tolist()
            golds += batch["labels"].tolist()
        return preds, golds, loss_sum / max(len(golds), 1)

    def evaluate(self, model: nn.Module, eval_batches) -> dict[str, float]:
        """Accuracy, macro F1 and mean cross-entropy on ``eval_batches``."""
        preds, golds, loss = self.predict(model, eval_batches)
        return {**accuracy_and_macro_f1(preds, golds, self.num_labels), "loss": loss}


class TokenClassificationTask:
    """Cross-entropy over first sub-tokens; evaluation: token accuracy, macro F1 and (BIO tags) entity F1.

    Args:
        labels: the tag names, id ``i`` being ``labels[i]``.
    """
    capturable = True  # training_step: device work only (train.cuda_graphs may replay it as a CUDA graph)

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.bio = is_bio(self.labels)

    def training_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        """Mean cross-entropy over the labelled (first) sub-tokens of the batch."""
        logits = _logits(model, batch)  # (B, T, C)
        labels = batch["labels"]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)
        return StepOutput(loss=loss, num_tokens=batch["input_ids"].numel())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, eval_batches) -> dict[str, float]:
        """Token accuracy and macro F1 over scored words; entity precision/recall/F1 for BIO tag sets."""
        device = next(model.parameters()).device
        pred_rows, gold_rows = [], []
        for batch in eval_batches:
            batch = move_to_device(batch, device)
            pred = _logits(model, batch).argmax(-1)  # (B, T)
            scored = batch["labels"] != IGNORE_INDEX
            for row in range(pred.shape[0]):
                pred_rows.append(pred[row][scored[row]].tolist())
                gold_rows.append(batch["labels"][row][scored[row]].tolist())
        flat_pred = [t for r in pred_rows for t in r]
        flat_gold = [t for r in gold_rows for t in r]
        metrics = accuracy_and_macro_f1(flat_pred, flat_gold, len(self.labels))
        if self.bio:
            names = self.labels
            metrics.update(
                entity_f1([[names[t] for t in r] for r in pred_rows], [[names[t] for t in r] for r in gold_rows])
            )
        return metrics
