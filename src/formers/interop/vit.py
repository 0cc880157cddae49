"""timm ``VisionTransformer`` and Hugging Face ``ViTForImageClassification`` / ``ViTModel`` <-> formers ``ViT``.

Checked against timm 1.0 and ``transformers`` 5.x (tests/interop/test_vit_interop.py): tiny random models of several shapes
give the same logits to 1e-5 in float32, at their resolution and at new ones, and the inverse conversions load
back into timm / ``transformers`` with the same logits.

timm: ``load_timm_vit(model_name, state_dict, overrides)`` reads the architecture from the tensor shapes (patch
size, channels, width, depth, MLP width, position grid, classes) and the number of heads from the model name's
size (``tiny`` 3, ``small`` 6, ``base`` 12, ``large``/``huge`` 16) when the width is that size's, else from
``overrides["num_heads"]``. LayerNorm eps is timm's 1e-6 and position embeddings are resampled as timm's
``dynamic_img_size=True`` does. Options formers' ViT does not implement raise a ``ValueError`` naming them:
register tokens, LayerScale, q/k norms, ``fc_norm`` (timm's default for ``global_pool='avg'``; build the reference
with ``fc_norm=False``), pre-norm, no class token, no qkv bias, position embeddings without the class entry.

Hugging Face: checkpoints on disk use the names ``vit.encoder.layer.{i}.attention.attention.query`` ... (what
``save_pretrained`` writes); separate query/key/value projections are fused into formers' ``qkv`` in that order.
A ``ViTModel`` directory (no classifier) becomes a ``ViT`` with ``num_classes=0``, whose output is the final
class-token state; its pooler (dense + tanh), which classification never uses, is dropped with a warning.
Position embeddings are resampled as ``interpolate_pos_encoding=True`` does (``pos_embed_antialias=False``).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from formers.config import apply_overrides
from formers.files import load_state_into
from formers.interop.hf_directory import write_hf_directory
from formers.interop.keymap import KeyMap, check_keys
from formers.models.vit import ViT, ViTConfig
from formers.registry import build_model, register_converter

# ---------------------------------------------------------------------------------------------------- timm

_BLOCK = [  # (formers, timm) sub-module names inside blocks.{i}
    ("self_attn_norm", "norm1"),
    ("self_attn.qkv", "attn.qkv"),
    ("self_attn.out_proj", "attn.proj"),
    ("ffn_norm", "norm2"),
    ("ffn.fc1", "mlp.fc1"),
    ("ffn.fc2", "mlp.fc2"),
]

TIMM_KEY_MAP = KeyMap(
    [
        ("cls_token", "cls_token"),
        ("pos_embed", "pos_embed"),
        ("patch_embed.proj.weight", "patch_embed.proj.weight"),
        ("patch_embed.proj.bias", "patch_embed.proj.bias"),
        ("norm.weight", "norm.weight"),
        ("norm.bias", "norm.bias"),
        ("head.weight", "head.weight"),
        ("head.bias", "head.bias"),
    ]
    + [
        (f"blocks.{{i}}.{ours}.{p}", f"blocks.{{i}}.{theirs}.{p}")
        for ours, theirs in _BLOCK
        for p in ("weight", "bias")
    ]
)

# timm options formers' ViT does not implement, recognised by their parameters.
_TIMM_UNSUPPORTED = [
    (re.compile(r"reg_token\Z"), "register tokens (reg_tokens)"),
    (re.compile(r"blocks\.\d+\.ls\d\."), "LayerScale (init_values)"),
    (re.compile(r"blocks\.\d+\.attn\.(q_norm|k_norm)\."), "q/k normalisation (qk_norm)"),
    (re.compile(r"blocks\.\d+\.(attn\.norm|mlp\.norm)\."), "norms inside attention/MLP (scale_*_norm)"),
    (re.compile(r"fc_norm\."), "fc_norm (the norm after average pooling; build timm with fc_norm=False)"),
    (re.compile(r"norm_pre\."), "pre-norm (pre_norm=True, CLIP)"),
    (re.compile(r"patch_embed\.norm\."), "a norm after the patch embedding"),
    (re.compile(r"attn_pool\."), "attention pooling (global_pool='map')"),
]

# Model-name size -> (width, heads) of the published models.
_TIMM_SIZES = {
    "tiny": (192, 3),
    "small": (384, 6),
    "medium": (512, 8),
    "base": (768, 12),
    "large": (1024, 16),
    "huge": (1280, 16),
}


def _mlp_ratio(mlp_dim: int, embed_dim: int) -> float:
    """A ratio r with int(embed_dim * r) == mlp_dim exactly (floating rounding could lose one unit)."""
    for ratio in (mlp_dim / embed_dim, (mlp_dim + 0.5) / embed_dim):
        if int(embed_dim * ratio) == mlp_dim:
            return ratio
    raise ValueError(f"cannot express MLP width {mlp_dim} as a ratio of embed_dim {embed_dim}")


def _square_grid(num_patches: int, what: str) -> int:
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(
            f"{what} covers {num_patches} patch positions, not a square grid; formers' ViT takes square "
            "image_size (pass overrides={'image_size': ...} only for square grids)"
        )
    return side


def _timm_num_heads(model_name: str, embed_dim: int, overrides: dict[str, Any]) -> int:
    if "num_heads" in overrides:
        return int(overrides["num_heads"])
    match = re.match(r"vit_([a-z]+)_", model_name)
    size = _TIMM_SIZES.get(match.group(1)) if match else None
    if size is not None and size[0] == embed_dim:
        return size[1]
    raise ValueError(
        f"cannot tell the number of heads of timm model {model_name!r} with embed_dim {embed_dim}: the name's size "
        f"does not match the weights; pass overrides={{'num_heads': ...}}"
    )


def timm_vit_config(
    model_name: str, state_dict: dict[str, Tensor], overrides: dict[str, Any] | None = None
) -> ViTConfig:
    """The :class:`ViTConfig` of a timm ViT state dict (shapes + name), with ``overrides`` applied last.

    Raises:
        ValueError: on timm options formers' ViT does not implement, or heads that cannot be told.
    """
    overrides = dict(overrides or {})
    for pattern, option in _TIMM_UNSUPPORTED:
        hits = [k for k in state_dict if pattern.match(k)]
        if hits:
            raise ValueError(
                f"timm model {model_name!r} uses {option} ({hits[0]}), which formers' ViT does not implement"
            )
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight"):
        if key not in state_dict:
            raise ValueError(
                f"timm ViT state dict lacks {key!r} (formers' ViT needs a class token, learned position embeddings "
                "and at least one block)"
            )
    if "blocks.0.attn.qkv.bias" not in state_dict:
        raise ValueError("timm ViT without qkv bias (qkv_bias=False) is not supported by formers' ViT")
    embed_dim, in_channels, patch_h, patch_w = state_dict["patch_embed.proj.weight"].shape
    if patch_h != patch_w:
        raise ValueError(f"non-square patches {patch_h}x{patch_w} are not supported by formers' ViT")
    num_layers = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k)))
    num_patches = state_dict["pos_embed"].shape[1] - 1  # the class token's entry comes first
    grid = _square_grid(num_patches, "pos_embed (without the class entry; no_embed_class=True is not supported)")
    head = state_dict.get("head.weight")
    fields: dict[str, Any] = dict(
        image_size=grid * patch_h,
        patch_size=patch_h,
        in_channels=in_channels,
        num_classes=0 if head is None else head.shape[0],
        embed_dim=embed_dim,
        num_layers=num_layers,
        num_heads=_timm_num_heads(model_name, embed_dim, overrides),
        mlp_ratio=_mlp_ratio(state_dict["blocks.0.mlp.fc1.weight"].shape[0], embed_dim),
        layer_norm_eps=1e-6,
        pos_embed_antialias=True,
    )
    overrides.pop("num_heads", None)
    config = apply_overrides(ViTConfig(**fields), overrides)
    if config.grid_size[0] ** 2 != num_patches:
        raise ValueError(
            f"overrides image_size={config.image_size} gives a {config.grid_size[0]}x{config.grid_size[1]} grid but "
            f"pos_embed covers {num_patches} patches"
        )
    return config


def convert_timm_vit_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm ``VisionTransformer`` weights -> formers ``ViT`` weights (renaming only)."""
    return TIMM_KEY_MAP.to_ours(state_dict)


