"""``from_timm(model_name, state_dict)``: formers models from ``timm`` state dicts, dispatching on the family.

Each family's converter (``formers.interop.vit``, ``tnt``, ``swin``, ``efficientformer``) registers
``load_timm_<family>(model_name, state_dict, overrides)`` for its model-name prefix
(``@register_converter("timm", "vit_")``); it reads the architecture from the model name and the
tensor shapes (so tiny reference models built with ``timm.create_model(name, embed_dim=..., depth=...)`` convert
too) and returns the model in eval mode. No ``timm`` import is needed to convert.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from formers.registry import converters


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
    known = converters("timm")
    for prefix, convert in known.items():
        if model_name.startswith(prefix):
            return convert(model_name, state_dict, overrides or {})
    raise ValueError(
        f"timm model {model_name!r} is not supported; supported families: {sorted(p.rstrip('_') for p in known)}"
    )
