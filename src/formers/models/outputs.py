"""Output containers shared by the model families: every task model returns an object with ``.logits``."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from formers.layers.embedding import OutputProjection
from formers.layers.linear_cross_entropy import (
    check_loss_arguments,
    logits_cross_entropy,
)
from formers.layers.validation import check_ids_shape


@dataclass
class Seq2SeqOutput:
    """Encoder-decoder output.

    Attributes:
        logits: next-token scores (B, T, V); None when the model was asked for the loss only
            (``model(src, tgt, targets=y)``: the chunked loss never makes the logits).
        encoder_hidden_state: encoder output (B, S, D).
        loss: mean (label-smoothed) cross-entropy over the counted target positions (float32 scalar) when
            ``targets`` were given, else None.
        nll: the same without label smoothing, detached (a metric), when ``targets`` were given, else None.
    """

    logits: Tensor | None
    encoder_hidden_state: Tensor
    loss: Tensor | None = None
    nll: Tensor | None = None


def check_seq2seq_inputs(
    src_ids: Tensor, tgt_ids: Tensor, max_seq_len: int, targets: Tensor | None, label_smoothing: float,
    return_logits: bool | None,
) -> None:
    """Checks an encoder-decoder's (B, S) source and (B, T) target ids and its loss arguments."""
    check_ids_shape(src_ids, "src_ids", max_seq_len)
    check_ids_shape(tgt_ids, "tgt_ids", max_seq_len)
    if tgt_ids.shape[0] != src_ids.shape[0]:
        raise ValueError(
            f"src_ids and tgt_ids must have the same batch size, got {src_ids.shape[0]} and {tgt_ids.shape[0]}"
        )
    check_loss_arguments(targets, tgt_ids, label_smoothing, return_logits)


def seq2seq_output(
    output: OutputProjection, hidden: Tensor, memory: Tensor, targets: Tensor | None, label_smoothing: float,
    return_logits: bool | None,
) -> Seq2SeqOutput:
    """The output of an encoder-decoder from its decoder states (B, T, D): the logits (B, T, V) unless only the
    loss is wanted (``targets`` given, ``return_logits`` not True: the chunked loss, no logits made), and the
    loss and nll given ``targets``."""
    if return_logits is False or (return_logits is None and targets is not None):
        loss, nll = output.cross_entropy(hidden, targets, label_smoothing=label_smoothing, return_nll=True)
        return Seq2SeqOutput(logits=None, encoder_hidden_state=memory, loss=loss, nll=nll)
    logits = output(hidden)  # (B, T, V)
    if targets is None:
        return Seq2SeqOutput(logits=logits, encoder_hidden_state=memory)
    loss, nll = logits_cross_entropy(logits, targets, label_smoothing=label_smoothing)
    return Seq2SeqOutput(logits=logits, encoder_hidden_state=memory, loss=loss, nll=nll)


@dataclass
class CausalLMOutput:
    """Decoder-only language-model output.

    Attributes:
        logits: next-token scores (B, T, V); position t scores the token at t + 1. None when the model was asked
            for the loss only (``model(ids, targets=y)``: the chunked loss never makes the logits).
        loss: mean next-token cross-entropy (float32 scalar) when ``targets`` were given, else None.
    """

    logits: Tensor | None
    loss: Tensor | None = None


@dataclass
class BertOutput:
    """Bidirectional encoder output.

    Attributes:
        last_hidden_state: token states of the last layer (B, T, D).
        pooled: pooler output for the first token (B, D).
    """

    last_hidden_state: Tensor
    pooled: Tensor


@dataclass
class MaskedLMOutput:
    """Masked-language-model output.

    Attributes:
        logits: vocabulary scores for every position (B, T, V).
    """

    logits: Tensor


@dataclass
class SequenceClassificationOutput:
    """Sequence classification output.

    Attributes:
        logits: class scores per sequence (B, num_labels).
    """

    logits: Tensor


@dataclass
class TokenClassificationOutput:
    """Token classification output.

    Attributes:
        logits: class scores per token (B, T, num_labels).
    """

    logits: Tensor


@dataclass
class ImageClassificationOutput:
    """Image classification output.

    Attributes:
        logits: class scores per image (B, num_classes).
    """

    logits: Tensor


@dataclass
class DetectionOutput:
    """Set-prediction detection output (DETR).

    Attributes:
        logits: class scores per query (B, Q, num_classes + 1); the last class is "no object".
        boxes: (B, Q, 4) normalised (cx, cy, w, h) in [0, 1], relative to each image's real (unpadded) size.
        aux_outputs: the same predictions from every decoder layer but the last, first layer first (for the
            auxiliary losses); empty for a single decoder layer.
        query_groups: G, the independent query groups of a Group DETR training pass (Q = G x num_queries, group
            after group, each a set prediction of its own); 1 otherwise.
    """

    logits: Tensor
    boxes: Tensor
    aux_outputs: list[DetectionOutput] = field(default_factory=list)
    query_groups: int = 1
