"""Hugging Face GPT-2 (``GPT2LMHeadModel``, e.g. ``openai-community/gpt2``) <-> formers ``GPT``.

Checked against ``transformers`` 5.x (tests/interop/test_gpt2.py): same logits to 1e-5 in float32 with and
without left padding, same greedy continuations as ``generate``, exact state-dict round trips both ways.

GPT-2 stores its linear layers as ``Conv1D`` with (in, out) weights (transposed here) and fuses the query, key
and value projections into one ``c_attn`` (D, 3D), formers' fused ``self_attn.qkv`` (3D, D). Checkpoint variants resolved here:

- keys of ``GPT2LMHeadModel`` (``transformer.`` prefix) or of a bare ``GPT2Model`` (no prefix);
- ``lm_head.weight`` absent when tied to ``wte`` (``tie_word_embeddings``, the default), present when untied;
- the causal-mask buffers of older files (``h.{i}.attn.bias``, ``h.{i}.attn.masked_bias``) are dropped.

One dropout rate covers embeddings and residual branches in formers: ``resid_pdrop`` is used (training only).
Unsupported options raise: ``scale_attn_by_inverse_layer_idx``, ``reorder_and_upcast_attn``, unscaled attention,
cross-attention, activations other than ``gelu_new``/``gelu_pytorch_tanh``/``gelu``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from formers.files import GENERATION_CONFIG_NAME
from formers.interop.hf_directory import write_hf_directory
from formers.interop.keymap import TRANSPOSE, KeyMap, KeyRule
from formers.models.gpt import GPT, GPTConfig
from formers.registry import build_model, register_converter

PREFIX = "transformer."
WTE = "transformer.wte.weight"
LM_HEAD = "lm_head.weight"
_BUFFER = re.compile(r"(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)\Z")  # causal masks of older files

# Sub-module names inside one layer: (formers, GPT-2, Conv1D weight stored transposed).
_LAYER = [
    ("self_attn_norm", "ln_1", False),
    ("self_attn.qkv", "attn.c_attn", True),
    ("self_attn.out_proj", "attn.c_proj", True),
    ("ffn_norm", "ln_2", False),
    ("ffn.fc1", "mlp.c_fc", True),
    ("ffn.fc2", "mlp.c_proj", True),
]

KEY_MAP = KeyMap(
    [
        ("embed.weight", WTE),
        ("positions.weight", "transformer.wpe.weight"),
        ("norm.weight", "transformer.ln_f.weight"),
        ("norm.bias", "transformer.ln_f.bias"),
        ("output.weight", LM_HEAD),
    ]
    + [
        KeyRule(
            f"layers.{{i}}.{ours}.{param}",
            f"transformer.h.{{i}}.{theirs}.{param}",
            TRANSPOSE if conv1d and param == "weight" else None,
        )
        for ours, theirs, conv1d in _LAYER
        for param in ("weight", "bias")
    ]
)

# GPT-2 activation_function -> formers activation, and back.
_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
_ACTIVATIONS_BACK = {"gelu_tanh": "gelu_new", "gelu": "gelu"}

# Options that change the computation: the value formers implements; any other value raises.
_FIXED_OPTIONS = {
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
}


def _token_id(hf_config: dict[str, Any], name: str) -> int | None:
    value = hf_config.get(name)
    if isinstance(value, list):
        if len(value) != 1:
            raise ValueError(f"GPT-2 config {name}={value}: formers supports exactly one id")
        value = value[0]
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"GPT-2 config {name} must be a token id or null, got {value!r}")
    return value


def config_from_gpt2(hf_config: dict[str, Any]) -> GPTConfig:
    """Translates a GPT-2 ``config.json`` dict to a :class:`GPTConfig`.

    Raises:
        ValueError: on options formers cannot express (see the module docstring) or token ids outside the
            vocabulary.
    """
    model_type = hf_config.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ValueError(f"expected a GPT-2 config (model_type 'gpt2'), got model_type {model_type!r}")
    for name, supported in _FIXED_OPTIONS.items():
        if name in hf_config and hf_config[name] != supported:
            raise ValueError(f"GPT-2 config {name}={hf_config[name]!r} is not supported by formers (needs {supported!r})")
    activation = hf_config.get("activation_function", "gelu_new")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"GPT-2 activation_function {activation!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
    vocab_size = hf_config.get("vocab_size", 50257)
    ids = {name: _token_id(hf_config, name) for name in ("eos_token_id", "pad_token_id")}
    for name, value in ids.items():
        if value is not None and not 0 <= value < vocab_size:
            raise ValueError(f"GPT-2 config {name}={value} is outside the vocabulary [0, {vocab_size})")
    return GPTConfig(
        vocab_size=vocab_size,
        max_seq_len=hf_config.get("n_positions", 1024),
        embed_dim=hf_config.get("n_embd", 768),
        num_layers=hf_config.get("n_layer", 12),
        num_heads=hf_config.get("n_head", 12),
        ffn_dim=hf_config.get("n_inner"),
        dropout=hf_config.get("resid_pdrop", 0.1),
        attn_dropout=hf_config.get("attn_pdrop", 0.1),
        bias=True,
        layer_norm_eps=hf_config.get("layer_norm_epsilon", 1e-5),
        activation=_ACTIVATIONS[activation],
        tie_embeddings=hf_config.get("tie_word_embeddings", True),
        vocab_multiple=64,  # aligned embedding/head GEMMs; the extra rows are zero and their logits never returned
        eos_id=ids["eos_token_id"],
        pad_id=ids["pad_token_id"],
    )


def gpt2_config_from_formers(config: GPTConfig) -> dict[str, Any]:
    """The ``config.json`` dict of a ``GPT2LMHeadModel`` equivalent to ``config``.

    Raises:
        ValueError: when ``config`` uses something GPT-2 lacks (no linear biases, an activation without a
            GPT-2 name).
    """
    c = config
    if not c.bias:
        raise ValueError("GPT-2 cannot express bias=False: its Conv1D layers always have biases")
    if c.activation not in _ACTIVATIONS_BACK:
        raise ValueError(f"activation {c.activation!r} has no GPT-2 name; supported: {sorted(_ACTIVATIONS_BACK)}")
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": c.vocab_size,
        "n_positions": c.max_seq_len,
        "n_embd": c.embed_dim,
        "n_layer": c.num_layers,
        "n_head": c.num_heads,
        "n_inner": c.ffn_dim,
        "activation_function": _ACTIVATIONS_BACK[c.activation],
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.attn_dropout,
        "layer_norm_epsilon": c.layer_norm_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": c.tie_embeddings,
        "bos_token_id": c.eos_id,
        "eos_token_id": c.eos_id,
        "pad_token_id": c.pad_id,
        "use_cache": True,
    }


def _with_prefix(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Names every key as in ``GPT2LMHeadModel`` (a bare ``GPT2Model`` lacks ``transformer.``); drops mask buffers."""
    out: dict[str, Tensor] = {}
    for key, tensor in hf_state.items():
        if _BUFFER.match(key):
            continue
        name = key if key.startswith(PREFIX) or key == LM_HEAD else PREFIX + key
        if name in out:
            raise KeyError(f"GPT-2 state dict holds {name!r} both with and without the {PREFIX!r} prefix")
        out[name] = tensor
    return out


