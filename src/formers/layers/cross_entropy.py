"""Cross-entropy over a large vocabulary that keeps only the logits and one number per row for backward.

``F.cross_entropy(logits.float(), targets)`` on half-precision logits saves the float32 log-probabilities for the
backward pass: for GPT-2 at 16 x 1024 tokens that is a 3.3 GB tensor, written in the forward pass and read again in
the backward pass. :func:`cross_entropy` computes the same loss in float32 but saves the logits as they came
(bf16: 1.65 GB, already alive for the output GEMM's backward) and each row's log-sum-exp; the backward pass
recomputes the softmax from them. Under ``torch.compile`` each direction is one fused kernel that reads the logits
once (and writes the gradient once).

That recomputation pays off only when compiled: run eagerly, each of its steps would be a separate pass over the
logits, slower than ``F.cross_entropy``'s own fused CUDA kernels. So by default it is used while ``torch.compile``
traces the call, and eager calls go to ``F.cross_entropy`` (same loss, same gradient).

It also takes logits whose last dimension is wider than the number of classes (the alignment rows of a padded
output projection, ``TokenEmbedding(num_rows=...)``): the extra columns are left out of the softmax and get a zero
gradient, so no sliced copy of the logits is made in either direction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from formers.layers.validation import should_check_values

IGNORE_INDEX = -100
"""Target value of positions that do not count (``F.cross_entropy``'s default ``ignore_index``)."""


class _CrossEntropy(torch.autograd.Function):
    """Mean (or summed) cross-entropy of rows of ``logits[:, :num_classes]``; see :func:`cross_entropy`."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, num_classes: int, ignore_index: int, mean: bool) -> Tensor:
        wide = torch.promote_types(logits.dtype, torch.float32)  # float32 for half inputs, float64 stays
        scores = logits[:, :num_classes].to(wide)  # (N, C); fused into the reduction under torch.compile
        lse = torch.logsumexp(scores, dim=-1)  # (N,)
        valid = targets != ignore_index  # (N,)
        safe = torch.where(valid, targets, 0)  # (N,) a real column for ignored rows; their term is zeroed
        picked = scores.gather(1, safe[:, None]).squeeze(1)  # (N,)
        total = torch.where(valid, lse - picked, 0.0).sum()
        count = valid.sum()
        ctx.save_for_backward(logits, lse, safe, valid, count)
        ctx.num_classes, ctx.mean = num_classes, mean
        return total / count if mean else total

    @staticmethod
    def backward(ctx, grad: Tensor):
        logits, lse, safe, valid, count = ctx.saved_tensors
        columns = torch.arange(logits.shape[1], device=logits.device)  # (R,)
        probs = torch.exp(logits.to(lse.dtype) - lse[:, None])  # (N, R) softmax, recomputed from the saved logits
        probs = torch.where(columns < ctx.num_classes, probs, 0.0)  # alignment columns: no gradient
        scale = torch.where(valid, grad / count if ctx.mean else grad, 0.0)  # (N,)
        onehot = columns[None, :] == safe[:, None]  # (N, R)
        return ((probs - onehot.to(probs.dtype)) * scale[:, None]).to(logits.dtype), None, None, None, None


def cross_entropy(
    logits: Tensor,
    targets: Tensor,
    num_classes: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
    recompute: bool | None = None,
) -> Tensor:
    """``F.cross_entropy(logits[:, :num_classes].float(), targets)``, saving only the logits for backward.

    Args:
        logits: (N, R) scores of any floating dtype; R >= ``num_classes``. Columns from ``num_classes`` on (padding
            of an aligned output projection) take no part and get a zero gradient.
        targets: (N,) class indices in [0, num_classes), or ``ignore_index`` for rows that do not count.
        num_classes: the real classes (default R).
        ignore_index: target value of rows left out of the loss.
        reduction: ``"mean"`` over the counted rows (NaN when there are none, as ``F.cross_entropy``) or ``"sum"``.
        recompute: keep only the logits and the row log-sum-exps, and recompute the softmax in backward. Default:
            while ``torch.compile`` traces the call; eager calls use ``F.cross_entropy`` on the float32 logits.

    Returns:
        The loss (a scalar) in float32 (float64 for float64 logits). Its gradient has the dtype of ``logits``.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, R), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(
            f"targets must be ({logits.shape[0]},) for logits {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    if targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must hold integer class indices, got dtype {targets.dtype}")
    num_classes = logits.shape[1] if num_classes is None else num_classes
    if not 0 < num_classes <= logits.shape[1]:
        raise ValueError(
            f"num_classes must be in [1, {logits.shape[1]}] for logits {tuple(logits.shape)}, got {num_classes}"
        )
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if targets.numel() and should_check_values(targets):
        bad = targets[(targets != ignore_index) & ((targets < 0) | (targets >= num_classes))]
        if bad.numel():
            raise ValueError(
                f"targets holds class {int(bad[0])}, outside [0, {num_classes}) and not ignore_index={ignore_index}"
            )
    if recompute is None:
        recompute = torch.compiler.is_compiling()
    if not recompute:
        wide = torch.promote_types(logits.dtype, torch.float32)
        scores = logits[:, :num_classes].to(wide)  # (N, C)
        return F.cross_entropy(scores, targets.long(), ignore_index=ignore_index, reduction=reduction)
    return _CrossEntropy.apply(logits, targets.long(), num_classes, ignore_index, reduction == "mean")


__all__ = ["IGNORE_INDEX", "cross_entropy"]
