"""Hugging Face ``DetrForObjectDetection`` <-> formers ``DETR``.

Checked against ``transformers`` 5.x (tests/interop/test_detr_interop.py): tiny random models with a Hugging Face
ResNet backbone (``use_timm_backbone=False``, basic and bottleneck blocks) and with a ``timm`` ResNet backbone (the
layout of the published ``facebook/detr-resnet-50`` checkpoints) give the same logits and boxes to 1e-5 in float32,
with and without padded images; models written back by :func:`save_detr_directory` load into ``transformers`` with
the same outputs.

Names: checkpoints on disk use the names ``save_pretrained`` writes (``model.backbone.conv_encoder.model...``,
``self_attn.out_proj``, ``fc1``); transformers 5's in-memory names (``backbone.model``, ``o_proj``, ``mlp.fc1``) are
renamed to those first, so a live model's ``state_dict()`` converts as well. A timm ResNet has torchvision's names,
which formers' backbone keeps; a Hugging Face ResNet (``embedder``, ``stages``, ``shortcut``) is renamed stage by
stage. ``num_batches_tracked`` counters of older checkpoints are dropped (the BatchNorm is frozen).

DC5 models (``dilation=True``: a timm ResNet-50/101 at ``output_stride=16``, ``facebook/detr-resnet-50-dc5``) load
as ``backbone_dilation=True``; as in ``transformers``, ``dilation`` only applies to timm backbones.

What formers' DETR does not implement raises a ``ValueError`` naming the option: learned position embeddings,
different encoder/decoder widths or heads, non-ResNet backbones, backbones whose stage widths do not double from the
stem, dilated basic-block ResNets, or Hugging Face ResNets that downsample in the first stage or in the bottleneck's
1x1 conv. Exports use the Hugging Face ResNet backbone form, which ``transformers`` loads without timm; a DC5 model
(which that form cannot express) is written with its timm backbone, as the published DC5 checkpoints are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import Tensor

from formers.interop.hf_directory import write_hf_directory
from formers.interop.keymap import KeyMap
from formers.layers import ACTIVATIONS
from formers.models.detr import DETR, DETRConfig
from formers.registry import register_converter

# ------------------------------------------------------------------------------------------------- key maps

_BACKBONE = "model.backbone.conv_encoder.model."
_BN = ("weight", "bias", "running_mean", "running_var")
_ATTN = ("q_proj", "k_proj", "v_proj", "out_proj")

_TRANSFORMER_RULES = [
    ("input_proj.weight", "model.input_projection.weight"),
    ("input_proj.bias", "model.input_projection.bias"),
    ("query_embed.weight", "model.query_position_embeddings.weight"),
    ("decoder_norm.weight", "model.decoder.layernorm.weight"),
    ("decoder_norm.bias", "model.decoder.layernorm.bias"),
    ("class_head.weight", "class_labels_classifier.weight"),
    ("class_head.bias", "class_labels_classifier.bias"),
    ("box_head.layers.{i}.weight", "bbox_predictor.layers.{i}.weight"),
    ("box_head.layers.{i}.bias", "bbox_predictor.layers.{i}.bias"),
] + [
    (f"{side}.{{i}}.{ours}.{p}", f"model.{side}.layers.{{i}}.{theirs}.{p}")
    for side, pairs in [
        ("encoder", [("self_attn_norm", "self_attn_layer_norm"), ("ffn.fc1", "fc1"), ("ffn.fc2", "fc2"),
                     ("ffn_norm", "final_layer_norm")] + [(f"self_attn.{a}", f"self_attn.{a}") for a in _ATTN]),
        ("decoder", [("self_attn_norm", "self_attn_layer_norm"), ("cross_attn_norm", "encoder_attn_layer_norm"),
                     ("ffn.fc1", "fc1"), ("ffn.fc2", "fc2"), ("ffn_norm", "final_layer_norm")]
         + [(f"self_attn.{a}", f"self_attn.{a}") for a in _ATTN]
         + [(f"cross_attn.{a}", f"encoder_attn.{a}") for a in _ATTN]),
    ]
    for ours, theirs in pairs
    for p in ("weight", "bias")
]

# timm's ResNet (published DETR checkpoints) has torchvision's names, as formers' backbone.
_TIMM_BACKBONE_RULES = [
    ("backbone.conv1.weight", f"{_BACKBONE}conv1.weight"),
    ("backbone.layer{s}.{l}.conv{k}.weight", f"{_BACKBONE}layer{{s}}.{{l}}.conv{{k}}.weight"),
    ("backbone.layer{s}.{l}.downsample.0.weight", f"{_BACKBONE}layer{{s}}.{{l}}.downsample.0.weight"),
] + [
    rule
    for p in _BN
    for rule in [
        (f"backbone.bn1.{p}", f"{_BACKBONE}bn1.{p}"),
        (f"backbone.layer{{s}}.{{l}}.bn{{k}}.{p}", f"{_BACKBONE}layer{{s}}.{{l}}.bn{{k}}.{p}"),
        (f"backbone.layer{{s}}.{{l}}.downsample.1.{p}", f"{_BACKBONE}layer{{s}}.{{l}}.downsample.1.{p}"),
    ]
]

# Hugging Face's ResNet counts stages and convolutions from 0 (torchvision: layer1.., conv1..), so each is spelt out.
_HF_STAGE = _BACKBONE + "encoder.stages.{s}.layers.{{l}}."
_HF_RESNET_RULES = [("backbone.conv1.weight", f"{_BACKBONE}embedder.embedder.convolution.weight")] + [
    (f"backbone.bn1.{p}", f"{_BACKBONE}embedder.embedder.normalization.{p}") for p in _BN
]
for _s in range(4):
    _stage = _HF_STAGE.format(s=_s)
    _HF_RESNET_RULES += [
        (f"backbone.layer{_s + 1}.{{l}}.downsample.0.weight", f"{_stage}shortcut.convolution.weight"),
        *[(f"backbone.layer{_s + 1}.{{l}}.downsample.1.{p}", f"{_stage}shortcut.normalization.{p}") for p in _BN],
    ]
    for _k in range(3):
        _HF_RESNET_RULES += [
            (f"backbone.layer{_s + 1}.{{l}}.conv{_k + 1}.weight", f"{_stage}layer.{_k}.convolution.weight"),
            *[(f"backbone.layer{_s + 1}.{{l}}.bn{_k + 1}.{p}", f"{_stage}layer.{_k}.normalization.{p}") for p in _BN],
        ]

HF_KEY_MAP = KeyMap(_TRANSFORMER_RULES + _HF_RESNET_RULES)
"""formers ``DETR`` <-> ``DetrForObjectDetection`` with a Hugging Face ResNet backbone (``use_timm_backbone=False``)."""
HF_TIMM_KEY_MAP = KeyMap(_TRANSFORMER_RULES + _TIMM_BACKBONE_RULES)
"""formers ``DETR`` <-> ``DetrForObjectDetection`` with a timm ResNet backbone (``facebook/detr-resnet-50``)."""

# transformers 5 in-memory names -> checkpoint-file names.
_HF_LIVE_NAMES = [
    (re.compile(r"model\.backbone\.model\."), _BACKBONE),
    (re.compile(r"\.o_proj\."), ".out_proj."),
    (re.compile(r"layers\.(\d+)\.mlp\.(fc\d)\."), r"layers.\1.\2."),
]


def _file_names(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Renames transformers 5 in-memory keys to the file names and drops BatchNorm ``num_batches_tracked``."""
    out = {}
    for key, tensor in hf_state.items():
        if key.endswith("num_batches_tracked"):
            continue
        for pattern, replacement in _HF_LIVE_NAMES:
            key = pattern.sub(replacement, key)
        out[key] = tensor
    return out


