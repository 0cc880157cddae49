"""``from_pretrained`` / ``save_pretrained``: formers checkpoint directories and Hugging Face directories.

A formers model directory holds ``config.json`` (``{"format": "formers", "family": ..., "config": {...}}``)
and ``model.safetensors`` (:mod:`formers.files`); a Hugging Face directory holds ``config.json`` with a
``model_type`` and ``model.safetensors``, converted by the converter registered for that ``model_type``
(:mod:`formers.interop`). A training run directory (with ``checkpoints/latest``) resolves to its latest checkpoint.

Every file is treated as untrusted: ``config.json`` is read with a size bound and every config field is checked
(types, finite values, ranges, divisibility: each family's ``Config.__post_init__``); the model is first built on the
``meta`` device (no memory) and bounded in size, and the weight file's safetensors header is checked against it
(names, shapes, dtype kinds) before anything is allocated; a Hugging Face model may not outgrow what its weights can
fill (:func:`formers.interop.hf_directory.load_hf_directory`). Weights holding NaN or infinite values are refused unless
``allow_non_finite=True`` (then a warning names them). FIFOs, devices and directories in place of a file are refused
without opening them. Pickle files are never read.
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
    check_state_fits,
    load_safetensors,
    load_state_into,
    read_json,
    read_pointer,
    safetensors_header,
    write_model_files,
)
from formers.interop.hf_directory import load_hf_directory
from formers.registry import family_classes, meta_model


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Maps a run directory or a ``latest`` pointer to the checkpoint directory holding ``config.json``.

    Raises:
        FileNotFoundError: ``path`` does not exist, holds neither ``config.json`` nor a ``latest`` pointer, or the
            pointer names a directory without ``config.json``.
        ValueError: the pointer is not a small text file naming one directory (see :func:`formers.files.read_pointer`).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {str(path)!r} does not exist")
    if _present(path / CONFIG_NAME):
        return path  # whatever it is: from_pretrained says what is wrong with it
    for pointer in (path / "latest", path / "checkpoints" / "latest"):
        if _present(pointer):
            target = read_pointer(pointer)
            if not _present(target / CONFIG_NAME):
                raise FileNotFoundError(f"{pointer} points to {target}, which holds no {CONFIG_NAME}")
            return target
    raise FileNotFoundError(
        f"{str(path)!r} is not a model directory: expected {CONFIG_NAME} + {WEIGHTS_NAME}, "
        "or a run directory with checkpoints/latest"
    )


def _present(path: Path) -> bool:
    """``path`` exists, or is a symlink (even a dangling or looping one, which reading it then reports)."""
    return path.exists() or path.is_symlink()


def checkpoint_family(path: str | Path) -> str | None:
    """The formers model family a checkpoint holds (``"gpt"``, ``"transformer"``...), read from its ``config.json``
    without building anything; ``None`` for a Hugging Face directory (its converter decides the family).

    Raises:
        ValueError: a formers ``config.json`` that names no family, or neither a formers nor a Hugging Face config.
    """
    config_path = resolve_checkpoint_dir(path) / CONFIG_NAME
    meta = read_json(config_path)
    if meta.get("format") != FORMAT:
        if "model_type" in meta:
            return None
        raise ValueError(f"{config_path} is neither a formers config (format: formers) nor a Hugging Face config")
    family = meta.get("family")
    if not isinstance(family, str):
        raise ValueError(f"{config_path}: 'family' must be a model family name, got {family!r}")
    return family


def save_pretrained(model: nn.Module, path: str | Path) -> Path:
    """Writes ``config.json`` + ``model.safetensors`` for a formers model into directory ``path`` (atomically)."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        write_model_files(model, tmp)
    return path


def from_pretrained(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    allow_non_finite: bool = False,
) -> nn.Module:
    """Rebuilds a model from a formers checkpoint or a Hugging Face directory, dispatching on the family.

    Args:
        path: a formers model/checkpoint directory, a training run directory (its latest checkpoint), or a
            Hugging Face directory with ``config.json`` and ``model.safetensors``.
        device: where to put the weights.
        dtype: optional floating dtype to cast to.
        allow_non_finite: load weights holding NaN or infinite values (with a warning naming them) instead of
            refusing them.

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: naming the file: a file that is not a regular file, corrupt JSON or safetensors, a config field
            out of range (naming the field, its range and value), a model too big to build, weights that do not fit
            the config (names, shapes, integer tensors where floats belong), NaN or infinite weights.
        TypeError: a config field of the wrong type, or an unknown config key.
    """
    directory = resolve_checkpoint_dir(path)
    config_path = directory / CONFIG_NAME
    meta = read_json(config_path)
    if meta.get("format") == FORMAT:
        model = _load_formers_directory(directory, meta, allow_non_finite)
    elif "model_type" in meta:
        model = load_hf_directory(directory, meta, allow_non_finite=allow_non_finite)
    else:
        raise ValueError(
            f"{config_path} is neither a formers config (format: formers) nor a Hugging Face config (model_type)"
        )
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval()


def _load_formers_directory(directory: Path, meta: dict, allow_non_finite: bool) -> nn.Module:
    """A formers model directory: config checked, then the weights' header against the config, then the weights."""
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    family, fields = meta.get("family"), meta.get("config", {})
    if not isinstance(family, str):
        raise ValueError(f"{config_path}: 'family' must be a model family name, got {family!r}")
    config_cls, model_cls = family_classes(family)
    if not isinstance(fields, dict):
        raise ValueError(f"{config_path}: 'config' must be a mapping of config fields, got {type(fields).__name__}")
    try:
        config = from_dict(config_cls, fields)
        skeleton = meta_model(model_cls, config)  # no memory: shapes and dtypes only, size bounded
    except (TypeError, ValueError) as e:
        raise type(e)(f"{config_path}: {e}") from None
    check_state_fits(skeleton, safetensors_header(weights_path), weights_path, f"the model {config_path} describes")
    model = model_cls(config)
    load_state_into(model, load_safetensors(weights_path), weights_path, allow_non_finite=allow_non_finite)
    return model
