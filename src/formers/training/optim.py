"""Optimizers with parameter groups: weight decay on matrices only, optional learning-rate scales by name.

Biases, norm scales (every 1-D parameter), embedding tables and whatever the model lists in ``no_weight_decay()``
(the timm convention, e.g. ``{"pos_embed", "cls_token"}``) are excluded from decay. Tied parameters (a shared
embedding/output matrix) appear once: a parameter listed twice would be updated twice per step. ``lr_scales``
multiplies the learning rate of the parameters whose names start with a prefix (DETR trains its backbone at a tenth
of the transformer's rate: ``{"backbone.": 0.1}``); schedules then scale every group alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("adamw", "adam", "sgd")


def _no_decay_ids(model: nn.Module, decay_embeddings: bool = False) -> set[int]:
    """Ids of parameters kept out of weight decay: embedding tables (unless ``decay_embeddings``: nanoGPT
    decays every matrix, embeddings included) and names the model lists in ``no_weight_decay()``."""
    ids: set[int] = set()
    for module in model.modules():
        if decay_embeddings:
            break
        if isinstance(module, nn.Embedding) or type(module).__name__.endswith("Embedding"):
            ids.update(id(p) for p in module.parameters(recurse=False))
    names = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    for name, p in model.named_parameters():
        if name in names or name.split(".")[-1] in names:
            ids.add(id(p))
    return ids


def _lr_scale(name: str, lr_scales: dict[str, float]) -> float:
    """The scale of the longest prefix of ``name`` in ``lr_scales`` (1.0 when none matches)."""
    matches = [prefix for prefix in lr_scales if name.startswith(prefix)]
    return float(lr_scales[max(matches, key=len)]) if matches else 1.0


def param_groups(
    model: nn.Module, weight_decay: float, decay_embeddings: bool = False, lr_scales: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """Splits the trainable parameters of ``model`` into a decayed and a non-decayed group (per learning-rate scale).

    Args:
        model: the model; frozen parameters (``requires_grad=False``) are left out.
        weight_decay: decay of the matrices group.
        decay_embeddings: put embedding tables in the decayed group too (nanoGPT, GPT-2 recipes).
        lr_scales: parameter-name prefix -> learning-rate multiplier (the longest matching prefix applies).

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]``, each
        parameter exactly once (tied parameters included once), in ``named_parameters`` order. Empty groups are
        dropped. With ``lr_scales``, each scale other than 1 gets its own pair of groups, marked ``"lr_scale"``.
    """
    for prefix, scale in (lr_scales or {}).items():
        if scale <= 0:
            raise ValueError(f"lr_scales[{prefix!r}] must be > 0, got {scale}")
        if not any(name.startswith(prefix) for name, _ in model.named_parameters()):
            raise ValueError(f"lr_scales prefix {prefix!r} matches no parameter of {type(model).__name__}")
    no_decay_ids = _no_decay_ids(model, decay_embeddings)
    buckets: dict[tuple[float, bool], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():  # named_parameters already drops tied duplicates; `seen` makes sure
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        decayed = not (p.ndim <= 1 or id(p) in no_decay_ids)
        buckets.setdefault((_lr_scale(name, lr_scales or {}), decayed), []).append(p)
    groups = []
    for scale in sorted({s for s, _ in buckets}, key=lambda s: s != 1.0):
        for decayed in (True, False):
            params = buckets.get((scale, decayed), [])
            if params:
                group = {"params": params, "weight_decay": float(weight_decay) if decayed else 0.0}
                groups.append(group if scale == 1.0 else {**group, "lr_scale": scale})
    return groups


def build_optimizer(
    model: nn.Module,
    name: str = "adamw",
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    decay_embeddings: bool = False,
    fused: bool | None = None,
    lr_scales: dict[str, float] | None = None,
) -> torch.optim.Optimizer:
    """Builds Adam, AdamW or plain SGD over the parameter groups of :func:`param_groups`.

    Args:
        model: the model to optimize.
        name: ``"adamw"`` (decoupled decay), ``"adam"`` (L2 decay added to the gradient) or ``"sgd"`` (no momentum;
            word2vec's task hands it its whole update as the gradient, with ``lr`` 1).
        lr: learning rate (the peak rate when a schedule multiplies it; 1.0 for the paper's inverse-sqrt formula).
        betas: Adam betas; the paper uses ``(0.9, 0.98)``.
        eps: Adam epsilon; the paper uses ``1e-9``.
        weight_decay: decay applied to matrices only.
        decay_embeddings: decay embedding tables as well (see :func:`param_groups`).
        fused: PyTorch's single-kernel update (``fused=True``); ``None``: when every parameter is on a CUDA device.
        lr_scales: parameter-name prefix -> multiplier of ``lr`` (see :func:`param_groups`).

    Returns:
        The optimizer.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"name must be one of {OPTIMIZERS}, got {name!r}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
    groups = param_groups(model, weight_decay, decay_embeddings, lr_scales)
    for group in groups:
        group["lr"] = lr * group.pop("lr_scale", 1.0)
    if not groups:
        raise ValueError("model has no trainable parameters (all have requires_grad=False)")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if fused is None:
        fused = all(p.is_cuda for g in groups for p in g["params"])
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused or None)
