"""timm EfficientFormer (``efficientformer_l1/l3/l7``) <-> formers ``EfficientFormer``.

Checked against timm 1.0.31 (tests/interop/test_efficientformer_interop.py): tiny random timm models of several shapes
(stage counts, widths, depths, attention-block counts, heads, key widths, classes, channels) give the same
logits in fp32 eval mode to 1e-5, and ``to_timm_efficientformer`` returns a state dict timm loads strictly,
equal to the original.

Differences resolved here:

- timm numbers the blocks of the last stage with a parameter-free ``Flat`` module in the sequence (before the
  first attention block), so the attention blocks' indices are shifted by one; formers keeps the pooling and
  attention blocks in two lists (``blocks``, ``attn_blocks``).
- timm's fused ``qkv`` rows are grouped per head ``[q_h, k_h, v_h]``; formers' ``SelfAttention`` stacks
  ``[q; k; v]`` (head-major inside each). The rows are permuted both ways.
- timm stores the attention-bias index (``attention_bias_idxs``) as a buffer; formers rebuilds it
  (non-persistent). On import it must equal the index formers computes; on export it is written back.

The architecture is read from the tensor shapes (so models built with ``timm.create_model(name,
depths=..., embed_dims=..., num_vit=...)`` convert); the input size is fixed by the attention-bias grid (timm's
is always 7x7, so ``image_size`` = 7 * total stride, 224 for the published models).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import Tensor

from formers.config import apply_overrides
from formers.files import load_state_into
from formers.interop.keymap import KeyMap, Transform
from formers.layers.attention_bias import grid_offset_index
from formers.models.efficientformer import EfficientFormer, EfficientFormerConfig
from formers.registry import build_model, register_converter

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_WB = ("weight", "bias")
_BLOCK = re.compile(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)\Z")
_ATTN_BLOCK = re.compile(r"stages\.(\d+)\.attn_blocks\.(\d+)\.(.+)\Z")
_BIAS_INDEX = "token_mixer.attention_bias_idxs"


def _qkv_transform(num_heads: int, key_dim: int, value_dim: int) -> Transform:
    """Row permutation between formers' ``[q; k; v]`` and timm's per-head ``[q_h, k_h, v_h]`` fused qkv."""
    h, kd, vd = num_heads, key_dim, value_dim

    def to_theirs(t: Tensor) -> Tensor:
        q, k, v = t.split([h * kd, h * kd, h * vd])  # (H*kd | H*kd | H*vd, ...)
        parts = [p.reshape(h, -1, *t.shape[1:]) for p in (q, k, v)]  # (H, d, ...) each
        return torch.cat(parts, dim=1).reshape(t.shape)  # (H, 2kd+vd, ...) -> (H*(2kd+vd), ...)

    def to_ours(t: Tensor) -> Tensor:
        per_head = t.reshape(h, 2 * kd + vd, *t.shape[1:])  # (H, 2kd+vd, ...)
        q, k, v = per_head.split([kd, kd, vd], dim=1)  # (H, d, ...) each
        return torch.cat([p.reshape(-1, *t.shape[1:]) for p in (q, k, v)]).reshape(t.shape)  # (H*d, ...) stacked

    return Transform(to_theirs=to_theirs, to_ours=to_ours)


def key_map(config: EfficientFormerConfig) -> KeyMap:
    """formers <-> timm names for ``config`` (the qkv permutation depends on its head shapes).

    timm's last-stage attention blocks appear as ``stages.{i}.attn_blocks.{j}`` here: the ``Flat`` index shift
    is undone by :func:`_renumber_to_ours` / :func:`_renumber_to_theirs` around this map.
    """
    rules: list[Any] = []
    rules += [(f"stem.{m}.{p}", f"stem.{m}.{p}") for m in ("conv1", "conv2") for p in _WB]
    rules += [(f"stem.{m}.{p}", f"stem.{m}.{p}") for m in ("norm1", "norm2") for p in _BN]
    rules += [(f"stages.{{i}}.downsample.conv.{p}", f"stages.{{i}}.downsample.conv.{p}") for p in _WB]
    rules += [(f"stages.{{i}}.downsample.norm.{p}", f"stages.{{i}}.downsample.norm.{p}") for p in _BN]
    pool = "stages.{i}.blocks.{j}."
    rules += [(pool + "mixer_scale.gamma", pool + "ls1.gamma"), (pool + "ffn_scale.gamma", pool + "ls2.gamma")]
    rules += [(f"{pool}ffn.{m}.{p}", f"{pool}mlp.{m}.{p}") for m in ("fc1", "fc2") for p in _WB]
    rules += [(f"{pool}ffn.{m}.{p}", f"{pool}mlp.{m}.{p}") for m in ("norm1", "norm2") for p in _BN]
    attn = "stages.{i}.attn_blocks.{j}."
    qkv = _qkv_transform(config.num_heads, config.key_dim, config.value_dim)
    rules += [(f"{attn}attn.qkv.{p}", f"{attn}token_mixer.qkv.{p}", qkv) for p in _WB]
    rules += [
        (attn + "attn_bias.table", attn + "token_mixer.attention_biases"),
        (attn + "attn_scale.gamma", attn + "ls1.gamma"),
        (attn + "ffn_scale.gamma", attn + "ls2.gamma"),
    ]
    for ours, theirs in (("attn.out_proj", "token_mixer.proj"), ("attn_norm", "norm1"), ("ffn_norm", "norm2"),
                         ("ffn.fc1", "mlp.fc1"), ("ffn.fc2", "mlp.fc2")):
        rules += [(f"{attn}{ours}.{p}", f"{attn}{theirs}.{p}") for p in _WB]
    rules += [(f"{m}.{p}", f"{m}.{p}") for m in ("norm", "head", "head_dist") for p in _WB]
    return KeyMap(rules)


def _stage_blocks(state: dict[str, Tensor], stage: int) -> tuple[list[int], list[int]]:
    """Indices of timm's pooling blocks and attention blocks in ``stages.{stage}.blocks``."""
    pool, attn = set(), set()
    for key in state:
        m = _BLOCK.match(key)
        if m and int(m.group(1)) == stage:
            (attn if m.group(3).startswith(("token_mixer.", "norm1.")) else pool).add(int(m.group(2)))
    return sorted(pool - attn), sorted(attn)


