"""``from_timm(model_name, state_dict)``: formers models from ``timm`` state dicts, dispatching on the family.

Each family's converter (``formers.interop.vit``, ``tnt``, ``swin``, ``efficientformer``) exposes
``load_timm_<family>(model_name, state_dict, overrides)``; it reads the architecture from the model name and the
tensor shapes (so tiny reference models built with ``timm.create_model(name, embed_dim=..., depth=...)`` convert
too) and returns the model in eval mode. No ``timm`` import is needed to convert.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

# model-name prefix -> (converter module, function)
_TIMM_FAMILIES = {
    "vit_": ("formers.interop.vit", "load_timm_vit"),
    "tnt_": ("formers.interop.tnt", "load_timm_tnt"),
    "swin_": ("formers.interop.swin", "load_timm_swin"),
    "efficientformer_": ("formers.interop.efficientformer", "load_timm_efficientformer"),
}


def from_timm(
    model_name: str, state_dict: dict[str, torch.Tensor], overrides: dict[str, Any] | None = None
) -> nn.Module:
    """Builds the formers model equivalent to a ``timm`` model and loads its weights.

    Args:
        model_name: the timm model name, e.g. ``"vit_base_patch16_224"``, ``"swin_tiny_patch4_window7_224"``.
        state_dict: the timm model's ``state_dict()`` (or one read from its safetensors file).
        overrides: config fields the names and shapes cannot tell (e.g. ``{"image_size": 384}``).

    Returns:
        The formers model, in eval mode, computing the same logits.
    """
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a timm model name string, got {type(model_name).__name__}")
    for prefix, (module_name, fn_name) in _TIMM_FAMILIES.items():
        if model_name.startswith(prefix):
            fn = getattr(importlib.import_module(module_name), fn_name)
            return fn(model_name, state_dict, overrides or {})
    raise ValueError(
        f"timm model {model_name!r} is not supported; supported families: {sorted(p.rstrip('_') for p in _TIMM_FAMILIES)}"
    )
