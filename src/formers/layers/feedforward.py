"""Position-wise feed-forward network FFN(x) = W2 act(W1 x + b1) + b2 (Vaswani et al. 2017, eq. 2)."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "swish": F.silu,
}


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    """Activation function by name: one of ``ACTIVATIONS``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


class FeedForward(nn.Module):
    """Two linear layers with an activation between them.

    Args:
        embed_dim: input/output width D.
        ffn_dim: hidden width.
        activation: name from ``ACTIVATIONS``.
        dropout: dropout on the hidden activations (the "activation dropout" of fairseq/Marian).
        bias: whether the linears have biases.
    """

    def __init__(self, embed_dim: int, ffn_dim: int, activation: str = "relu", dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.activation = activation
        self._act = get_activation(activation)
        self.fc1 = nn.Linear(embed_dim, ffn_dim, bias=bias)
        self.fc2 = nn.Linear(ffn_dim, embed_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.fc2(self.dropout(self._act(self.fc1(x))))
