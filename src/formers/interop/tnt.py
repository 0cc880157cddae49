"""timm TNT (``tnt_s_patch16_224``, ``tnt_b_patch16_224``, ``tnt_s_legacy_patch16_224``) <-> formers ``TNT`` /
``TNTLegacy``.

Checked against ``timm`` 1.0.31 (tests/interop/test_tnt.py): tiny random timm TNT models of several shapes
(patch and pixel-stride sizes, qkv biases, channels, classes, no head) give the same logits to 1e-5 in float32,
and the inverse conversion loads into timm with ``strict=True`` and gives the same logits again.

timm's attention keeps separate ``qk`` (2 x width) and ``v`` projections; they are concatenated into formers'
fused ``qkv`` (rows ``[q; k; v]``, head-major inside, which is the layout of both) before the declarative key
map renames everything, and split again on the way back.

What the state dict cannot tell comes from the model name (or ``overrides``):

- ``patch_size`` (``patch16``) and the pixel-convolution stride (timm's ``first_stride``, 4 unless the pixel
  grid ``ceil(P / stride)`` read from ``pixel_pos`` rules it out; ambiguous strides need ``pixel_stride``);
- the head counts: TNT-S has 6 outer heads, TNT-B 10, both 4 inner heads. A model whose widths differ from the
  published ones (a tiny test model) must give ``num_heads`` and ``inner_num_heads`` in ``overrides``, since
  a wrong head count would convert without error and compute other logits.

The widths, depth, FFN ratios, ``qkv_bias``, ``in_channels``, ``num_classes`` (0 without a head) and the square
``image_size`` (from the patch position table) are read from the tensor shapes.

``tnt_s_legacy_patch16_224`` (convolution over the whole image before unfolding, per-pixel LayerNorm and a
biased fold projection) computes something else and becomes a :class:`~formers.models.tnt.TNTLegacy`; its
weights have the same names, and the layout is recognised from the weights (no ``norm2_proj`` in the blocks)
whatever the name says. Its stride is ``patch_size / n`` exactly.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import Tensor

from formers.config import apply_overrides
from formers.files import load_state_into
from formers.interop.keymap import KeyMap
from formers.models.tnt import TNT, TNTConfig, TNTLegacy
from formers.registry import build_model, register_converter

# (formers module, timm module) pairs; each maps its ``weight`` and ``bias``.
_TOP = [
    ("pixel_embed.proj", "pixel_embed.proj"),
    ("patch_embed.norm1", "norm1_proj"),
    ("patch_embed.proj", "proj"),
    ("patch_embed.norm2", "norm2_proj"),
    ("norm", "norm"),
    ("head", "head"),
]
_BLOCK = [
    ("inner_attn_norm", "norm_in"),
    ("inner_attn.qkv", "attn_in.qkv"),  # fused from timm's attn_in.qk + attn_in.v
    ("inner_attn.out_proj", "attn_in.proj"),
    ("inner_mlp_norm", "norm_mlp_in"),
    ("inner_mlp.fc1", "mlp_in.fc1"),
    ("inner_mlp.fc2", "mlp_in.fc2"),
    ("pixel_to_patch.norm1", "norm1_proj"),
    ("pixel_to_patch.proj", "proj"),
    ("pixel_to_patch.norm2", "norm2_proj"),
    ("attn_norm", "norm_out"),
    ("attn.qkv", "attn_out.qkv"),  # fused from timm's attn_out.qk + attn_out.v
    ("attn.out_proj", "attn_out.proj"),
    ("mlp_norm", "norm_mlp"),
    ("mlp.fc1", "mlp.fc1"),
    ("mlp.fc2", "mlp.fc2"),
]
KEY_MAP = KeyMap(
    [
        ("cls_token", "cls_token"),
        ("patch_pos", "patch_pos"),
        ("pixel_embed.pixel_pos", "pixel_pos"),
    ]
    + [(f"{ours}.{p}", f"{theirs}.{p}") for ours, theirs in _TOP for p in ("weight", "bias")]
    + [
        (f"blocks.{{i}}.{ours}.{p}", f"blocks.{{i}}.{theirs}.{p}")
        for ours, theirs in _BLOCK
        for p in ("weight", "bias")
    ]
)

_NAME = re.compile(r"tnt_(?P<size>[sb])(?P<legacy>_legacy)?_patch(?P<patch>\d+)_(?P<res>\d+)")
# Published variants: (embed_dim, inner_dim) -> (num_heads, inner_num_heads).
_PUBLISHED = {"s": ((384, 24), (6, 4)), "b": ((640, 40), (10, 4))}
_QK_V = re.compile(r"(?P<prefix>blocks\.\d+\.attn_(?:in|out))\.(?P<part>qk|v)\.(?P<param>weight|bias)\Z")
_QKV = re.compile(r"(?P<prefix>blocks\.\d+\.attn_(?:in|out))\.qkv\.(?P<param>weight|bias)\Z")
_TIMM_DEFAULT_STRIDE = 4


def _fuse_qk_v(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm names with each ``qk`` + ``v`` pair concatenated into one ``qkv`` (rows [q; k; v])."""
    out: dict[str, Tensor] = {}
    parts: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, tensor in state.items():
        m = _QK_V.match(key)
        if m is None:
            out[key] = tensor
        else:
            parts.setdefault((m["prefix"], m["param"]), {})[m["part"]] = tensor
    for (prefix, param), pair in parts.items():
        if set(pair) != {"qk", "v"}:
            missing = ({"qk", "v"} - set(pair)).pop()
            raise KeyError(f"timm TNT state dict has {prefix}.{set(pair).pop()}.{param} but no {prefix}.{missing}.{param}")
        out[f"{prefix}.qkv.{param}"] = torch.cat([pair["qk"], pair["v"]], dim=0)  # (2W + W', ...)
    return out


