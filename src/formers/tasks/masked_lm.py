"""Masked language modelling (BERT pre-training): MLM (+ optional next-sentence) loss; held-out MLM accuracy.

Batches come from :mod:`formers.data.mlm`: ``input_ids`` (masked), ``token_type_ids``, ``padding_mask``,
``labels`` (the original id at the ~15% selected positions, -100 elsewhere) and, with next-sentence
prediction, ``next_sentence_labels`` (0 = IsNext, 1 = NotNext). Evaluation scores held-out documents masked
once with a fixed seed, so every evaluation of every run sees the same masked positions: masked-token accuracy,
mean cross-entropy over masked tokens and its exponential, the MLM perplexity (and NSP accuracy).

Recipes read a built-in public-domain corpus (``bible-en``: the King James Bible embedded in the package, one
document per chapter, one sentence per verse) or a UTF-8 text file (documents separated by blank lines, one
sentence per line); every ``heldout_every``-th document is held out. A WordPiece vocabulary is trained on the
training documents and saved, with the weights, in every checkpoint (``vocab.txt``), so a run directory is a
complete model directory for fine-tuning (``formers.from_pretrained`` + ``WordPieceTokenizer.from_directory``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.devices import move_to_device
from formers.layers.cross_entropy import IGNORE_INDEX
from formers.layers.validation import value_checks
from formers.training.task import StepOutput


def _model_inputs(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    return batch["input_ids"], batch["token_type_ids"], batch["padding_mask"]


def _forward(model: nn.Module, batch: dict[str, Tensor]):
    """The model's output with MLM logits (N, V) for the N masked positions, in row-major order."""
    return model(*_model_inputs(batch), masked_positions=batch["labels"] != IGNORE_INDEX)


def masked_lm_loss(model: nn.Module, batch: dict[str, Tensor], all_positions: bool) -> tuple[Any, Tensor]:
    """The model's output and the mean cross-entropy over the batch's masked tokens: scored at the masked positions
    only (selected by a boolean index), or with ``all_positions`` at every position, the others ignored by the
    loss (fixed shapes, no host synchronisation; the same loss)."""
    labels = batch["labels"]
    with value_checks(False):
        if all_positions:
            out = model(*_model_inputs(batch))  # logits (B, T, V) at every position
            return out, F.cross_entropy(out.logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)
        out = _forward(model, batch)  # logits (N, V) at the N masked positions
        return out, F.cross_entropy(out.logits.float(), labels[labels != IGNORE_INDEX])


class MaskedLMTask:
    """Trains ``BertForMaskedLM`` / ``BertForPreTraining``: cross-entropy on masked tokens (+ next-sentence loss).

    Args:
        next_sentence_weight: weight of the next-sentence loss when batches carry ``next_sentence_labels`` and the
            model returns ``next_sentence_logits`` (the paper sums both losses: 1.0).
        all_positions: in training on a GPU, score every position and let the loss ignore the unmasked ones,
            instead of selecting the masked positions first (a boolean index, whose count the host must read): the
            same loss and gradients from a step with fixed shapes and no host synchronisation, which a Trainer can
            replay as a CUDA graph (``capturable``), for about 7x the prediction head's work. CPUs select.
    """
    def __init__(self, next_sentence_weight: float = 1.0, all_positions: bool = False) -> None:
        if next_sentence_weight < 0:
            raise ValueError(f"next_sentence_weight must be >= 0, got {next_sentence_weight}")
        self.next_sentence_weight = next_sentence_weight
        self.all_positions = all_positions

    @property
    def capturable(self) -> bool:
        """Whether ``train.cuda_graphs`` may replay the step: with ``all_positions`` it does device work only."""
        return self.all_positions

    def training_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        """Mean cross-entropy over the batch's masked tokens, plus the weighted next-sentence loss."""
        out, mlm = masked_lm_loss(model, batch, self.all_positions and batch["labels"].device.type != "cpu")
        metrics: dict[str, Tensor | float] = {"mlm_loss": mlm.detach()}
        loss = mlm
        nsp_logits = getattr(out, "next_sentence_logits", None)
        if nsp_logits is not None and "next_sentence_labels" in batch:
            nsp = F.cross_entropy(nsp_logits.float(), batch["next_sentence_labels"])
            metrics["nsp_loss"] = nsp.detach()
            loss = loss + self.next_sentence_weight * nsp
        # real tokens (not the padding), counted on the device: no host read per step
        return StepOutput(loss=loss, metrics=metrics, num_tokens=batch["padding_mask"].sum())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, eval_batches) -> dict[str, float]:
        """Masked-token accuracy, mean masked-token loss, perplexity (= exp loss) and NSP accuracy if present."""
        device = next(model.parameters()).device
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.long)
        nsp_correct = torch.zeros((), device=device, dtype=torch.long)
        count, nsp_count = 0, 0
        for batch in eval_batches:
            batch = move_to_device(batch, device)
            with value_checks(False):
                out = _forward(model, batch)
            selected = batch["labels"] != IGNORE_INDEX  # (B, T)
            logits = out.logits.float()  # (N, V)
            targets = batch["labels"][selected]  # (N,)
            loss_sum += F.cross_entropy(logits, targets, reduction="sum").double()
            correct += (logits.argmax(-1) == targets).sum()
            count += int(selected.sum())
            nsp_logits = getattr(out, "next_sentence_logits", None)
            if nsp_logits is not None and "next_sentence_labels" in batch:
                nsp_correct += (nsp_logits.argmax(-1) == batch["next_sentence_labels"]).sum()
                nsp_count += batch["next_sentence_labels"].numel()
        if count == 0:
            raise ValueError("the evaluation batches hold no masked token")
        loss = float(loss_sum) / count
        metrics = {"mlm_accuracy": int(correct) / count, "mlm_loss": loss, "perplexity": math.exp(min(loss, 50.0))}
        if nsp_count:
            metrics["nsp_accuracy"] = int(nsp_correct) / nsp_count
        return metrics