def to_timm_vit_state_dict(model: ViT) -> dict[str, Tensor]:
    """formers ``ViT`` weights -> the state dict of the equivalent timm ``VisionTransformer``.

    Build the timm model with ``global_pool='avg', fc_norm=False`` when ``model.config.global_pool == "avg"``.
    """
    return TIMM_KEY_MAP.to_theirs(model.state_dict())


@register_converter("timm", "vit_")
def load_timm_vit(model_name: str, state_dict: dict[str, Tensor], overrides: dict[str, Any] | None = None) -> ViT:
    """Builds a formers ``ViT`` from a timm ViT state dict (see the module docstring for what is read where).

    Args:
        model_name: timm name, e.g. ``"vit_base_patch16_224"``.
        state_dict: the timm model's ``state_dict()``.
        overrides: :class:`ViTConfig` fields to set (``num_heads`` for non-standard widths, ``global_pool``,
            ``layer_norm_eps``, ``drop_path_rate`` ...).

    Returns:
        The model in eval mode.
    """
    config = timm_vit_config(model_name, state_dict, overrides)
    model = build_model(ViT, config)
    load_state_into(model, convert_timm_vit_state_dict(state_dict), Path(f"<timm {model_name} state dict>"))
    return model.eval()


# ------------------------------------------------------------------------------------------- Hugging Face

