"""Hugging Face BERT (``BertModel``, ``BertForMaskedLM``, ``BertForPreTraining``) <-> formers classes of those names.

Checked against ``transformers`` 5.x (tests/interop/test_bert_interop.py): same hidden states, MLM logits and
next-sentence logits to 1e-5 in float32 with padding and token types, exact state-dict round trips, and the real
all-MiniLM-L6-v2 weights.

Checkpoint variants resolved here:

- keys with the ``bert.`` prefix (``BertForMaskedLM``, ``BertForPreTraining``) or without (a bare ``BertModel``,
  e.g. sentence-transformers' MiniLM);
- the MLM head ``cls.predictions.*``; ``cls.predictions.decoder.weight`` (tied to the word embeddings) and
  ``cls.predictions.decoder.bias`` (tied to ``cls.predictions.bias``) may be stored or not, and must then equal
  what they are tied to;
- the pooler is optional: a ``BertModel`` built from a file without one keeps a freshly initialised pooler
  (only ``pooled`` depends on it); pooler and next-sentence weights are dropped for the masked LM;
- a directory is a ``BertForPreTraining`` when ``architectures`` names it, or names no class and the weights hold
  both the MLM and the next-sentence (``cls.seq_relationship``) heads (``bert-base-uncased`` names
  ``BertForMaskedLM`` while storing both: it loads as a masked LM);
- the ``position_ids``/``token_type_ids`` buffers of older files are dropped.

Unsupported options raise: activations other than exact ``gelu``, relative position embeddings, decoders.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from formers.interop.hf_directory import write_hf_directory
from formers.interop.keymap import KeyMap
from formers.models.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertModel,
)
from formers.registry import build_model, register_converter

PREFIX = "bert."
WORD = "embeddings.word_embeddings.weight"
MLM_BIAS = "cls.predictions.bias"
DECODER_WEIGHT = "cls.predictions.decoder.weight"
DECODER_BIAS = "cls.predictions.decoder.bias"
_BUFFER = re.compile(r"embeddings\.(position_ids|token_type_ids)\Z")
_DROPPED_FOR_MLM = re.compile(r"(pooler\.|cls\.seq_relationship\.)")

# Sub-module names inside one layer: (formers, BERT).
_LAYER = [
    ("self_attn.q_proj", "attention.self.query"),
    ("self_attn.k_proj", "attention.self.key"),
    ("self_attn.v_proj", "attention.self.value"),
    ("self_attn.out_proj", "attention.output.dense"),
    ("self_attn_norm", "attention.output.LayerNorm"),
    ("ffn.fc1", "intermediate.dense"),
    ("ffn.fc2", "output.dense"),
    ("ffn_norm", "output.LayerNorm"),
]

# formers names relative to the model; BERT names without the ``bert.`` prefix.
KEY_MAP = KeyMap(
    [
        ("encoder.embed.weight", WORD),
        ("encoder.positions.weight", "embeddings.position_embeddings.weight"),
        ("encoder.token_types.weight", "embeddings.token_type_embeddings.weight"),
        ("encoder.embed_norm.weight", "embeddings.LayerNorm.weight"),
        ("encoder.embed_norm.bias", "embeddings.LayerNorm.bias"),
        ("pooler.weight", "pooler.dense.weight"),
        ("pooler.bias", "pooler.dense.bias"),
        ("transform.weight", "cls.predictions.transform.dense.weight"),
        ("transform.bias", "cls.predictions.transform.dense.bias"),
        ("transform_norm.weight", "cls.predictions.transform.LayerNorm.weight"),
        ("transform_norm.bias", "cls.predictions.transform.LayerNorm.bias"),
        ("decoder.bias", MLM_BIAS),
        ("next_sentence.weight", "cls.seq_relationship.weight"),
        ("next_sentence.bias", "cls.seq_relationship.bias"),
    ]
    + [
        (f"encoder.layers.{{i}}.{ours}.{param}", f"encoder.layer.{{i}}.{theirs}.{param}")
        for ours, theirs in _LAYER
        for param in ("weight", "bias")
    ]
)

# Options that change the computation: the value formers implements; any other value raises.
_FIXED_OPTIONS = {
    "hidden_act": "gelu",
    "position_embedding_type": "absolute",
    "is_decoder": False,
    "add_cross_attention": False,
}


def config_from_bert(hf_config: dict[str, Any]) -> BertConfig:
    """Translates a BERT ``config.json`` dict to a :class:`BertConfig`.

    Raises:
        ValueError: on a model_type other than ``bert`` or options formers cannot express.
    """
    model_type = hf_config.get("model_type", "bert")
    if model_type != "bert":
        raise ValueError(f"expected a BERT config (model_type 'bert'), got model_type {model_type!r}")
    for name, supported in _FIXED_OPTIONS.items():
        if hf_config.get(name, supported) != supported:
            raise ValueError(f"BERT config {name}={hf_config[name]!r} is not supported by formers (needs {supported!r})")
    if not hf_config.get("tie_word_embeddings", True):
        raise ValueError("BERT config tie_word_embeddings=false is not supported: the MLM decoder is tied")
    pad_id = hf_config.get("pad_token_id")
    labels = hf_config.get("id2label")
    return BertConfig(
        vocab_size=hf_config.get("vocab_size", 30522),
        embed_dim=hf_config.get("hidden_size", 768),
        num_layers=hf_config.get("num_hidden_layers", 12),
        num_heads=hf_config.get("num_attention_heads", 12),
        ffn_dim=hf_config.get("intermediate_size", 3072),
        max_seq_len=hf_config.get("max_position_embeddings", 512),
        type_vocab_size=hf_config.get("type_vocab_size", 2),
        dropout=hf_config.get("hidden_dropout_prob", 0.1),
        attn_dropout=hf_config.get("attention_probs_dropout_prob", 0.1),
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
        pad_id=0 if pad_id is None else pad_id,
        num_labels=len(labels) if labels else 2,
    )


def bert_config_from_formers(config: BertConfig, architecture: str) -> dict[str, Any]:
    """The ``config.json`` dict of a Hugging Face ``architecture`` (``BertModel``, ...) like ``config``."""
    c = config
    return {
        "model_type": "bert",
        "architectures": [architecture],
        "vocab_size": c.vocab_size,
        "hidden_size": c.embed_dim,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "intermediate_size": c.ffn_dim,
        "max_position_embeddings": c.max_seq_len,
        "type_vocab_size": c.type_vocab_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attn_dropout,
        "layer_norm_eps": c.layer_norm_eps,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "pad_token_id": c.pad_id,
        "tie_word_embeddings": True,
        "is_decoder": False,
        "add_cross_attention": False,
    }


def _without_prefix(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Names every key as in a bare ``BertModel`` (``cls.*`` unchanged); drops the id buffers."""
    out: dict[str, Tensor] = {}
    for key, tensor in hf_state.items():
        name = key.removeprefix(PREFIX)
        if _BUFFER.match(name):
            continue
        if name in out:
            raise KeyError(f"BERT state dict holds {name!r} both with and without the {PREFIX!r} prefix")
        out[name] = tensor
    return out