def _split_qkv(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`_fuse_qk_v`: ``qkv`` rows [q; k; v] -> timm's ``qk`` (first 2/3) and ``v``."""
    out: dict[str, Tensor] = {}
    for key, tensor in state.items():
        m = _QKV.match(key)
        if m is None:
            out[key] = tensor
            continue
        qk, v = tensor.split([tensor.shape[0] // 3 * 2, tensor.shape[0] // 3], dim=0)  # q/k/v are equally wide
        out[f"{m['prefix']}.qk.{m['param']}"] = qk
        out[f"{m['prefix']}.v.{m['param']}"] = v
    return out


def is_legacy(state_dict: dict[str, Tensor]) -> bool:
    """Whether timm TNT weights have the first release's layout (blocks fold without ``norm2_proj``)."""
    return "blocks.0.norm1_proj.weight" in state_dict and "blocks.0.norm2_proj.weight" not in state_dict


def _pixel_stride(patch_size: int, pixel_grid: int, legacy: bool) -> int:
    """The convolution stride giving ``pixel_grid`` = ceil(patch_size / stride): timm's 4 when possible."""
    if legacy:
        if patch_size % pixel_grid:
            raise ValueError(f"legacy TNT: {patch_size}x{patch_size} patches cannot hold a {pixel_grid}x{pixel_grid} "
                             "pixel grid; pass overrides={'patch_size': ...}")
        return patch_size // pixel_grid
    candidates = [s for s in range(1, patch_size + 1) if math.ceil(patch_size / s) == pixel_grid]
    if _TIMM_DEFAULT_STRIDE in candidates:
        return _TIMM_DEFAULT_STRIDE
    if len(candidates) == 1:
        return candidates[0]
    raise ValueError(
        f"the pixel grid {pixel_grid}x{pixel_grid} of {patch_size}x{patch_size} patches fits strides {candidates}; "
        "pass overrides={'pixel_stride': ...} (timm's first_stride)"
    )


def config_from_timm_tnt(model_name: str, state_dict: dict[str, Tensor], overrides: dict[str, Any]) -> TNTConfig:
    """Reads a :class:`TNTConfig` from a timm TNT model name, its state-dict shapes and ``overrides``.

    Raises:
        ValueError: on an unknown name, or what the name and shapes leave undetermined.
    """
    name = model_name.split(".")[0]  # drop a pretrained tag like ".in1k"
    m = _NAME.fullmatch(name)
    if m is None:
        raise ValueError(
            f"timm TNT model name {model_name!r} is not one of tnt_s_patch16_224, tnt_b_patch16_224, "
            "tnt_s_legacy_patch16_224 (tnt_<s|b>[_legacy]_patch<P>_<size>)"
        )
    for key in ("cls_token", "patch_pos", "pixel_pos", "pixel_embed.proj.weight", "blocks.0.mlp_in.fc1.weight"):
        if key not in state_dict:
            raise KeyError(f"timm TNT state dict lacks {key!r}; is it a TNT model's state_dict()?")
    overrides = dict(overrides)
    embed_dim = state_dict["cls_token"].shape[-1]
    _, inner_dim, grid_h, grid_w = state_dict["pixel_pos"].shape  # (1, c, n, n)
    num_patches = state_dict["patch_pos"].shape[1] - 1
    side = math.isqrt(num_patches)
    if side * side != num_patches or grid_h != grid_w:
        raise ValueError(f"timm TNT with a non-square patch grid ({num_patches} patches) is not supported")
    num_layers = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("blocks."))
    patch_size = overrides.pop("patch_size", int(m["patch"]))
    pixel_stride = overrides.pop("pixel_stride", None) or _pixel_stride(patch_size, grid_h, is_legacy(state_dict))
    (pub_embed, pub_inner), (pub_heads, pub_inner_heads) = _PUBLISHED[m["size"]]
    if "num_heads" not in overrides and embed_dim != pub_embed:
        raise ValueError(
            f"{model_name} weights are {embed_dim} wide, not the published {pub_embed}: the outer head count "
            "cannot be read from the weights; pass overrides={'num_heads': ...}"
        )
    if "inner_num_heads" not in overrides and inner_dim != pub_inner:
        raise ValueError(
            f"{model_name} pixel tokens are {inner_dim} wide, not the published {pub_inner}: the inner head "
            "count cannot be read from the weights; pass overrides={'inner_num_heads': ...}"
        )
    head = state_dict.get("head.weight")
    config = TNTConfig(
        image_size=side * patch_size,
        patch_size=patch_size,
        in_channels=state_dict["pixel_embed.proj.weight"].shape[1],
        num_classes=0 if head is None else head.shape[0],
        embed_dim=embed_dim,
        inner_dim=inner_dim,
        num_layers=num_layers,
        num_heads=overrides.pop("num_heads", pub_heads),
        inner_num_heads=overrides.pop("inner_num_heads", pub_inner_heads),
        mlp_ratio=state_dict["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        inner_mlp_ratio=state_dict["blocks.0.mlp_in.fc1.weight"].shape[0] / inner_dim,
        pixel_stride=pixel_stride,
        qkv_bias="blocks.0.attn_in.qk.bias" in state_dict,
    )
    if config.num_pixels != grid_h * grid_w:
        raise ValueError(
            f"patch_size={patch_size} with pixel_stride={pixel_stride} gives {config.num_pixels} pixel tokens per "
            f"patch, the weights hold {grid_h * grid_w}; pass the right patch_size / pixel_stride in overrides"
        )
    return apply_overrides(config, overrides)


def convert_timm_tnt_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm TNT weights -> formers ``TNT`` state dict (``qk`` + ``v`` fused into ``qkv``)."""
    return KEY_MAP.to_ours(_fuse_qk_v(dict(state_dict)))


def to_timm_tnt_state_dict(model: TNT) -> dict[str, Tensor]:
    """formers ``TNT``/``TNTLegacy`` weights -> the state dict of the equivalent timm ``TNT`` (``strict=True``)."""
    if not isinstance(model, TNT):
        raise TypeError(f"to_timm_tnt_state_dict takes a formers TNT, got {type(model).__name__}")
    return _split_qkv(KEY_MAP.to_theirs(model.state_dict()))


@register_converter("timm", "tnt_")
def load_timm_tnt(model_name: str, state_dict: dict[str, Tensor], overrides: dict[str, Any] | None = None) -> TNT:
    """Builds the formers ``TNT`` equivalent to a timm TNT model and loads its weights.

    Args:
        model_name: the timm name, e.g. ``"tnt_s_patch16_224"`` (a ``.in1k`` tag is ignored).
        state_dict: the timm model's ``state_dict()``.
        overrides: config fields the name and shapes cannot tell (``num_heads``, ``inner_num_heads``,
            ``patch_size``, ``pixel_stride``) or training-only ones (``drop_path_rate``, ``dropout``).

    Returns:
        The formers model in eval mode: a ``TNTLegacy`` for the first release's layout, else a ``TNT``.
    """
    config = config_from_timm_tnt(model_name, state_dict, overrides or {})
    model = build_model(TNTLegacy if is_legacy(state_dict) else TNT, config)
    load_state_into(model, convert_timm_tnt_state_dict(state_dict), f"timm {model_name} state dict")
    return model.eval()
