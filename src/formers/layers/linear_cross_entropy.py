"""Output projection + cross-entropy in chunks of rows, so the (N, V) logits never exist at once.

``F.cross_entropy(F.linear(hidden, weight), targets)`` over a large vocabulary holds the whole (N, V) logits (GPT-2 at
16 x 1024 tokens: 1.65 GB in bf16) plus, inside the loss, their float32 log-probabilities (3.3 GB) for backward.
:func:`linear_cross_entropy` computes the same loss a chunk of ``chunk_size`` rows at a time: the chunk's logits in
the input dtype (bf16 under autocast), their float32 log-sum-exp and the loss terms; backward recomputes each
chunk's logits from ``hidden`` and ``weight`` and turns them into the chunk's ``grad_hidden`` rows and a share of
``grad_weight`` (accumulated in float32). What is kept for backward is the inputs and one float32 number per row;
the peak is one chunk's logits (and their float32 copy), not N * V. The price is a second output GEMM in backward
(the approach of Liger-Kernel's fused linear cross-entropy and Apple's Cut Cross-Entropy, written in plain torch).

Label smoothing is that of ``F.cross_entropy(label_smoothing=eps)``: the target is ``(1 - eps) * onehot + eps / C``
over the ``num_classes`` = C real classes, so a row's loss is ``lse - (1 - eps) * z[target] - eps * mean(z[:C])``.
Weight rows from C on (the alignment rows of a padded output projection) take no part and get a zero gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from formers.layers.cross_entropy import IGNORE_INDEX, cross_entropy
from formers.layers.validation import should_check_values

DEFAULT_CHUNK_SIZE = 4096
"""Rows per chunk: 4096 x 50304 bf16 logits are 0.4 GB (0.8 GB as float32), against 1.65 GB + 3.3 GB for all
16 x 1024 rows of a GPT-2 batch; large enough that each chunk's GEMMs keep a GPU busy."""


