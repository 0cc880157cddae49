"""Hugging Face model directories in and out, once for every converter.

Reading: :func:`load_hf_directory` reads the weight files, asks the converter registered for the directory's
``model_type`` (``@register_converter("hf", model_type)``) to build the formers model and rename the tensors, and
loads them with the shared checks. Writing: :func:`write_hf_directory` writes ``config.json``, any extra JSON files
(``generation_config.json``) and ``model.safetensors`` atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor, nn

from formers.files import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    atomic_directory,
    load_state_into,
    read_hf_weights,
)
from formers.registry import converters


def load_hf_directory(directory: Path, meta: dict[str, Any]) -> nn.Module:
    """Builds the formers model for a Hugging Face directory, dispatching on ``meta["model_type"]``.

    Returns:
        The model with the directory's weights (train mode, on CPU; ``formers.from_pretrained`` moves it and sets
        eval mode).
    """
    model_type = meta["model_type"]
    known = converters("hf")
    if model_type not in known:
        raise ValueError(f"Hugging Face model_type {model_type!r} is not supported yet; supported: {sorted(known)}")
    model, state = known[model_type](meta, read_hf_weights(directory), directory)
    load_state_into(model, state, directory / WEIGHTS_NAME)
    return model


def write_hf_directory(
    directory: str | Path, hf_config: dict[str, Any], state: dict[str, Tensor], extra_json: dict[str, Any] | None = None
) -> Path:
    """Atomically writes a Hugging Face directory: ``config.json``, ``extra_json`` files and ``model.safetensors``.

    Every tensor is copied to a contiguous CPU tensor of its own (safetensors refuses tensors sharing memory).
    """
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps(hf_config, indent=2), encoding="utf-8")
        for name, content in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
    return directory