# ------------------------------------------------------------------------------------------------- configs

_TIMM_RESNETS = {  # timm model name -> (block, depths)
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
}


def _uses_timm_backbone(hf_config: dict[str, Any]) -> bool:
    backbone = hf_config.get("backbone_config") or {}
    return bool(hf_config.get("use_timm_backbone")) or backbone.get("model_type") == "timm_backbone" or not backbone


def _backbone_fields(hf_config: dict[str, Any]) -> dict[str, Any]:
    """The backbone fields of :class:`DETRConfig` for a Hugging Face DETR config (timm or HF ResNet backbone)."""
    backbone = hf_config.get("backbone_config") or {}
    if _uses_timm_backbone(hf_config):
        name = backbone.get("backbone") or hf_config.get("backbone") or "resnet50"
        if name not in _TIMM_RESNETS:
            raise ValueError(f"DETR timm backbone {name!r} is not supported by formers; supported: {sorted(_TIMM_RESNETS)}")
        # transformers turns dilation=True into the timm backbone's output_stride=16 (older configs: the flag only)
        stride = backbone.get("output_stride") or (16 if not backbone and hf_config.get("dilation") else 32)
        if stride not in (16, 32):
            raise ValueError(f"DETR backbone output_stride={stride} is not supported (16: DC5, or 32)")
        block, depths = _TIMM_RESNETS[name]
        if stride == 16 and block != "bottleneck":
            raise ValueError(f"DETR dilation (DC5) with the basic-block {name!r} is not supported: formers dilates "
                             "bottleneck ResNets (resnet50, resnet101)")
        return dict(backbone_block=block, backbone_depths=depths, backbone_width=64, backbone_dilation=stride == 16)
    if backbone.get("model_type") != "resnet":
        raise ValueError(f"DETR backbone model_type {backbone.get('model_type')!r} is not supported; formers takes ResNets")
    for option in ("downsample_in_first_stage", "downsample_in_bottleneck"):
        if backbone.get(option):
            raise ValueError(f"DETR ResNet backbone {option}=True is not supported by formers (torchvision's layout)")
    if backbone.get("hidden_act", "relu") != "relu":
        raise ValueError(f"DETR ResNet backbone hidden_act={backbone['hidden_act']!r} is not supported (needs 'relu')")
    if list(backbone.get("out_features") or ["stage4"])[-1] != "stage4":
        raise ValueError(f"DETR ResNet backbone out_features={backbone['out_features']} must end with 'stage4'")
    block = "basic" if backbone.get("layer_type", "bottleneck") == "basic" else "bottleneck"
    depths = list(backbone.get("depths", [3, 4, 6, 3]))
    width = int(backbone.get("embedding_size", 64))
    expansion = 1 if block == "basic" else 4
    widths = list(backbone.get("hidden_sizes", [256, 512, 1024, 2048]))
    if widths != [width * 2**i * expansion for i in range(len(widths))]:
        raise ValueError(
            f"DETR ResNet backbone hidden_sizes={widths} with embedding_size={width}: formers' ResNet needs stage "
            f"widths {[width * 2**i * expansion for i in range(4)]} (doubling from the stem, x{expansion} per block)"
        )
    return dict(backbone_block=block, backbone_depths=depths, backbone_width=width)