def _renumber_to_ours(state: dict[str, Tensor], last: int) -> dict[str, Tensor]:
    """Renames timm's last-stage attention blocks ``blocks.{Flat + 1 + k}`` to ``attn_blocks.{k}``."""
    pool, attn = _stage_blocks(state, last)
    first = len(pool) + 1  # the Flat module sits at index len(pool)
    if pool != list(range(len(pool))) or attn != list(range(first, first + len(attn))):
        raise ValueError(
            f"timm EfficientFormer stage {last}: expected pooling blocks 0..{len(pool) - 1}, Flat, then attention "
            f"blocks; got pooling blocks {pool} and attention blocks {attn}"
        )
    out = {}
    for key, tensor in state.items():
        m = _BLOCK.match(key)
        if m and int(m.group(1)) == last and int(m.group(2)) in attn:
            key = f"stages.{last}.attn_blocks.{int(m.group(2)) - first}.{m.group(3)}"
        out[key] = tensor
    return out


def _renumber_to_theirs(state: dict[str, Tensor], num_pool: int) -> dict[str, Tensor]:
    """Inverse of :func:`_renumber_to_ours`: ``attn_blocks.{k}`` -> ``blocks.{num_pool + 1 + k}``."""
    out = {}
    for key, tensor in state.items():
        m = _ATTN_BLOCK.match(key)
        if m:
            key = f"stages.{m.group(1)}.blocks.{num_pool + 1 + int(m.group(2))}.{m.group(3)}"
        out[key] = tensor
    return out


