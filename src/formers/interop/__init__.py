"""Converters from other libraries' checkpoints (declarative key maps, invertible)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn


def load_hf_directory(directory: Path, meta: dict[str, Any]) -> nn.Module:
    """Builds the formers model for a Hugging Face directory, dispatching on ``model_type``."""
    model_type = meta["model_type"]
    if model_type == "marian":
        from formers.interop.marian import load_marian_directory

        return load_marian_directory(directory, meta)
    if model_type == "gpt2":
        from formers.interop.gpt2 import load_gpt2_directory

        return load_gpt2_directory(directory, meta)
    if model_type == "bert":
        from formers.interop.bert import load_bert_directory

        return load_bert_directory(directory, meta)
    if model_type == "vit":
        from formers.interop.vit import load_vit_directory

        return load_vit_directory(directory, meta)
    if model_type == "swin":
        from formers.interop.swin import load_swin_directory

        return load_swin_directory(directory, meta)
    if model_type == "detr":
        from formers.interop.detr import load_detr_directory

        return load_detr_directory(directory, meta)
    raise ValueError(
        f"Hugging Face model_type {model_type!r} is not supported yet; supported: ['bert', 'detr', 'gpt2', 'marian', "
        "'swin', 'vit']"
    )
