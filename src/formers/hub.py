"""``from_pretrained`` / ``save_pretrained``: formers checkpoint directories and Hugging Face directories.

A formers model directory holds ``config.json`` (``{"format": "formers", "family": ..., "config": {...}}``)
and ``model.safetensors``; a Hugging Face directory holds ``config.json`` with a ``model_type`` and
``model.safetensors``, converted by ``formers.interop``. A training run directory (with ``checkpoints/latest``)
resolves to its latest checkpoint. Pickle files are never read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from torch import nn

from formers.config import from_dict, to_dict
from formers.files import read_json
from formers.registry import family_classes

FORMAT = "formers"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


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


def load_safetensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Loads a safetensors file, raising a ``ValueError`` naming the file when it is missing, truncated or corrupt."""
    if not path.exists():
        raise FileNotFoundError(f"missing weights file {path}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"corrupt or truncated safetensors file {path}: {e}") from None


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Copies ``state`` into ``model``; tied parameters may be stored under any one of their names.

    Raises a ``ValueError`` naming ``source`` on missing or unexpected keys and on shape mismatches.
    """
    expected = model.state_dict()
    missing = sorted(
        names[0] for names in tied_groups(model).values() if not any(n in state for n in names)
    )
    unexpected = sorted(k for k in state if k not in expected)
    if missing or unexpected:
        raise ValueError(f"weights in {source} do not fit the model: missing {missing[:8]}, unexpected {unexpected[:8]}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ValueError(f"weights in {source}: {k} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=False)


def tied_groups(model: nn.Module) -> dict[int, list[str]]:
    """State-dict names grouped by the tensor they share (tied weights form groups of several names)."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return groups


def model_metadata(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` content describing ``model`` (family + config)."""
    return {"format": FORMAT, "family": model.family, "config": to_dict(model.config)}


def save_pretrained(model: nn.Module, path: str | Path) -> Path:
    """Writes ``config.json`` + ``model.safetensors`` for a formers model into directory ``path`` (atomically)."""
    from formers.training.checkpoint import atomic_directory

    path = Path(path)
    with atomic_directory(path) as tmp:
        write_model_files(model, tmp)
    return path


def write_model_files(model: nn.Module, directory: Path) -> None:
    """Writes ``config.json`` and ``model.safetensors`` of ``model`` into an existing ``directory``."""
    (directory / CONFIG_NAME).write_text(json.dumps(model_metadata(model), indent=2), encoding="utf-8")
    save_model(model, str(directory / WEIGHTS_NAME))


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
        from formers.interop import load_hf_directory

        model = load_hf_directory(directory, meta)
    else:
        raise ValueError(
            f"{directory / CONFIG_NAME} is neither a formers config (format: formers) nor a Hugging Face config "
            "(model_type)"
        )
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval()