HF_PREFIX = "vit."
_HF_LAYER = "encoder.layer.{i}."
_HF_QKV = ("query", "key", "value")
_HF_FUSED = "encoder.layer.{i}.attention.attention.qkv.{param}"  # stands for query/key/value stacked
_HF_POOLER = re.compile(r"pooler\.")

HF_KEY_MAP = KeyMap(
    [
        ("cls_token", "embeddings.cls_token"),
        ("pos_embed", "embeddings.position_embeddings"),
        ("patch_embed.proj.weight", "embeddings.patch_embeddings.projection.weight"),
        ("patch_embed.proj.bias", "embeddings.patch_embeddings.projection.bias"),
        ("norm.weight", "layernorm.weight"),
        ("norm.bias", "layernorm.bias"),
        ("head.weight", "classifier.weight"),
        ("head.bias", "classifier.bias"),
    ]
    + [
        (f"blocks.{{i}}.{ours}.{p}", f"encoder.layer.{{i}}.{theirs}.{p}")
        for ours, theirs in [
            ("self_attn_norm", "layernorm_before"),
            ("self_attn.qkv", "attention.attention.qkv"),
            ("self_attn.out_proj", "attention.output.dense"),
            ("ffn_norm", "layernorm_after"),
            ("ffn.fc1", "intermediate.dense"),
            ("ffn.fc2", "output.dense"),
        ]
        for p in ("weight", "bias")
    ]
)

# Options that change the computation: the value formers implements; any other value raises.
_HF_FIXED_OPTIONS = {"hidden_act": "gelu", "qkv_bias": True}