def is_masked_lm(hf_config: dict[str, Any], hf_state: dict[str, Tensor]) -> bool:
    """Whether a directory holds a masked LM: ``BertForMaskedLM`` in ``architectures`` or ``cls.predictions`` weights."""
    if "BertForMaskedLM" in (hf_config.get("architectures") or []):
        return True
    return any(k.startswith("cls.predictions.") for k in hf_state)


def is_pretraining(hf_config: dict[str, Any], hf_state: dict[str, Tensor]) -> bool:
    """Whether a directory holds ``BertForPreTraining``: named in ``architectures``, or (no architecture named)
    both MLM and next-sentence weights. Files of ``bert-base-uncased`` name ``BertForMaskedLM`` but hold both."""
    architectures = hf_config.get("architectures") or []
    if architectures:
        return "BertForPreTraining" in architectures
    keys = [k.removeprefix(PREFIX) for k in hf_state]
    has = [any(k.startswith(head) for k in keys) for head in ("cls.predictions.", "cls.seq_relationship.")]
    return all(has)


def convert_bert_state_dict(
    hf_state: dict[str, Tensor], masked_lm: bool, next_sentence: bool = False
) -> dict[str, Tensor]:
    """BERT weights -> the state dict of formers ``BertForPreTraining`` (``masked_lm`` and ``next_sentence``),
    ``BertForMaskedLM`` (``masked_lm``) or ``BertModel``.

    Raises:
        KeyError: on keys the key map does not know.
        ValueError: on a stored tied decoder weight/bias that differs from what it is tied to.
    """
    state = _without_prefix(hf_state)
    for tied, source in ((DECODER_WEIGHT, WORD), (DECODER_BIAS, MLM_BIAS)):
        value = state.pop(tied, None)
        if value is None:
            continue
        if source not in state:
            if tied == DECODER_BIAS:
                state[MLM_BIAS] = value  # only the decoder's copy of the bias was stored
                continue
        elif not torch.equal(value, state[source]):
            raise ValueError(f"{tied} differs from {source}, to which formers ties it")
    if not masked_lm:
        state = {k: v for k, v in state.items() if not k.startswith("cls.")}
    elif not next_sentence:  # BertForPreTraining keeps every weight
        state = {k: v for k, v in state.items() if not _DROPPED_FOR_MLM.match(k)}
    return KEY_MAP.to_ours(state)


