"""Token embeddings (optionally scaled by sqrt(D)) and the output projection that may share their weight."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.layers.cross_entropy import IGNORE_INDEX
from formers.layers.linear_cross_entropy import (
    DEFAULT_CHUNK_SIZE,
    linear_cross_entropy,
    scores_cross_entropy,
)
from formers.layers.validation import check_token_ids


class TokenEmbedding(nn.Module):
    """Token lookup with range checking and optional sqrt(embed_dim) scaling (Vaswani et al. 2017, sec. 3.4).

    Args:
        vocab_size: V.
        embed_dim: D.
        padding_idx: id whose embedding starts at zero (its gradient is not masked; tying stays simple).
        scale: multiply embeddings by sqrt(D).
        name: argument name used in error messages (``"src_ids"``, ``"input_ids"``).
        num_rows: rows of the weight matrix, >= ``vocab_size`` (default ``vocab_size``). Extra rows are zero and
            never looked up; they round a tied output projection up to an aligned width (50257 -> 50304).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        padding_idx: int | None = None,
        scale: bool = False,
        name: str = "input_ids",
        num_rows: int | None = None,
    ):
        super().__init__()
        num_rows = vocab_size if num_rows is None else num_rows
        if num_rows < vocab_size:
            raise ValueError(f"num_rows ({num_rows}) must be >= vocab_size ({vocab_size})")
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.padding_idx = padding_idx
        self.scale = math.sqrt(embed_dim) if scale else 1.0
        self.name = name
        self.weight = nn.Parameter(torch.empty(num_rows, embed_dim))
        self.reset_parameters(std=embed_dim**-0.5)

    def reset_parameters(self, std: float) -> None:
        """N(0, std) for the vocabulary rows; zero for the padding id and the alignment rows."""
        with torch.no_grad():
            nn.init.normal_(self.weight, std=std)
            self.weight[self.vocab_size :].zero_()
            if self.padding_idx is not None:
                self.weight[self.padding_idx].zero_()

    def forward(self, ids: Tensor, name: str | None = None) -> Tensor:
        """Ids (B, T) -> embeddings (B, T, D); ``name`` overrides the argument name used in errors."""
        check_token_ids(ids, self.vocab_size, name or self.name)
        x = F.embedding(ids, self.weight)
        return x * self.scale if self.scale != 1.0 else x


class OutputProjection(nn.Module):
    """Hidden states -> vocabulary logits, with its own weight or one shared with a ``TokenEmbedding``.

    Args:
        embed_dim: D.
        vocab_size: V, the logits returned.
        bias: add a learned per-token bias.
        tied_to: embedding whose (rows, D) weight is shared; ``None`` gives the projection its own weight.
        num_rows: rows of the weight, >= V (default V; a tied embedding's rows). The GEMM runs over all rows, an
            aligned width (e.g. 50304 for GPT-2's 50257 tokens: faster kernels), and the logits are cut to V.
    """

    def __init__(
        self,
        embed_dim: int,
        vocab_size: int,
        bias: bool = False,
        tied_to: TokenEmbedding | None = None,
        num_rows: int | None = None,
    ):
        super().__init__()
        if tied_to is not None:
            num_rows = tied_to.weight.shape[0] if num_rows is None else num_rows
            if tied_to.weight.shape != (num_rows, embed_dim) or tied_to.vocab_size != vocab_size:
                raise ValueError(
                    f"cannot tie output ({vocab_size} tokens, {num_rows} rows, {embed_dim} wide) to embedding "
                    f"{tuple(tied_to.weight.shape)} of {tied_to.vocab_size} tokens"
                )
            self.weight = tied_to.weight
        else:
            num_rows = vocab_size if num_rows is None else num_rows
            if num_rows < vocab_size:
                raise ValueError(f"num_rows ({num_rows}) must be >= vocab_size ({vocab_size})")
            self.weight = nn.Parameter(torch.empty(num_rows, embed_dim))
            nn.init.normal_(self.weight, std=embed_dim**-0.5)
            with torch.no_grad():
                self.weight[vocab_size:].zero_()
        self.vocab_size = vocab_size
        self.bias = nn.Parameter(torch.zeros(num_rows)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) -> logits (B, T, V)."""
        logits = self.all_rows(x)  # (B, T, rows)
        return logits if logits.shape[-1] == self.vocab_size else logits[..., : self.vocab_size]

    def all_rows(self, x: Tensor) -> Tensor:
        """(B, T, D) -> scores of every weight row (B, T, rows), alignment rows included (for fused losses)."""
        return F.linear(x, self.weight, self.bias)

    def cross_entropy(
        self,
        x: Tensor,
        targets: Tensor,
        ignore_index: int = IGNORE_INDEX,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        return_nll: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Cross-entropy of the logits of ``x`` (..., D) against ``targets`` (...), never holding all the logits.

        Equals ``F.cross_entropy(self(x).flatten(0, -2).float(), targets.flatten(), ...)`` (``label_smoothing`` over
        the V real tokens, ``ignore_index`` rows left out of the mean); with ``return_nll``, also the unsmoothed
        loss (no gradient). See :func:`linear_cross_entropy`.

        Under ``torch.compile`` the logits and the loss are written plainly instead (:func:`scores_cross_entropy`):
        inductor fuses them so the float32 logits are never stored, and that graph was faster with a lower peak than
        the chunked Function (``benchmarks/linear_cross_entropy.py --compile``, GPT-2 sizes, bf16, one H200: 7.5 ms
        and 1.5 GB against 9.2 ms and 2.3 GB). Eager calls keep the chunks (18 ms and 9.3 GB unchunked).
        """
        if torch.compiler.is_compiling():
            return scores_cross_entropy(
                self.all_rows(x).flatten(0, -2), targets.flatten(), num_classes=self.vocab_size,
                ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction, return_nll=return_nll,
            )
        return linear_cross_entropy(
            x.flatten(0, -2), self.weight, targets.flatten(), bias=self.bias, num_classes=self.vocab_size,
            ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction, chunk_size=chunk_size,
            return_nll=return_nll,
        )
