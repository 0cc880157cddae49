"""Causal language modelling: next-token cross-entropy for training, held-out loss for evaluation.

Batches come from ``formers.data.lm``: ``input_ids`` (B, T) and ``labels`` (B, T), the same windows shifted by
one token. Recipes name a text file (or a built-in corpus); it is tokenized once into memory-mapped token files
in the run directory (``formers prepare`` does the same by hand).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from formers.devices import move_to_device
from formers.layers import IGNORE_INDEX
from formers.layers.validation import value_checks
from formers.training.task import StepOutput


class CausalLMTask:
    """Trains a decoder-only model to predict the next token; evaluates mean loss and perplexity."""

    capturable = True  # training_step: device work only (train.cuda_graphs may replay it as a CUDA graph)

    def training_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        """Mean next-token cross-entropy over the batch's B * T positions (windows are valid by construction)."""
        with value_checks(False):
            # float32, computed with the output projection in chunks of rows: the (B * T, V) logits never exist
            loss = model(batch["input_ids"], targets=batch["labels"]).loss
        return StepOutput(loss=loss, num_tokens=batch["input_ids"].numel())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, eval_batches) -> dict[str, float]:
        """Mean loss over every position of the fixed evaluation windows (``val_loss``) and its exponential."""
        device = next(model.parameters()).device
        total, count = torch.zeros((), device=device, dtype=torch.float64), 0
        for batch in eval_batches:
            batch = move_to_device(batch, device)
            with value_checks(False):
                loss = model(batch["input_ids"], targets=batch["labels"]).loss  # chunked: no (B, T, V) logits
            counted = int((batch["labels"] != IGNORE_INDEX).sum())
            if counted:  # an all-ignored batch has a NaN mean and adds nothing
                total += loss.double() * counted
                count += counted
        val_loss = float(total) / max(count, 1)
        return {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0))}
