"""Hugging Face Marian (``MarianMTModel``, e.g. Helsinki-NLP/opus-mt-*) <-> formers ``Transformer``.

Checked against ``transformers`` 5.x (tests/interop/test_marian.py): same logits to 1e-5 in float32, same greedy
translations, and exact state-dict round trips both ways.

Marian is the post-norm Transformer with concatenated (sines, then cosines) sinusoidal positions starting at 0,
an output bias (``final_logits_bias``) and the pad token as decoder start. Its checkpoints name the token
embeddings in several ways, all resolved here before the declarative key map applies:

- ``model.shared.weight`` alone (shared and tied: the ``embed_tokens`` and ``lm_head`` aliases are omitted), or
  next to ``model.encoder.embed_tokens.weight`` / ``model.decoder.embed_tokens.weight`` (older files);
- ``share_encoder_decoder_embeddings=False``: separate encoder/decoder matrices, vocabularies may differ;
- ``lm_head.weight`` only when ``tie_word_embeddings`` is false;
- keys of a bare ``MarianModel`` lack the ``model.`` prefix;
- the fixed positional tables (``embed_positions``) are not learned: checked against ours if present, dropped.

Note: transformers >= 5 ties nothing when ``tie_word_embeddings`` is false, so ``share_encoder_decoder_embeddings
=True`` then yields separate encoder and decoder matrices; formers shares them only when the file holds equal
values (as older transformers wrote them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from formers.files import GENERATION_CONFIG_NAME, tied_groups
from formers.interop.hf_directory import write_hf_directory
from formers.interop.keymap import ROW_VECTOR, KeyMap, KeyRule
from formers.layers import sinusoidal_table
from formers.models.transformer import Transformer, TransformerConfig
from formers.registry import build_model, register_converter

SHARED = "model.shared.weight"
ENCODER_EMBED = "model.encoder.embed_tokens.weight"
DECODER_EMBED = "model.decoder.embed_tokens.weight"
LM_HEAD = "lm_head.weight"
LOGITS_BIAS = "final_logits_bias"
POSITIONS = ("model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight")
_TOP_LEVEL = (LM_HEAD, LOGITS_BIAS)  # keys of MarianMTModel outside its ``model.`` (MarianModel) prefix

# Sub-module names inside one layer: (formers, Marian).
_ENCODER_LAYER = [
    ("self_attn.q_proj", "self_attn.q_proj"),
    ("self_attn.k_proj", "self_attn.k_proj"),
    ("self_attn.v_proj", "self_attn.v_proj"),
    ("self_attn.out_proj", "self_attn.out_proj"),
    ("self_attn_norm", "self_attn_layer_norm"),
    ("ffn.fc1", "fc1"),
    ("ffn.fc2", "fc2"),
    ("ffn_norm", "final_layer_norm"),
]
_DECODER_LAYER = _ENCODER_LAYER + [
    ("cross_attn.q_proj", "encoder_attn.q_proj"),
    ("cross_attn.k_proj", "encoder_attn.k_proj"),
    ("cross_attn.v_proj", "encoder_attn.v_proj"),
    ("cross_attn.out_proj", "encoder_attn.out_proj"),
    ("cross_attn_norm", "encoder_attn_layer_norm"),
]

KEY_MAP = KeyMap(
    [
        ("encoder.embed.weight", ENCODER_EMBED),
        ("decoder.embed.weight", DECODER_EMBED),
        ("decoder.output.weight", LM_HEAD),
        KeyRule("decoder.output.bias", LOGITS_BIAS, ROW_VECTOR),
    ]
    + [
        (f"{stack}.layers.{{i}}.{ours}.{param}", f"model.{stack}.layers.{{i}}.{theirs}.{param}")
        for stack, layer in (("encoder", _ENCODER_LAYER), ("decoder", _DECODER_LAYER))
        for ours, theirs in layer
        for param in ("weight", "bias")
    ]
)

# Marian activation_function -> formers activation, and back.
_ACTIVATIONS = {
    "relu": "relu",
    "gelu": "gelu",
    "swish": "swish",
    "silu": "silu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
}
_ACTIVATIONS_BACK = {"relu": "relu", "gelu": "gelu", "swish": "swish", "silu": "silu", "gelu_tanh": "gelu_pytorch_tanh"}

# Options of older (BART-derived) Marian configs: the value Marian uses; any other value raises.
_FIXED_OPTIONS = {
    "normalize_before": False,
    "add_final_layer_norm": False,
    "normalize_embedding": False,
    "layernorm_embedding": False,
    "static_position_embeddings": True,
    "add_bias_logits": False,
    "encoder_layerdrop": 0.0,
    "decoder_layerdrop": 0.0,
}


def _single_id(value: Any, name: str) -> int:
    if isinstance(value, list):
        if len(value) != 1:
            raise ValueError(f"Marian config {name}={value}: formers supports exactly one id")
        value = value[0]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"Marian config {name} must be a token id, got {value!r}")
    return value


def config_from_marian(hf_config: dict[str, Any], state: dict[str, Tensor] | None = None) -> TransformerConfig:
    """Translates a Marian ``config.json`` dict to a :class:`TransformerConfig`.

    Args:
        hf_config: the Hugging Face config (``MarianConfig.to_dict()`` or the JSON file's content).
        state: the converted weights (from :func:`convert_marian_state_dict`), if known; with
            ``share_encoder_decoder_embeddings`` but not ``tie_word_embeddings`` the embeddings are shared only
            when their values are equal (see the module docstring).

    Raises:
        ValueError: on options formers cannot express (pre-norm, embedding LayerNorm, learned positions,
            layer drop, an unknown activation, a shared embedding with two vocabulary sizes).
    """
    model_type = hf_config.get("model_type", "marian")
    if model_type != "marian":
        raise ValueError(f"expected a Marian config (model_type 'marian'), got model_type {model_type!r}")
    for name, supported in _FIXED_OPTIONS.items():
        if name in hf_config and hf_config[name] != supported:
            raise ValueError(
                f"Marian config {name}={hf_config[name]!r} is not supported by formers (needs {supported!r})"
            )
    activation = hf_config.get("activation_function", "gelu")
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"Marian activation_function {activation!r} is not supported; supported: {sorted(_ACTIVATIONS)}"
        )
    if hf_config.get("pad_token_id") is None:
        raise ValueError("Marian config has no pad_token_id; formers needs one")

    src_vocab = hf_config.get("vocab_size", 58101)
    tgt_vocab = hf_config.get("decoder_vocab_size") or src_vocab
    share = hf_config.get("share_encoder_decoder_embeddings", True)
    tie = hf_config.get("tie_word_embeddings", True)
    if share and tgt_vocab != src_vocab:
        raise ValueError(
            f"Marian config shares encoder/decoder embeddings but vocab_size={src_vocab} != "
            f"decoder_vocab_size={tgt_vocab}"
        )
    if share and not tie:
        share = state is not None and torch.equal(state["encoder.embed.weight"], state["decoder.embed.weight"])
    pad_id = _single_id(hf_config["pad_token_id"], "pad_token_id")
    return TransformerConfig(
        src_vocab_size=src_vocab,
        tgt_vocab_size=tgt_vocab,
        embed_dim=hf_config.get("d_model", 1024),
        num_encoder_layers=hf_config.get("encoder_layers", 12),
        num_decoder_layers=hf_config.get("decoder_layers", 12),
        num_heads=hf_config.get("encoder_attention_heads", 16),
        ffn_dim=hf_config.get("encoder_ffn_dim", 4096),
        decoder_num_heads=hf_config.get("decoder_attention_heads", 16),
        decoder_ffn_dim=hf_config.get("decoder_ffn_dim", 4096),
        dropout=hf_config.get("dropout", 0.1),
        attn_dropout=hf_config.get("attention_dropout", 0.0),
        activation_dropout=hf_config.get("activation_dropout", 0.0),
        activation=_ACTIVATIONS[activation],
        max_seq_len=hf_config.get("max_position_embeddings", 1024),
        positional="sinusoidal",
        sinusoidal_layout="concatenated",
        scale_embedding=hf_config.get("scale_embedding", False),
        share_embeddings=share,
        tie_output=tie,
        output_bias=True,
        norm_first=False,
        final_norm=False,
        layer_norm_eps=1e-5,
        pad_id=pad_id,
        bos_id=_single_id(hf_config.get("decoder_start_token_id", pad_id), "decoder_start_token_id"),
        eos_id=_single_id(hf_config.get("eos_token_id", 0), "eos_token_id"),
    )


def marian_config_from_formers(config: TransformerConfig) -> dict[str, Any]:
    """The ``config.json`` dict of a ``MarianMTModel`` equivalent to ``config``.

    Raises:
        ValueError: when ``config`` uses something Marian lacks (pre-norm, final norms, learned or interleaved
            positions, a LayerNorm epsilon other than 1e-5, an activation without a Marian name).
    """
    c = config
    unsupported = {
        "norm_first": (c.norm_first, False),
        "final_norm": (c.final_norm, False),
        "positional": (c.positional, "sinusoidal"),
        "sinusoidal_layout": (c.sinusoidal_layout, "concatenated"),
        "layer_norm_eps": (c.layer_norm_eps, 1e-5),
    }
    for name, (value, needed) in unsupported.items():
        if value != needed:
            raise ValueError(f"Marian cannot express {name}={value!r} (needs {needed!r})")
    if c.activation not in _ACTIVATIONS_BACK:
        raise ValueError(f"activation {c.activation!r} has no Marian name; supported: {sorted(_ACTIVATIONS_BACK)}")
    return {
        "model_type": "marian",
        "architectures": ["MarianMTModel"],
        "vocab_size": c.src_vocab_size,
        "decoder_vocab_size": c.tgt_vocab_size,
        "d_model": c.embed_dim,
        "encoder_layers": c.num_encoder_layers,
        "decoder_layers": c.num_decoder_layers,
        "encoder_attention_heads": c.num_heads,
        "decoder_attention_heads": c.decoder_num_heads or c.num_heads,
        "encoder_ffn_dim": c.ffn_dim,
        "decoder_ffn_dim": c.decoder_ffn_dim or c.ffn_dim,
        "activation_function": _ACTIVATIONS_BACK[c.activation],
        "dropout": c.dropout,
        "attention_dropout": c.attn_dropout,
        "activation_dropout": c.activation_dropout,
        "max_position_embeddings": c.max_seq_len,
        "scale_embedding": c.scale_embedding,
        "share_encoder_decoder_embeddings": c.share_embeddings,
        "tie_word_embeddings": c.tie_output,
        "pad_token_id": c.pad_id,
        "decoder_start_token_id": c.bos_id,
        "eos_token_id": c.eos_id,
        "bos_token_id": None,
        "forced_eos_token_id": None,  # formers' decoding does not force eos at the length limit
        "is_encoder_decoder": True,
        "encoder_layerdrop": 0.0,
        "decoder_layerdrop": 0.0,
        "use_cache": True,
    }


def _with_model_prefix(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Names every key as in ``MarianMTModel`` (a bare ``MarianModel`` lacks the ``model.`` prefix)."""
    out: dict[str, Tensor] = {}
    for key, tensor in hf_state.items():
        name = key if key.startswith("model.") or key in _TOP_LEVEL else f"model.{key}"
        if name in out:
            raise KeyError(f"Marian state dict holds {name!r} both with and without the 'model.' prefix")
        out[name] = tensor
    return out


def _check_positions(hf_state: dict[str, Tensor]) -> None:
    """Pops the fixed positional tables, raising if they are not Marian's sinusoids (e.g. learned ones)."""
    for key in POSITIONS:
        table = hf_state.pop(key, None)
        if table is None:
            continue
        ours = sinusoidal_table(table.shape[0], table.shape[1], "concatenated")
        atol = 1e-5 if table.dtype == torch.float32 else 1e-2  # half-precision checkpoints round the table
        if not torch.allclose(table.float(), ours, atol=atol):
            raise ValueError(f"{key} is not Marian's sinusoidal table; formers cannot load learned positions")


def convert_marian_state_dict(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Marian (``MarianMTModel`` or ``MarianModel``) weights -> formers ``Transformer`` state dict.

    Embedding aliases are resolved (encoder/decoder ``embed_tokens`` default to ``model.shared``, ``lm_head``
    to the decoder embedding, a missing ``final_logits_bias`` to zeros), so the result always holds
    ``encoder.embed.weight``, ``decoder.embed.weight``, ``decoder.output.weight`` and ``decoder.output.bias``,
    as the state dict of a formers model built by :func:`config_from_marian`.

    Raises:
        KeyError: on keys that the key map does not know, or no token embedding at all.
    """
    state = _with_model_prefix(hf_state)
    _check_positions(state)
    shared = state.pop(SHARED, None)
    for key in (ENCODER_EMBED, DECODER_EMBED):
        if key not in state:
            if shared is None:
                raise KeyError(f"Marian state dict has neither {key!r} nor {SHARED!r}")
            state[key] = shared
    state.setdefault(LM_HEAD, state[DECODER_EMBED])
    if LOGITS_BIAS not in state:
        state[LOGITS_BIAS] = torch.zeros(1, state[LM_HEAD].shape[0], dtype=state[LM_HEAD].dtype)
    return KEY_MAP.to_ours(state)


def to_marian_state_dict(state: dict[str, Tensor], config: TransformerConfig) -> dict[str, Tensor]:
    """formers ``Transformer`` state dict -> the ``MarianMTModel`` weights that ``save_pretrained`` would write.

    Shared and tied weights appear under the names transformers keeps: ``model.shared.weight`` alone when
    shared and tied; every alias (copies) when shared but untied. ``output_bias=False`` writes a zero
    ``final_logits_bias``.
    """
    state = dict(state)
    if "decoder.output.bias" not in state:
        state["decoder.output.bias"] = torch.zeros(config.tgt_vocab_size, dtype=state["decoder.output.weight"].dtype)
    out = KEY_MAP.to_theirs(state)
    if config.share_embeddings:
        out[SHARED] = out[ENCODER_EMBED]
    if config.tie_output:
        del out[LM_HEAD]
        if config.share_embeddings:
            del out[ENCODER_EMBED], out[DECODER_EMBED]
    return out


@register_converter("hf", "marian")
def marian_from_hf(meta: dict[str, Any], hf_state: dict[str, Tensor], source: Path) -> tuple[Transformer, dict[str, Tensor]]:
    """A formers ``Transformer`` for a Hugging Face Marian directory and its weights renamed to formers' keys.

    Raises:
        ValueError: tensors that are one tensor in the configured model hold different values in the file.
    """
    state = convert_marian_state_dict(hf_state)
    model = build_model(Transformer, config_from_marian(meta, state))
    for names in tied_groups(model).values():
        first = names[0]
        for other in names[1:]:
            if not torch.equal(state[first], state[other]):
                raise ValueError(
                    f"{source}: {first} and {other} are one tensor in this configuration, but the checkpoint "
                    "holds different values for them (check share_encoder_decoder_embeddings / tie_word_embeddings)"
                )
    return model, state


def save_marian_directory(model: Transformer, directory: str | Path) -> Path:
    """Writes ``config.json``, ``generation_config.json`` and ``model.safetensors`` for ``MarianMTModel``.

    The generation config makes ``generate`` decode as formers does: it never emits the pad or start token and
    does not force ``eos`` at the length limit.
    """
    c = model.config
    generation = {
        "decoder_start_token_id": c.bos_id,
        "eos_token_id": c.eos_id,
        "pad_token_id": c.pad_id,
        "bad_words_ids": [[t] for t in sorted({c.pad_id, c.bos_id} - {c.eos_id})],
    }
    state = to_marian_state_dict(model.state_dict(), c)
    return write_hf_directory(directory, marian_config_from_formers(c), state, {GENERATION_CONFIG_NAME: generation})