def config_from_hf_vit(hf_config: dict[str, Any], num_classes: int) -> ViTConfig:
    """Translates a Hugging Face ViT ``config.json`` dict to a :class:`ViTConfig` with ``num_classes`` classes."""
    model_type = hf_config.get("model_type", "vit")
    if model_type != "vit":
        raise ValueError(f"expected a ViT config (model_type 'vit'), got model_type {model_type!r}")
    for name, supported in _HF_FIXED_OPTIONS.items():
        if hf_config.get(name, supported) != supported:
            raise ValueError(f"ViT config {name}={hf_config[name]!r} is not supported by formers (needs {supported!r})")
    sizes = {}
    for name in ("image_size", "patch_size"):
        value = hf_config.get(name, 224 if name == "image_size" else 16)
        if isinstance(value, (list, tuple)):
            if len(set(value)) != 1:
                raise ValueError(f"ViT config {name}={value} is not square; formers' ViT takes square sizes")
            value = value[0]
        sizes[name] = int(value)
    embed_dim = hf_config.get("hidden_size", 768)
    return ViTConfig(
        image_size=sizes["image_size"],
        patch_size=sizes["patch_size"],
        in_channels=hf_config.get("num_channels", 3),
        num_classes=num_classes,
        embed_dim=embed_dim,
        num_layers=hf_config.get("num_hidden_layers", 12),
        num_heads=hf_config.get("num_attention_heads", 12),
        mlp_ratio=_mlp_ratio(hf_config.get("intermediate_size", 3072), embed_dim),
        dropout=hf_config.get("hidden_dropout_prob", 0.0),
        attn_dropout=hf_config.get("attention_probs_dropout_prob", 0.0),
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
        pos_embed_antialias=False,
    )


def hf_vit_config_from_formers(config: ViTConfig) -> dict[str, Any]:
    """The ``config.json`` dict of the Hugging Face model (``ViTForImageClassification``, or ``ViTModel`` when
    ``num_classes == 0``) equivalent to ``config``."""
    c = config
    labels = {str(i): f"LABEL_{i}" for i in range(c.num_classes)}
    return {
        "model_type": "vit",
        "architectures": ["ViTForImageClassification" if c.num_classes else "ViTModel"],
        "hidden_size": c.embed_dim,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "intermediate_size": c.mlp_dim,
        "hidden_act": "gelu",
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attn_dropout,
        "initializer_range": 0.02,
        "layer_norm_eps": c.layer_norm_eps,
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "num_channels": c.in_channels,
        "qkv_bias": True,
        "encoder_stride": c.patch_size,
        "id2label": labels,
        "label2id": {v: int(k) for k, v in labels.items()},
    }