def config_from_hf_detr(hf_config: dict[str, Any], num_classes: int | None = None) -> DETRConfig:
    """Translates a Hugging Face DETR ``config.json`` dict to a :class:`DETRConfig`.

    Args:
        hf_config: the parsed ``config.json``.
        num_classes: labels without "no object" (default: the size of ``id2label``).
    """
    c = hf_config
    if c.get("model_type", "detr") != "detr":
        raise ValueError(f"expected a DETR config (model_type 'detr'), got model_type {c.get('model_type')!r}")
    if c.get("position_embedding_type", "sine") != "sine":
        raise ValueError(f"DETR position_embedding_type={c['position_embedding_type']!r} is not supported (needs 'sine')")
    for ours, enc, dec in [("num_heads", "encoder_attention_heads", "decoder_attention_heads"),
                           ("ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim")]:
        if c.get(enc, 8) != c.get(dec, 8):
            raise ValueError(f"DETR {enc}={c.get(enc)} differs from {dec}={c.get(dec)}; formers shares one {ours}")
    activation = c.get("activation_function", "relu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"DETR activation_function={activation!r} is not supported; supported: {sorted(ACTIVATIONS)}")
    labels = len(c.get("id2label") or {}) or 91
    return DETRConfig(
        num_classes=num_classes if num_classes is not None else labels,
        in_channels=c.get("num_channels", 3),
        **_backbone_fields(c),
        backbone_norm="frozen_batch",
        embed_dim=c.get("d_model", 256),
        num_encoder_layers=c.get("encoder_layers", 6),
        num_decoder_layers=c.get("decoder_layers", 6),
        num_heads=c.get("encoder_attention_heads", 8),
        ffn_dim=c.get("encoder_ffn_dim", 2048),
        dropout=c.get("dropout", 0.1),
        attn_dropout=c.get("attention_dropout", 0.0),
        activation_dropout=c.get("activation_dropout", 0.0),
        activation=activation,
        num_queries=c.get("num_queries", 100),
    )


def hf_detr_config_from_formers(config: DETRConfig) -> dict[str, Any]:
    """The ``config.json`` dict of the ``DetrForObjectDetection`` equivalent to ``config`` (a Hugging Face ResNet
    backbone, ``use_timm_backbone=False``; a DC5 model: timm's ResNet with ``dilation=True``)."""
    c = config
    if c.class_scores != "softmax":  # HF's DETR post-processing takes the softmax over num_labels + 1
        raise ValueError(f"DetrForObjectDetection scores classes with a softmax; this model has "
                         f"class_scores={c.class_scores!r} (trained with the focal loss) and has no HF DETR equivalent")
    expansion = 1 if c.backbone_block == "basic" else 4
    labels = {str(i): f"LABEL_{i}" for i in range(c.num_classes)}
    if c.backbone_dilation:  # timm's ResNet at output stride 16, as transformers builds it for dilation=True
        name = _timm_name(c)
        timm = {"model_type": "timm_backbone", "backbone": name, "num_channels": c.in_channels, "features_only": True,
                "use_pretrained_backbone": False, "out_indices": [1, 2, 3, 4], "output_stride": 16}
        backbone = {"use_timm_backbone": True, "backbone": name, "dilation": True, "use_pretrained_backbone": False,
                    "backbone_config": timm}
    else:
        backbone = {"use_timm_backbone": False, "dilation": False, "backbone_config": {
            "model_type": "resnet",
            "num_channels": c.in_channels,
            "embedding_size": c.backbone_width,
            "hidden_sizes": [c.backbone_width * 2**i * expansion for i in range(4)],
            "depths": list(c.backbone_depths),
            "layer_type": c.backbone_block,
            "hidden_act": "relu",
            "downsample_in_first_stage": False,
            "downsample_in_bottleneck": False,
            "out_features": ["stage4"],
        }}
    return {
        "model_type": "detr",
        "architectures": ["DetrForObjectDetection"],
        **backbone,
        "num_channels": c.in_channels,
        "num_queries": c.num_queries,
        "d_model": c.embed_dim,
        "encoder_layers": c.num_encoder_layers,
        "decoder_layers": c.num_decoder_layers,
        "encoder_attention_heads": c.num_heads,
        "decoder_attention_heads": c.num_heads,
        "encoder_ffn_dim": c.ffn_dim,
        "decoder_ffn_dim": c.ffn_dim,
        "activation_function": c.activation,
        "dropout": c.dropout,
        "attention_dropout": c.attn_dropout,
        "activation_dropout": c.activation_dropout,
        "position_embedding_type": "sine",
        "auxiliary_loss": False,
        "id2label": labels,
        "label2id": {v: int(k) for k, v in labels.items()},
    }


# ------------------------------------------------------------------------------------------------- weights


def convert_hf_detr_state_dict(hf_state: dict[str, Tensor], timm_backbone: bool) -> dict[str, Tensor]:
    """Hugging Face ``DetrForObjectDetection`` weights (file or in-memory names) -> formers ``DETR`` weights.

    Args:
        hf_state: the Hugging Face state dict.
        timm_backbone: whether the backbone is timm's ResNet (``use_timm_backbone=True``) or Hugging Face's.
    """
    key_map = HF_TIMM_KEY_MAP if timm_backbone else HF_KEY_MAP
    return key_map.to_ours(_file_names(hf_state))


def _timm_name(config: DETRConfig) -> str:
    """The timm ResNet a DC5 model's backbone is (its export form)."""
    for name, (block, depths) in _TIMM_RESNETS.items():
        if (block, depths, 64) == (config.backbone_block, list(config.backbone_depths), config.backbone_width):
            return name
    raise ValueError(f"a DC5 DETR exports with a timm backbone, one of {sorted(_TIMM_RESNETS)}; this backbone "
                     f"({config.backbone_block}, depths {list(config.backbone_depths)}, width {config.backbone_width}) "
                     "is none of them")


def to_hf_detr_state_dict(model: DETR) -> dict[str, Tensor]:
    """formers ``DETR`` weights -> those ``save_pretrained`` writes for ``DetrForObjectDetection`` with a Hugging
    Face ResNet backbone, or timm's for a DC5 model (BatchNorm ``num_batches_tracked`` counters are dropped: DETR's
    BatchNorm is frozen; so are a Group DETR's extra query groups, which only training decodes)."""
    state = {k: v for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked") and not k.startswith("extra_query_embed.")}
    return (HF_TIMM_KEY_MAP if model.config.backbone_dilation else HF_KEY_MAP).to_theirs(state)


@register_converter("hf", "detr")
def detr_from_hf(meta: dict[str, Any], hf_state: dict[str, Tensor], source: Path) -> tuple[DETR, dict[str, Tensor]]:
    """A formers ``DETR`` for a Hugging Face ``DetrForObjectDetection`` directory, and its weights renamed to
    formers' keys (``source`` names the directory in errors)."""
    if any(k.startswith(("mask_head.", "bbox_attention.", "detr.")) for k in hf_state):
        raise ValueError(f"{source} holds a DetrForSegmentation checkpoint; formers converts DetrForObjectDetection")
    head = hf_state.get("class_labels_classifier.weight")
    if head is None:
        raise ValueError(f"{source} holds no class_labels_classifier: a DetrModel without detection heads")
    config = config_from_hf_detr(meta, num_classes=head.shape[0] - 1)
    return DETR(config), convert_hf_detr_state_dict(hf_state, _uses_timm_backbone(meta))


def save_detr_directory(model: DETR, directory: str | Path) -> Path:
    """Writes ``config.json`` and ``model.safetensors`` loadable by ``transformers``' ``DetrForObjectDetection``
    (Hugging Face ResNet backbone). A model with trainable BatchNorm is written with its running statistics, which
    is what it computes in eval mode."""
    if not isinstance(model, DETR):
        raise TypeError(f"save_detr_directory takes a formers DETR, got {type(model).__name__}")
    if len(model.config.backbone_depths) != 4:
        raise ValueError(f"Hugging Face's DETR reads the 4th ResNet stage; this model's backbone has "
                         f"{len(model.config.backbone_depths)} stages")
    return write_hf_directory(directory, hf_detr_config_from_formers(model.config), to_hf_detr_state_dict(model))
