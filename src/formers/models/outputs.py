"""Output containers shared by the model families: every task model returns an object with ``.logits``."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Seq2SeqOutput:
    """Encoder-decoder output.

    Attributes:
        logits: next-token scores (B, T, V).
        encoder_hidden_state: encoder output (B, S, D).
    """

    logits: Tensor
    encoder_hidden_state: Tensor


@dataclass
class CausalLMOutput:
    """Decoder-only language-model output.

    Attributes:
        logits: next-token scores (B, T, V); position t scores the token at t + 1.
    """

    logits: Tensor