def to_bert_state_dict(model: BertModel | BertForMaskedLM | BertForPreTraining) -> dict[str, Tensor]:
    """formers weights -> those ``save_pretrained`` writes for the Hugging Face class (no tied decoder weight)."""
    state = {k: v for k, v in model.state_dict().items() if k != "decoder.weight"}
    theirs = KEY_MAP.to_theirs(state)
    if isinstance(model, (BertForMaskedLM, BertForPreTraining)):
        theirs = {k if k.startswith("cls.") else PREFIX + k: v for k, v in theirs.items()}
    return theirs


@register_converter("hf", "bert")
def bert_from_hf(
    meta: dict[str, Any], hf_state: dict[str, Tensor], source: Path
) -> tuple[BertModel | BertForMaskedLM | BertForPreTraining, dict[str, Tensor]]:
    """A formers ``BertForPreTraining``, ``BertForMaskedLM`` or ``BertModel`` for a Hugging Face BERT directory.

    ``BertForPreTraining`` when :func:`is_pretraining`, else ``BertForMaskedLM`` when ``architectures`` names it or
    the weights hold ``cls.predictions``, else ``BertModel``; with the weights renamed to formers' keys.
    """
    config = config_from_bert(meta)
    hf_state = _without_prefix(hf_state)
    pretraining = is_pretraining(meta, hf_state)
    masked_lm = pretraining or is_masked_lm(meta, hf_state)
    state = convert_bert_state_dict(hf_state, masked_lm, next_sentence=pretraining)
    model: BertModel | BertForMaskedLM | BertForPreTraining
    if pretraining:
        model = build_model(BertForPreTraining, config)
    else:
        model = build_model(BertForMaskedLM if masked_lm else BertModel, config)
    if not masked_lm and "pooler.weight" not in state:
        warnings.warn(f"{source} holds no pooler weights: the pooler keeps its random init", stacklevel=2)
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("pooler.")})
    return model, state


def save_bert_directory(model: BertModel | BertForMaskedLM | BertForPreTraining, directory: str | Path) -> Path:
    """Writes ``config.json`` and ``model.safetensors`` loadable by ``transformers``' class of the same name."""
    if not isinstance(model, (BertModel, BertForMaskedLM, BertForPreTraining)):
        raise TypeError(
            f"save_bert_directory takes a BertModel, BertForMaskedLM or BertForPreTraining, got {type(model).__name__}"
        )
    hf_config = bert_config_from_formers(model.config, type(model).__name__)
    return write_hf_directory(directory, hf_config, to_bert_state_dict(model))