def _without_prefix(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Names every key as in a bare ``ViTModel`` (``classifier.*`` unchanged)."""
    out: dict[str, Tensor] = {}
    for key, tensor in hf_state.items():
        name = key.removeprefix(HF_PREFIX)
        if name in out:
            raise KeyError(f"ViT state dict holds {name!r} both with and without the {HF_PREFIX!r} prefix")
        out[name] = tensor
    return out


# transformers 5 names its in-memory modules differently from the files (which keep the names above); a state dict
# taken from a live model is renamed to the file names first.
_HF_LIVE_NAMES = [
    (re.compile(r"layers\.(\d+)\.attention\.q_proj\."), r"encoder.layer.\1.attention.attention.query."),
    (re.compile(r"layers\.(\d+)\.attention\.k_proj\."), r"encoder.layer.\1.attention.attention.key."),
    (re.compile(r"layers\.(\d+)\.attention\.v_proj\."), r"encoder.layer.\1.attention.attention.value."),
    (re.compile(r"layers\.(\d+)\.attention\.o_proj\."), r"encoder.layer.\1.attention.output.dense."),
    (re.compile(r"layers\.(\d+)\.mlp\.fc1\."), r"encoder.layer.\1.intermediate.dense."),
    (re.compile(r"layers\.(\d+)\.mlp\.fc2\."), r"encoder.layer.\1.output.dense."),
    (re.compile(r"layers\.(\d+)\.(layernorm_before|layernorm_after)\."), r"encoder.layer.\1.\2."),
]


def _file_names(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Renames transformers 5 in-memory keys (``layers.{i}.attention.q_proj``) to the checkpoint-file names."""
    out = {}
    for key, tensor in state.items():
        for pattern, replacement in _HF_LIVE_NAMES:
            if pattern.match(key):
                key = pattern.sub(replacement, key, count=1)
                break
        out[key] = tensor
    return out


def _hf_num_layers(state: dict[str, Tensor]) -> int:
    layers = [int(m.group(1)) for k in state if (m := re.match(r"encoder\.layer\.(\d+)\.", k))]
    return 1 + max(layers) if layers else 0


def convert_hf_vit_state_dict(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face ViT weights (file or transformers 5 in-memory names, with or without the ``vit.`` prefix; no
    pooler) -> formers ``ViT`` weights.

    Raises:
        KeyError: on keys the key map does not know or a missing query/key/value projection.
    """
    state = _file_names(_without_prefix(hf_state))
    for i in range(_hf_num_layers(state)):
        for param in ("weight", "bias"):
            names = [f"{_HF_LAYER.format(i=i)}attention.attention.{n}.{param}" for n in _HF_QKV]
            check_keys({n: state[n] for n in names if n in state}, names, what=f"ViT layer {i} attention")
            fused = torch.cat([state.pop(n) for n in names], dim=0)  # 3 x (D, ...) -> (3D, ...)
            state[_HF_FUSED.format(i=i, param=param)] = fused
    return HF_KEY_MAP.to_ours(state)


def to_hf_vit_state_dict(model: ViT) -> dict[str, Tensor]:
    """formers ``ViT`` weights -> those ``save_pretrained`` writes for ``ViTForImageClassification`` (``vit.``
    prefix, ``classifier``) or, when ``num_classes == 0``, ``ViTModel`` (no prefix; no pooler)."""
    theirs = HF_KEY_MAP.to_theirs(model.state_dict())
    for i in range(model.config.num_layers):
        for param in ("weight", "bias"):
            fused = theirs.pop(_HF_FUSED.format(i=i, param=param))
            for name, part in zip(_HF_QKV, fused.chunk(3, dim=0), strict=True):  # (3D, ...) -> 3 x (D, ...)
                theirs[f"{_HF_LAYER.format(i=i)}attention.attention.{name}.{param}"] = part
    if model.config.num_classes:
        theirs = {k if k.startswith("classifier.") else HF_PREFIX + k: v for k, v in theirs.items()}
    return theirs


@register_converter("hf", "vit")
def vit_from_hf(meta: dict[str, Any], hf_state: dict[str, Tensor], source: Path) -> tuple[ViT, dict[str, Tensor]]:
    """A formers ``ViT`` for a Hugging Face ``ViTForImageClassification`` or ``ViTModel`` directory, and its
    weights renamed to formers' keys (the ``ViTModel`` pooler is dropped with a warning)."""
    hf_state = _without_prefix(hf_state)
    pooler = [k for k in hf_state if _HF_POOLER.match(k)]
    if pooler:
        warnings.warn(
            f"{source}: the ViTModel pooler (dense + tanh) is dropped; the model returns the class-token state",
            stacklevel=2,
        )
        hf_state = {k: v for k, v in hf_state.items() if k not in pooler}
    if "embeddings.mask_token" in hf_state:
        raise ValueError(f"{source} holds a mask token (ViTForMaskedImageModeling), which formers does not implement")
    head = hf_state.get("classifier.weight")
    config = config_from_hf_vit(meta, num_classes=0 if head is None else head.shape[0])
    return build_model(ViT, config), convert_hf_vit_state_dict(hf_state)


def save_vit_directory(model: ViT, directory: str | Path) -> Path:
    """Writes ``config.json`` and ``model.safetensors`` loadable by ``transformers``' ``ViTForImageClassification``
    (or ``ViTModel`` when ``num_classes == 0``).

    Hugging Face resamples position embeddings without antialiasing, so a model converted from timm gives the same
    logits there at its own resolution only.

    Raises:
        ValueError: for ``global_pool="avg"``, which Hugging Face's ViT cannot express.
    """
    if not isinstance(model, ViT):
        raise TypeError(f"save_vit_directory takes a formers ViT, got {type(model).__name__}")
    if model.config.global_pool != "token":
        raise ValueError(
            f"Hugging Face's ViT pools the class token; this model uses global_pool={model.config.global_pool!r}"
        )
    return write_hf_directory(directory, hf_vit_config_from_formers(model.config), to_hf_vit_state_dict(model))
