"""``timm`` ``swin_*`` and Hugging Face ``SwinForImageClassification`` <-> formers ``SwinTransformer``.

Checked against ``timm`` 1.0 and ``transformers`` 5.x (tests/interop/test_swin_interop.py): same logits to 1e-5 in
float32 for tiny random models of several shapes (non-square and padded inputs against Hugging Face), and exact
state-dict round trips.

Checkpoint variants resolved here:

- timm >= 0.9 opens stage N with its patch merging (``layers.N.downsample``, N >= 1), as formers does; older timm
  and Hugging Face close stage N with it (``layers.N.downsample`` for N < last), which is stage N + 1 here. The
  layout is read from the keys.
- timm's head is ``head.fc`` (>= 0.9) or ``head``; ``relative_position_index`` / ``attn_mask`` buffers stored by
  older files are dropped (formers rebuilds them).
- Hugging Face files name weights as the hub checkpoints do (``attention.self.query``, ``intermediate.dense``);
  ``transformers`` 5 renames them in memory (``attention.q_proj``, ``mlp.fc1``); both are read, and the separate
  query/key/value projections are fused into one ``qkv``.

Unsupported options raise: absolute position embeddings, activations other than exact ``gelu``, no q/k/v bias.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from formers.config import apply_overrides
from formers.files import load_state_into
from formers.interop.hf_directory import write_hf_directory
from formers.interop.keymap import KeyMap
from formers.models.swin import SwinConfig, SwinTransformer
from formers.registry import build_model, register_converter

# Block sub-modules: (formers, timm); formers names are relative to ``stages.{i}.blocks.{j}``.
_TIMM_BLOCK = [
    ("norm1", "norm1"),
    ("attn.qkv", "attn.qkv"),
    ("attn.out_proj", "attn.proj"),
    ("norm2", "norm2"),
    ("mlp.fc1", "mlp.fc1"),
    ("mlp.fc2", "mlp.fc2"),
]
TIMM_KEY_MAP = KeyMap(
    [
        ("patch_embed.proj.weight", "patch_embed.proj.weight"),
        ("patch_embed.proj.bias", "patch_embed.proj.bias"),
        ("embed_norm.weight", "patch_embed.norm.weight"),
        ("embed_norm.bias", "patch_embed.norm.bias"),
        ("stages.{i}.downsample.norm.weight", "layers.{i}.downsample.norm.weight"),
        ("stages.{i}.downsample.norm.bias", "layers.{i}.downsample.norm.bias"),
        ("stages.{i}.downsample.reduction.weight", "layers.{i}.downsample.reduction.weight"),
        ("stages.{i}.blocks.{j}.rel_pos.table", "layers.{i}.blocks.{j}.attn.relative_position_bias_table"),
        ("norm.weight", "norm.weight"),
        ("norm.bias", "norm.bias"),
        ("head.weight", "head.fc.weight"),
        ("head.bias", "head.fc.bias"),
    ]
    + [
        (f"stages.{{i}}.blocks.{{j}}.{ours}.{p}", f"layers.{{i}}.blocks.{{j}}.{theirs}.{p}")
        for ours, theirs in _TIMM_BLOCK
        for p in ("weight", "bias")
    ]
)

# Hugging Face names (hub layout, without the ``swin.`` prefix; q/k/v already fused into ``attention.self.qkv``).
_HF_BLOCK = [
    ("norm1", "layernorm_before"),
    ("attn.qkv", "attention.self.qkv"),
    ("attn.out_proj", "attention.output.dense"),
    ("norm2", "layernorm_after"),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense"),
]
HF_KEY_MAP = KeyMap(
    [
        ("patch_embed.proj.weight", "embeddings.patch_embeddings.projection.weight"),
        ("patch_embed.proj.bias", "embeddings.patch_embeddings.projection.bias"),
        ("embed_norm.weight", "embeddings.norm.weight"),
        ("embed_norm.bias", "embeddings.norm.bias"),
        ("stages.{i}.downsample.norm.weight", "encoder.layers.{i}.downsample.norm.weight"),
        ("stages.{i}.downsample.norm.bias", "encoder.layers.{i}.downsample.norm.bias"),
        ("stages.{i}.downsample.reduction.weight", "encoder.layers.{i}.downsample.reduction.weight"),
        (
            "stages.{i}.blocks.{j}.rel_pos.table",
            "encoder.layers.{i}.blocks.{j}.attention.self.relative_position_bias_table",
        ),
        ("norm.weight", "layernorm.weight"),
        ("norm.bias", "layernorm.bias"),
        ("head.weight", "classifier.weight"),
        ("head.bias", "classifier.bias"),
    ]
    + [
        (f"stages.{{i}}.blocks.{{j}}.{ours}.{p}", f"encoder.layers.{{i}}.blocks.{{j}}.{theirs}.{p}")
        for ours, theirs in _HF_BLOCK
        for p in ("weight", "bias")
    ]
)

_DOWNSAMPLE = re.compile(r"((?:encoder\.)?layers\.)(\d+)(\.downsample\..*)")
_TIMM_BUFFER = re.compile(r".*\.(relative_position_index|attn_mask)\Z")
# transformers 5 in-memory names -> hub names
_HF_RENAMES = [
    ("attention.q_proj.", "attention.self.query."),
    ("attention.k_proj.", "attention.self.key."),
    ("attention.v_proj.", "attention.self.value."),
    ("attention.relative_position_bias.relative_position_bias_table", "attention.self.relative_position_bias_table"),
    ("attention.o_proj.", "attention.output.dense."),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
]
_HF_QKV = re.compile(r"(encoder\.layers\.\d+\.blocks\.\d+\.attention\.self\.)(query|key|value)\.(weight|bias)\Z")


def _shift_downsample(state: dict[str, Tensor], offset: int) -> dict[str, Tensor]:
    """Moves ``layers.N.downsample`` to ``layers.(N + offset).downsample`` (end-of-stage <-> start-of-stage)."""
    out = {}
    for key, value in state.items():
        m = _DOWNSAMPLE.fullmatch(key)
        out[f"{m[1]}{int(m[2]) + offset}{m[3]}" if m else key] = value
    return out


def _closes_stages(state: dict[str, Tensor], prefix: str) -> bool:
    """Whether patch merging sits at the end of stages (``layers.0.downsample`` present) rather than the start."""
    return any(k.startswith(f"{prefix}layers.0.downsample.") for k in state)


def _stage_shapes(state: dict[str, Tensor], prefix: str, table_key: str) -> tuple[list[int], list[int], list[int]]:
    """(depths, num_heads, window side of each stage's bias table) read from the tensor shapes."""
    blocks: dict[int, set[int]] = {}
    pattern = re.compile(re.escape(prefix) + r"layers\.(\d+)\.blocks\.(\d+)\.")
    for key in state:
        if m := pattern.match(key):
            blocks.setdefault(int(m[1]), set()).add(int(m[2]))
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise KeyError(f"Swin state dict: no consecutive stages {prefix}layers.N.blocks.M (found {sorted(blocks)})")
    depths = [len(blocks[i]) for i in range(len(blocks))]
    heads, windows = [], []
    for i in range(len(depths)):
        table = state[f"{prefix}layers.{i}.blocks.0.{table_key}"]
        heads.append(table.shape[1])
        windows.append((math.isqrt(table.shape[0]) + 1) // 2)
    return depths, heads, windows


def _check_windows(config: SwinConfig, windows: list[int], source: str) -> None:
    """Raises unless the config's per-stage windows give the bias tables found in the checkpoint."""
    expected = [ws for ws, _ in config.stage_windows()]
    if expected != windows:
        raise ValueError(
            f"{source}: the relative position tables imply per-stage windows {windows}, but window_size="
            f"{config.window_size} at image_size={config.image_size} gives {expected}; pass the model's image_size "
            "(and window_size) in overrides"
        )


# ----------------------------------------------------------------------------------------------------- timm


def timm_config(model_name: str, state_dict: dict[str, Tensor], overrides: dict[str, Any] | None = None) -> SwinConfig:
    """The :class:`SwinConfig` of a timm ``swin_*`` model, from its name and tensor shapes (then ``overrides``)."""
    proj = state_dict["patch_embed.proj.weight"]  # (D, C, P, P)
    if proj.shape[2] != proj.shape[3]:
        raise ValueError(f"non-square patches {tuple(proj.shape[2:])} are not supported")
    depths, heads, windows = _stage_shapes(state_dict, "", "attn.relative_position_bias_table")
    head = state_dict.get("head.fc.weight", state_dict.get("head.weight"))
    name_size = re.search(r"_(\d+)(?:\.|$)", model_name)
    fields: dict[str, Any] = dict(
        image_size=int(name_size[1]) if name_size else 224,
        patch_size=proj.shape[2],
        in_channels=proj.shape[1],
        num_classes=0 if head is None else head.shape[0],
        embed_dim=proj.shape[0],
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_size=max(windows),  # the unshrunk stages' window
        drop_path_rate=0.0,
    )
    fc1 = state_dict.get("layers.0.blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        fields["mlp_ratio"] = fc1.shape[0] / proj.shape[0]
    overrides = dict(overrides or {})
    config = apply_overrides(SwinConfig(**fields), overrides)
    shrunk = [i for i, ws in enumerate(windows) if ws < config.window_size]
    if "image_size" not in overrides and shrunk and [ws for ws, _ in config.stage_windows()] != windows:
        # Built at another size than its name says (timm's img_size=...): the first shrunk window is that
        # stage's side; take the largest image giving it.
        k = shrunk[0]
        config = apply_overrides(config, {"image_size": windows[k] * 2**k * config.patch_size})
    _check_windows(config, windows, f"timm model {model_name!r}")
    return config


def convert_timm_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm ``swin_*`` weights (any layout since 0.6) -> formers ``SwinTransformer`` names."""
    state = {k: v for k, v in state_dict.items() if not _TIMM_BUFFER.match(k)}
    if "head.weight" in state:  # timm < 0.9 head
        state["head.fc.weight"], state["head.fc.bias"] = state.pop("head.weight"), state.pop("head.bias")
    if _closes_stages(state, ""):
        state = _shift_downsample(state, 1)
    return TIMM_KEY_MAP.to_ours(state)


def to_timm_state_dict(model: SwinTransformer) -> dict[str, Tensor]:
    """formers weights -> a timm 1.0 ``SwinTransformer`` state dict."""
    return TIMM_KEY_MAP.to_theirs(model.state_dict())


@register_converter("timm", "swin_")
def load_timm_swin(model_name: str, state_dict: dict[str, Tensor], overrides: dict[str, Any]) -> SwinTransformer:
    """Builds the formers Swin equivalent to timm model ``model_name`` and loads ``state_dict`` (eval mode)."""
    config = timm_config(model_name, state_dict, overrides)
    model = build_model(SwinTransformer, config)
    load_state_into(model, convert_timm_state_dict(state_dict), Path(f"<timm {model_name}>"))
    return model.eval()


# ------------------------------------------------------------------------------------------- Hugging Face


def config_from_hf(hf_config: dict[str, Any]) -> SwinConfig:
    """Translates a Hugging Face Swin ``config.json`` dict to a :class:`SwinConfig`.

    Raises:
        ValueError: on another model_type or options formers cannot express.
    """
    if hf_config.get("model_type", "swin") != "swin":
        raise ValueError(f"expected a Swin config (model_type 'swin'), got model_type {hf_config['model_type']!r}")
    for name, supported in (("hidden_act", "gelu"), ("use_absolute_embeddings", False), ("qkv_bias", True)):
        if hf_config.get(name, supported) != supported:
            raise ValueError(f"Swin config {name}={hf_config[name]!r} is not supported (formers needs {supported!r})")
    sizes = {}
    for name in ("image_size", "patch_size"):
        value = hf_config.get(name, 224 if name == "image_size" else 4)
        if isinstance(value, (list, tuple)):
            if len(set(value)) != 1:
                raise ValueError(f"Swin config {name}={value!r}: only square sizes are supported")
            value = value[0]
        sizes[name] = int(value)
    labels = hf_config.get("id2label")
    return SwinConfig(
        image_size=sizes["image_size"],
        patch_size=sizes["patch_size"],
        in_channels=hf_config.get("num_channels", 3),
        num_classes=len(labels) if labels else hf_config.get("num_labels", 2),
        embed_dim=hf_config.get("embed_dim", 96),
        depths=tuple(hf_config.get("depths", (2, 2, 6, 2))),
        num_heads=tuple(hf_config.get("num_heads", (3, 6, 12, 24))),
        window_size=hf_config.get("window_size", 7),
        mlp_ratio=float(hf_config.get("mlp_ratio", 4.0)),
        dropout=hf_config.get("hidden_dropout_prob", 0.0),
        attn_dropout=hf_config.get("attention_probs_dropout_prob", 0.0),
        drop_path_rate=hf_config.get("drop_path_rate", 0.1),
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-5),
    )


def hf_config_from_formers(config: SwinConfig) -> dict[str, Any]:
    """The ``config.json`` dict of a Hugging Face ``SwinForImageClassification`` like ``config``."""
    c = config
    return {
        "model_type": "swin",
        "architectures": ["SwinForImageClassification"],
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "num_channels": c.in_channels,
        "embed_dim": c.embed_dim,
        "depths": list(c.depths),
        "num_heads": list(c.num_heads),
        "window_size": c.window_size,
        "mlp_ratio": c.mlp_ratio,
        "qkv_bias": True,
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attn_dropout,
        "drop_path_rate": c.drop_path_rate,
        "hidden_act": "gelu",
        "use_absolute_embeddings": False,
        "layer_norm_eps": c.layer_norm_eps,
        "id2label": {str(i): f"LABEL_{i}" for i in range(c.num_classes)},
        "label2id": {f"LABEL_{i}": i for i in range(c.num_classes)},
    }


def _hf_hub_names(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drops the ``swin.`` prefix and index buffers; renames transformers-5 in-memory names to hub names."""
    out = {}
    for key, value in hf_state.items():
        name = key.removeprefix("swin.")
        if name.endswith("relative_position_index"):
            continue
        for new, old in _HF_RENAMES:
            name = name.replace(new, old)
        out[name] = value
    return out


def convert_hf_state_dict(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face ``SwinForImageClassification`` / ``SwinModel`` weights -> formers ``SwinTransformer`` names."""
    state = _hf_hub_names(hf_state)
    parts: dict[tuple[str, str], dict[str, Tensor]] = {}
    fused = {}
    for key, value in state.items():
        if m := _HF_QKV.match(key):
            parts.setdefault((m[1], m[3]), {})[m[2]] = value
        else:
            fused[key] = value
    for (prefix, param), qkv in parts.items():
        if set(qkv) != {"query", "key", "value"}:
            raise KeyError(f"Swin state dict: {prefix} holds {sorted(qkv)} {param}s, needs query, key and value")
        fused[f"{prefix}qkv.{param}"] = torch.cat([qkv["query"], qkv["key"], qkv["value"]])  # (3D, ...) [q; k; v]
    if _closes_stages(fused, "encoder."):
        fused = _shift_downsample(fused, 1)
    return HF_KEY_MAP.to_ours(fused)


def to_hf_state_dict(model: SwinTransformer) -> dict[str, Tensor]:
    """formers weights -> the hub names of ``SwinForImageClassification`` (``swin.`` prefix, separate q/k/v)."""
    theirs = _shift_downsample(HF_KEY_MAP.to_theirs(model.state_dict()), -1)
    out = {}
    for key, value in theirs.items():
        if key.endswith((".attention.self.qkv.weight", ".attention.self.qkv.bias")):
            stem, param = key.rsplit(".qkv.", 1)
            for name, part in zip(("query", "key", "value"), value.chunk(3), strict=True):
                out[f"swin.{stem}.{name}.{param}"] = part
        else:
            out[key if key.startswith("classifier.") else "swin." + key] = value
    return out


@register_converter("hf", "swin")
def swin_from_hf(meta: dict[str, Any], hf_state: dict[str, Tensor], source: Path) -> tuple[SwinTransformer, dict[str, Tensor]]:
    """A formers ``SwinTransformer`` for a Hugging Face Swin directory and its weights renamed to formers' keys."""
    config = config_from_hf(meta)
    state = convert_hf_state_dict(hf_state)
    if "head.weight" not in state:  # a bare SwinModel: no classifier
        config.num_classes = 0
    elif state["head.weight"].shape[0] != config.num_classes:
        config.num_classes = state["head.weight"].shape[0]
    tables = [state[f"stages.{i}.blocks.0.rel_pos.table"] for i in range(len(config.depths))]
    windows = [(math.isqrt(t.shape[0]) + 1) // 2 for t in tables]
    _check_windows(config, windows, str(source))
    return build_model(SwinTransformer, config), state


def save_swin_directory(model: SwinTransformer, directory: str | Path) -> Path:
    """Writes ``config.json`` and ``model.safetensors`` loadable by ``transformers``' ``SwinForImageClassification``."""
    if not isinstance(model, SwinTransformer):
        raise TypeError(f"save_swin_directory takes a SwinTransformer, got {type(model).__name__}")
    if model.config.num_classes == 0:
        raise ValueError("save_swin_directory needs a classification head (num_classes > 0)")
    return write_hf_directory(directory, hf_config_from_formers(model.config), to_hf_state_dict(model))