def config_from_timm_state(
    model_name: str, state: dict[str, Tensor], overrides: dict[str, Any] | None = None
) -> EfficientFormerConfig:
    """Reads an :class:`EfficientFormerConfig` from a timm EfficientFormer state dict's tensor shapes.

    Args:
        model_name: the timm name (``efficientformer_l1`` ...); the shapes decide the architecture.
        state: the timm ``state_dict()``.
        overrides: config fields the shapes cannot tell (``pool_size``, ``drop_path_rate``, ...).

    Raises:
        ValueError: when the state dict is not a timm EfficientFormer's, or ``overrides`` contradict it.
    """
    if not model_name.startswith("efficientformer_"):
        raise ValueError(f"expected a timm EfficientFormer name (efficientformer_l1/l3/l7), got {model_name!r}")
    if "stem.conv1.weight" not in state:
        raise ValueError(f"{model_name}: the state dict has no stem.conv1.weight; is it a timm EfficientFormer?")
    stages = sorted({int(m.group(1)) for k in state if (m := re.match(r"stages\.(\d+)\.", k))})
    if stages != list(range(len(stages))) or not stages:
        raise ValueError(f"{model_name}: expected stages 0..N-1 in the state dict, got {stages}")
    dims, depths, downsamples = [], [], []
    dim = state["stem.conv2.weight"].shape[0]
    for i in stages:
        conv = state.get(f"stages.{i}.downsample.conv.weight")
        downsamples.append(conv is not None)
        dim = conv.shape[0] if conv is not None else dim
        dims.append(dim)
        pool, attn = _stage_blocks(state, i)
        if attn and i != stages[-1]:
            raise ValueError(f"{model_name}: attention blocks in stage {i}; timm puts them in the last stage only")
        depths.append(len(pool) + len(attn))
    last = stages[-1]
    pool, attn = _stage_blocks(state, last)
    if not attn:
        raise ValueError(f"{model_name}: no attention blocks in the last stage (num_vit=0 is not supported)")
    prefix = f"stages.{last}.blocks.{attn[0]}.token_mixer."
    num_heads, table = state[prefix + "attention_biases"].shape
    value_width = state[prefix + "proj.weight"].shape[1]
    value_dim = value_width // num_heads
    key_dim = (state[prefix + "qkv.weight"].shape[0] - value_width) // (2 * num_heads)
    grid = math.isqrt(table)
    if grid * grid != table:
        raise ValueError(f"{model_name}: attention biases cover {table} offsets, not a square grid")
    hidden = state[f"stages.{last}.blocks.{attn[0]}.mlp.fc1.weight"].shape[0]
    config = EfficientFormerConfig(
        in_channels=state["stem.conv1.weight"].shape[1],
        num_classes=state["head.weight"].shape[0] if "head.weight" in state else 0,
        depths=tuple(depths),
        embed_dims=tuple(dims),
        downsamples=tuple(downsamples),
        num_attn_blocks=len(attn),
        num_heads=num_heads,
        key_dim=key_dim,
        attn_ratio=value_dim / key_dim,
        mlp_ratio=hidden / dims[-1],
    )
    config = apply_overrides(config, {"image_size": grid * config.stride, **(overrides or {})})
    if config.grid_size != grid:
        raise ValueError(
            f"{model_name}: image_size={config.image_size} gives a {config.grid_size}x{config.grid_size} attention "
            f"grid, but the attention biases cover {grid}x{grid}; use an image_size in "
            f"{(grid - 1) * config.stride + 1}..{grid * config.stride}"
        )
    return config


def convert_timm_state_dict(state: dict[str, Tensor], config: EfficientFormerConfig) -> dict[str, Tensor]:
    """timm EfficientFormer weights -> the state dict of formers ``EfficientFormer(config)``.

    Raises:
        KeyError: on keys the key map does not know.
        ValueError: when a stored attention-bias index differs from the one formers computes.
    """
    index = grid_offset_index(config.grid_size, config.grid_size)
    kept = {}
    for key, tensor in state.items():
        if key.endswith(_BIAS_INDEX):
            if not torch.equal(tensor.cpu(), index):
                raise ValueError(f"{key} differs from the attention-bias index formers computes for the grid")
            continue
        kept[key] = tensor
    return key_map(config).to_ours(_renumber_to_ours(kept, len(config.depths) - 1))


def to_timm_efficientformer(model: EfficientFormer) -> dict[str, Tensor]:
    """formers ``EfficientFormer`` weights -> a state dict timm's ``EfficientFormer`` loads strictly."""
    if not isinstance(model, EfficientFormer):
        raise TypeError(f"to_timm_efficientformer takes an EfficientFormer, got {type(model).__name__}")
    c = model.config
    if c.grid_size != 7:
        raise ValueError(f"timm's EfficientFormer fixes the attention grid at 7x7; this model's is {c.grid_size}")
    theirs = key_map(c).to_theirs(model.state_dict())
    num_pool = c.depths[-1] - c.num_attn_blocks
    theirs = _renumber_to_theirs(theirs, num_pool)
    index = grid_offset_index(c.grid_size, c.grid_size)
    last = len(c.depths) - 1
    for k in range(c.num_attn_blocks):
        theirs[f"stages.{last}.blocks.{num_pool + 1 + k}.{_BIAS_INDEX}"] = index.clone()
    return theirs


@register_converter("timm", "efficientformer_")
def load_timm_efficientformer(
    model_name: str, state_dict: dict[str, Tensor], overrides: dict[str, Any] | None = None
) -> EfficientFormer:
    """Builds the formers ``EfficientFormer`` equal to a timm one and loads its weights (eval mode).

    Args:
        model_name: the timm name, e.g. ``"efficientformer_l1"``.
        state_dict: the timm model's ``state_dict()``.
        overrides: config fields the shapes cannot tell (``pool_size``, dropout rates, ``image_size`` within the
            grid's range).
    """
    config = config_from_timm_state(model_name, state_dict, overrides)
    model = build_model(EfficientFormer, config)
    load_state_into(model, convert_timm_state_dict(state_dict, config), source=f"timm {model_name} state dict")
    return model.eval()
