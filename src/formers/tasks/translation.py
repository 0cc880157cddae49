"""Translation task: teacher-forced label-smoothed cross-entropy for training, BLEU for evaluation.

The model computes the loss (``model(..., targets=, label_smoothing=)``: the encoder-decoder families take their
output projection and the loss together, in chunks of positions, so the (B * T, V) float32 logits never exist); it
equals :func:`formers.tasks.losses.label_smoothed_nll` of the logits.

Batches come from ``formers.data.parallel.collate_translation``: ``src_ids``, ``src_padding_mask``, ``tgt_in``
(= [bos] + target), ``tgt_out`` (= target + [eos]), ``tgt_padding_mask``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from formers.data.tokenizers.base import Tokenizer
from formers.devices import move_to_device
from formers.inference.translate import Translator
from formers.layers import IGNORE_INDEX
from formers.layers.validation import value_checks
from formers.tasks.metrics import corpus_bleu
from formers.training.task import StepOutput


def loss_targets(batch: dict[str, Tensor]) -> Tensor:
    """The (B, T) targets of a batch: ``tgt_out``, with ``IGNORE_INDEX`` at the padded positions."""
    return batch["tgt_out"].masked_fill(~batch["tgt_padding_mask"], IGNORE_INDEX)


@dataclass
class TranslationEvalSet:
    """Held-out data: collated batches for loss/perplexity plus raw sources and references for BLEU."""

    batches: list[dict[str, Tensor]]
    sources: list[str]
    references: list[str]


class TranslationTask:
    """Trains an encoder-decoder model on parallel text and evaluates it with sacreBLEU.

    Args:
        tokenizer: the joint subword tokenizer (detokenizes hypotheses for BLEU).
        label_smoothing: epsilon (0.1 in the paper).
        beam_size: decoding beam for evaluation (1 = greedy).
        alpha: length penalty for beam search.
        max_bleu_sentences: evaluate BLEU on at most this many sentences (None = all).
    """

    capturable = True  # training_step: device work only (train.cuda_graphs may replay it as a CUDA graph)

    def __init__(
        self,
        tokenizer: Tokenizer,
        label_smoothing: float = 0.1,
        beam_size: int = 1,
        alpha: float = 0.6,
        max_bleu_sentences: int | None = None,
    ) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.tokenizer = tokenizer
        self.label_smoothing = label_smoothing
        self.beam_size = beam_size
        self.alpha = alpha
        self.max_bleu_sentences = max_bleu_sentences

    def training_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        """Teacher-forced loss on one batch from ``collate_translation`` (valid by construction: no value checks)."""
        targets = loss_targets(batch)
        with value_checks(False):
            # the model computes the loss from its hidden states in chunks: the (B * T, V) logits never exist
            out = model(batch["src_ids"], batch["tgt_in"], batch["src_padding_mask"], batch["tgt_padding_mask"],
                        targets=targets, label_smoothing=self.label_smoothing)
        # counted on the device (read with the logged losses): a CUDA graph of this step counts each replay's batch
        return StepOutput(loss=out.loss, metrics={"nll": out.nll}, num_tokens=(targets != IGNORE_INDEX).sum())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, eval_set: TranslationEvalSet) -> dict[str, float]:
        """Token-level NLL / perplexity on the batches and corpus sacreBLEU of decoded sources."""
        device = next(model.parameters()).device
        total_nll, total_tokens = 0.0, 0
        for batch in eval_set.batches:
            batch = move_to_device(batch, device)
            out = model(batch["src_ids"], batch["tgt_in"], batch["src_padding_mask"], batch["tgt_padding_mask"],
                        targets=loss_targets(batch))
            n = int(batch["tgt_padding_mask"].sum())
            total_nll += float(out.nll) * n
            total_tokens += n
        metrics: dict[str, float] = {}
        if total_tokens:
            metrics["val_nll"] = total_nll / total_tokens
            metrics["val_ppl"] = math.exp(min(metrics["val_nll"], 50.0))
        n = len(eval_set.sources) if self.max_bleu_sentences is None else self.max_bleu_sentences
        if n > 0 and eval_set.sources:
            translator = Translator(model, self.tokenizer, beam_size=self.beam_size, alpha=self.alpha)
            hyps = translator.translate(eval_set.sources[:n])
            metrics["bleu"] = corpus_bleu(hyps, eval_set.references[:n])
        return metrics
