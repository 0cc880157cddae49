"""``from_pretrained`` / ``save_pretrained``: formers checkpoint directories and Hugging Face directories.

A formers model directory holds ``config.json`` (``{"format": "formers", "family": ..., "config": {...}}``)
and ``model.safetensors`` (:mod:`formers.files`); a Hugging Face directory holds ``config.json`` with a
``model_type`` and ``model.safetensors``, converted by the converter registered for that ``model_type``
(:mod:`formers.interop`). A training run directory (with ``checkpoints/latest``) resolves to its latest checkpoint.
Pickle files are never read.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from formers.config import from_dict
from formers.files import (
    CONFIG_NAME,
    FORMAT,
    WEIGHTS_NAME,
    atomic_directory,
    load_safetensors,
    load_state_into,
    read_json,
    write_model_files,
)
from formers.interop.hf_directory import load_hf_directory
from formers.registry import family_classes


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Maps a run directory or a ``latest`` pointer to the checkpoint directory holding ``config.json``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {str(path)!r} does not exist")
    for pointer in (path / "latest", path / "checkpoints" / "latest"):
        if (path / CONFIG_NAME).exists():
            break
        if pointer.is_file():
            target = pointer.parent / pointer.read_text(encoding="utf-8").strip()
            if not (target / CONFIG_NAME).exists():
                raise FileNotFoundError(f"{pointer} points to {target}, which holds no {CONFIG_NAME}")
            return target
    if not (path / CONFIG_NAME).exists():
        raise FileNotFoundError(
            f"{str(path)!r} is not a model directory: expected {CONFIG_NAME} + {WEIGHTS_NAME}, "
            "or a run directory with checkpoints/latest"
        )
    return path


def save_pretrained(model: nn.Module, path: str | Path) -> Path:
    """Writes ``config.json`` + ``model.safetensors`` for a formers model into directory ``path`` (atomically)."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        write_model_files(model, tmp)
    return path


def from_pretrained(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> nn.Module:
    """Rebuilds a model from a formers checkpoint or a Hugging Face directory, dispatching on the family.

    Args:
        path: a formers model/checkpoint directory, a training run directory (its latest checkpoint), or a
            Hugging Face directory with ``config.json`` and ``model.safetensors``.
        device: where to put the weights.
        dtype: optional floating dtype to cast to.

    Returns:
        The model in eval mode.
    """
    directory = resolve_checkpoint_dir(path)
    meta = read_json(directory / CONFIG_NAME)
    if meta.get("format") == FORMAT:
        config_cls, model_cls = family_classes(meta.get("family", "<missing>"))
        config = from_dict(config_cls, meta.get("config", {}))
        model = model_cls(config)
        load_state_into(model, load_safetensors(directory / WEIGHTS_NAME), directory / WEIGHTS_NAME)
    elif "model_type" in meta:
        model = load_hf_directory(directory, meta)
    else:
        raise ValueError(
            f"{directory / CONFIG_NAME} is neither a formers config (format: formers) nor a Hugging Face config "
            "(model_type)"
        )
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval()