def _chunk_scores(hidden: Tensor, weight: Tensor, bias: Tensor | None, wide: torch.dtype) -> Tensor:
    """(n, D) rows -> float32 (float64 for float64 inputs) scores (n, R) of every weight row, alignment rows too."""
    logits = hidden @ weight.t()  # (n, R) in the input dtype: an aligned GEMM when R is
    if bias is not None:
        logits = logits + bias
    return logits.to(wide)  # (n, R)


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed (or mean) smoothed cross-entropy of ``hidden @ weight.T + bias``; see :func:`linear_cross_entropy`."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, num_classes, ignore_index, smoothing, mean, chunk_size):
        wide = torch.promote_types(hidden.dtype, torch.float32)  # float32 for half inputs, float64 stays
        n = hidden.shape[0]
        valid = targets != ignore_index  # (N,)
        safe = torch.where(valid, targets, 0)  # (N,) a real column for ignored rows; their term is zeroed
        lse = torch.empty(n, dtype=wide, device=hidden.device)  # (N,)
        losses = torch.empty(n, dtype=wide, device=hidden.device)  # (N,)
        nlls = torch.empty(n, dtype=wide, device=hidden.device)  # (N,) unsmoothed, a metric
        for start in range(0, n, chunk_size):
            rows = slice(start, start + chunk_size)
            scores = _chunk_scores(hidden[rows], weight, bias, wide)[:, :num_classes]  # (n, C), a view
            chunk_lse = torch.logsumexp(scores, dim=-1)  # (n,)
            picked = scores.gather(1, safe[rows, None]).squeeze(1)  # (n,)
            loss = chunk_lse - (1.0 - smoothing) * picked
            if smoothing:
                loss = loss - smoothing * scores.mean(dim=-1)
            lse[rows], losses[rows] = chunk_lse, loss
            nlls[rows] = chunk_lse - picked
            del scores  # only one chunk's logits alive at a time
        count = valid.sum()
        total = torch.where(valid, losses, 0.0).sum()
        total_nll = torch.where(valid, nlls, 0.0).sum()
        ctx.save_for_backward(hidden, weight, bias, lse, safe, valid, count)
        ctx.options = num_classes, smoothing, mean, chunk_size
        if mean:
            total, total_nll = total / count, total_nll / count
        ctx.mark_non_differentiable(total_nll)
        return total, total_nll

    @staticmethod
    def backward(ctx, grad: Tensor, grad_nll: Tensor):  # the NLL is a metric: no gradient flows from it
        hidden, weight, bias, lse, safe, valid, count = ctx.saved_tensors
        num_classes, smoothing, mean, chunk_size = ctx.options
        wide = lse.dtype
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        # scale of each row's loss in the output: 0 for ignored rows (also when all are, where the mean is NaN)
        scale = torch.where(valid, grad / count if mean else grad, 0.0).to(wide)  # (N,)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=wide, device=weight.device) if need_weight else None
        grad_bias = torch.zeros(weight.shape[0], dtype=wide, device=weight.device) if need_bias else None
        for start in range(0, hidden.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            probs = _chunk_scores(hidden[rows], weight, bias, wide)  # (n, R), recomputed
            probs -= lse[rows, None]
            probs.exp_()  # (n, R) softmax over the C real columns
            probs[:, num_classes:] = 0.0  # alignment columns: no gradient, but the GEMMs below stay R wide
            # d loss / d z = softmax - (1 - eps) * onehot - eps / C
            target = safe[rows, None]  # (n, 1)
            probs.scatter_add_(1, target, torch.full(target.shape, smoothing - 1.0, dtype=wide, device=probs.device))
            if smoothing:
                probs[:, :num_classes] -= smoothing / num_classes
            probs *= scale[rows, None]
            grad_logits = probs.to(hidden.dtype)  # (n, R) in the input dtype, as the GEMMs take it
            del probs
            if need_hidden:
                grad_hidden[rows] = grad_logits @ weight  # (n, D)
            if need_weight:
                grad_weight += (grad_logits.t() @ hidden[rows]).to(wide)  # (R, D); alignment rows get zeros
            if need_bias:
                grad_bias += grad_logits.sum(dim=0).to(wide)  # (R,)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        if grad_bias is not None:
            grad_bias = grad_bias.to(bias.dtype)
        return grad_hidden, grad_weight, grad_bias, None, None, None, None, None, None


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    bias: Tensor | None = None,
    num_classes: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    return_nll: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """``F.cross_entropy(F.linear(hidden, weight, bias)[:, :num_classes], targets, ...)`` without the (N, V) logits.

    Args:
        hidden: (N, D) final hidden states.
        weight: (R, D) output projection (R >= ``num_classes``; rows from ``num_classes`` on are alignment padding
            that takes no part and gets a zero gradient).
        targets: (N,) class indices in [0, num_classes), or ``ignore_index`` for rows that do not count.
        bias: optional (R,) output bias.
        num_classes: the real classes C (default R).
        ignore_index: target value of rows left out of the loss (and of the mean's count).
        label_smoothing: epsilon in [0, 1), uniform over the C real classes as in ``F.cross_entropy``.
        reduction: ``"mean"`` over the counted rows (NaN when there are none, as ``F.cross_entropy``) or ``"sum"``.
        chunk_size: rows whose logits are computed at a time (forward and backward).
        return_nll: also return the unsmoothed cross-entropy (same reduction; no gradient), computed in the same pass.

    Returns:
        The loss (a scalar) in float32 (float64 for float64 inputs), or ``(loss, nll)``. Under autocast the GEMMs
        run in the autocast dtype (the inputs are cast before the call, as ``F.linear`` would), the softmax in
        float32.
    """
    if hidden.dim() != 2:
        raise ValueError(f"hidden must be (N, D), got shape {tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"weight must be (R, {hidden.shape[1]}) for hidden {tuple(hidden.shape)}, got {tuple(weight.shape)}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias must be ({weight.shape[0]},) for weight {tuple(weight.shape)}, got {tuple(bias.shape)}")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets must be ({hidden.shape[0]},) for hidden {tuple(hidden.shape)}, got {tuple(targets.shape)}")
    if targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must hold integer class indices, got dtype {targets.dtype}")
    num_classes = weight.shape[0] if num_classes is None else num_classes
    if not 0 < num_classes <= weight.shape[0]:
        raise ValueError(f"num_classes must be in [1, {weight.shape[0]}] for weight {tuple(weight.shape)}, got {num_classes}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if targets.numel() and should_check_values(targets):
        bad = targets[(targets != ignore_index) & ((targets < 0) | (targets >= num_classes))]
        if bad.numel():
            raise ValueError(
                f"targets holds class {int(bad[0])}, outside [0, {num_classes}) and not ignore_index={ignore_index}"
            )
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        # What F.linear would do under autocast; the casts stay outside the Function so autograd undoes them.
        dtype = torch.get_autocast_dtype(device_type)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    elif hidden.dtype != weight.dtype:
        raise TypeError(f"hidden and weight must have one dtype outside autocast, got {hidden.dtype} and {weight.dtype}")
    with torch.autocast(device_type, enabled=False):
        loss, nll = _LinearCrossEntropy.apply(
            hidden, weight, bias, targets.long(), num_classes, ignore_index, float(label_smoothing),
            reduction == "mean", chunk_size,
        )
    return (loss, nll) if return_nll else loss


def scores_cross_entropy(
    scores: Tensor,
    targets: Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    return_nll: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`linear_cross_entropy`'s loss (and nll) from scores (N, R) already made, R >= ``num_classes``.

    The path ``OutputProjection.cross_entropy`` takes under ``torch.compile``: without label smoothing formers'
    :func:`~formers.layers.cross_entropy.cross_entropy` (it keeps only the scores and the row log-sum-exps for backward
    while compiled), with it ``F.cross_entropy`` on the float32 scores of the real classes; inductor fuses both.
    """
    if not label_smoothing:
        loss = cross_entropy(scores, targets, num_classes=num_classes, ignore_index=ignore_index, reduction=reduction)
        return (loss, loss.detach()) if return_nll else loss
    wide = scores[:, :num_classes].to(torch.promote_types(scores.dtype, torch.float32))  # (N, C)
    loss = F.cross_entropy(wide, targets, ignore_index=ignore_index, label_smoothing=label_smoothing,
                           reduction=reduction)
    if not return_nll:
        return loss
    return loss, F.cross_entropy(wide.detach(), targets, ignore_index=ignore_index, reduction=reduction)


def check_loss_arguments(
    targets: Tensor | None, ids: Tensor, label_smoothing: float, return_logits: bool | None
) -> None:
    """Checks a model's ``targets`` (same shape as its (B, T) ``ids``), ``label_smoothing`` and ``return_logits``."""
    if targets is not None:
        if not isinstance(targets, Tensor) or targets.shape != ids.shape:
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ValueError(f"targets must have the shape of the input ids {tuple(ids.shape)}, got {got}")
    elif return_logits is False:
        raise ValueError("return_logits=False needs targets: without them there is nothing to return")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")


def logits_cross_entropy(
    logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """``(loss, nll)`` of :func:`linear_cross_entropy` with ``return_nll=True``, from logits (..., V) already made.

    The mean (label-smoothed) cross-entropy of the float32 (float64 stays) logits over the rows whose target is not
    ``ignore_index``, and the unsmoothed one (detached): what a model returns when its logits were asked for too.
    """
    return scores_cross_entropy(logits.flatten(0, -2), targets.flatten(), num_classes=logits.shape[-1],
                                ignore_index=ignore_index, label_smoothing=label_smoothing, return_nll=True)


__all__ = [
    "DEFAULT_CHUNK_SIZE", "check_loss_arguments", "linear_cross_entropy", "logits_cross_entropy", "scores_cross_entropy",
]
