"""The losses of the tasks, in one place (the model-side fused cross-entropy is :mod:`formers.layers.cross_entropy`)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def label_smoothed_nll(logits: Tensor, target: Tensor, mask: Tensor, smoothing: float) -> tuple[Tensor, Tensor]:
    """Mean label-smoothed cross-entropy and mean NLL over real target tokens.

    Args:
        logits: (B, T, V).
        target: (B, T) ids.
        mask: (B, T) bool, True = real token.
        smoothing: epsilon of label smoothing (Szegedy et al. 2016; 0.1 in the paper).

    Returns:
        (loss, nll), each a scalar averaged over real tokens.
    """
    logits = logits[mask].float()  # (N, V) real positions only
    target = target[mask]  # (N,)
    loss = F.cross_entropy(logits, target, label_smoothing=smoothing)
    nll = F.cross_entropy(logits, target) if smoothing > 0 else loss
    return loss, nll.detach()


def soft_target_cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy of (B, K) logits against (B, K) target distributions, optionally label-smoothed.

    Smoothing mixes the targets with the uniform distribution: ``(1 - eps) * targets + eps / K`` (Szegedy et al.
    2016), the same as ``F.cross_entropy(label_smoothing=eps)`` for one-hot targets.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    targets = targets.float()
    if label_smoothing > 0:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / targets.shape[-1]
    return -(targets * logits.float().log_softmax(dim=-1)).sum(dim=-1).mean()
