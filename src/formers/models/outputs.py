"""Output containers shared by the model families: every task model returns an object with ``.logits``."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


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
    """

    logits: Tensor
    boxes: Tensor
    aux_outputs: list[DetectionOutput] = field(default_factory=list)