def convert_gpt2_state_dict(hf_state: dict[str, Tensor], config: GPTConfig) -> dict[str, Tensor]:
    """GPT-2 (``GPT2LMHeadModel`` or ``GPT2Model``) weights -> the state dict of ``GPT(config)``.

    With ``config.tie_embeddings`` the result holds ``embed.weight`` only (a stored ``lm_head.weight`` must
    equal ``wte``); otherwise ``lm_head.weight`` is required and becomes ``output.weight``.

    Raises:
        KeyError: on keys the key map does not know, or a missing ``lm_head.weight`` when untied.
        ValueError: on a tied ``lm_head.weight`` that differs from ``wte``.
    """
    state = _with_prefix(hf_state)
    if config.tie_embeddings:
        head = state.pop(LM_HEAD, None)
        if head is not None and WTE in state and not torch.equal(head, state[WTE]):
            raise ValueError(
                f"tie_word_embeddings is true but {LM_HEAD} differs from {WTE}; set tie_word_embeddings false"
            )
    elif LM_HEAD not in state:
        raise KeyError(f"tie_word_embeddings is false but the checkpoint has no {LM_HEAD!r}")
    ours = KEY_MAP.to_ours(state)
    for name in ("embed.weight", "output.weight"):
        if name in ours and ours[name].shape[0] == config.vocab_size < config.padded_vocab_size:
            extra = ours[name].new_zeros(config.padded_vocab_size - config.vocab_size, ours[name].shape[1])
            ours[name] = torch.cat([ours[name], extra])  # (V, D) -> (padded V, D): zero alignment rows
    return ours


def to_gpt2_state_dict(state: dict[str, Tensor], config: GPTConfig) -> dict[str, Tensor]:
    """formers ``GPT`` state dict -> the ``GPT2LMHeadModel`` weights ``save_pretrained`` writes (no tied head)."""
    state = dict(state)
    if config.tie_embeddings:
        state.pop("output.weight", None)
    for name in ("embed.weight", "output.weight"):
        if name in state:
            state[name] = state[name][: config.vocab_size]  # drop the alignment rows
    return KEY_MAP.to_theirs(state)


@register_converter("hf", "gpt2")
def gpt2_from_hf(meta: dict[str, Any], hf_state: dict[str, Tensor], source: Path) -> tuple[GPT, dict[str, Tensor]]:
    """A formers ``GPT`` for a Hugging Face GPT-2 ``config.json`` and its weights renamed to formers' keys."""
    config = config_from_gpt2(meta)
    return build_model(GPT, config), convert_gpt2_state_dict(hf_state, config)


def save_gpt2_directory(model: GPT, directory: str | Path) -> Path:
    """Writes ``config.json``, ``generation_config.json`` and ``model.safetensors`` for ``GPT2LMHeadModel``.

    The generation config pads with ``pad_id`` (else ``eos_id``), as :func:`formers.generation.sampling.generate`.
    """
    c = model.config
    fill = c.pad_id if c.pad_id is not None else c.eos_id
    generation = {"bos_token_id": c.eos_id, "eos_token_id": c.eos_id, "pad_token_id": fill}
    state = to_gpt2_state_dict(model.state_dict(), c)
    return write_hf_directory(directory, gpt2_config_from_formers(c), state, {GENERATION_CONFIG_NAME: generation})
