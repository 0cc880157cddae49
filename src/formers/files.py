"""Files on disk, the leaf every other room writes and reads through.

Atomic writes (a temporary name, fsync, rename: a crash leaves the old file or the complete new one), the names of
a model directory's files (``config.json`` + ``model.safetensors``), safetensors reading that names the file when it
is corrupt, model-directory metadata, copying a state dict into a model with clear errors, and Hugging Face weight
files (single or sharded). Pickle files are never read.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from torch import nn

from formers.config import to_dict

FORMAT = "formers"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
GENERATION_CONFIG_NAME = "generation_config.json"  # Hugging Face decoding defaults beside config.json


# ---------------------------------------------------------------- atomic writes


def fsync_dir(path: Path) -> None:
    """Flushes a directory's entries (new names, renames) to disk."""
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary file path next to ``path``; on success fsyncs it and renames it to ``path``.

    Write the content to the yielded path (any writer: ``write_text``, ``np.save``, ``save_file``). A failure
    removes the temporary file, so ``path`` holds either its old content or the complete new one.
    ``suffix`` keeps an extension some writers insist on (``np.save`` appends ``.npy`` otherwise).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yields a temporary directory next to ``path``; on success fsyncs its files and renames it to ``path``.

    A crash leaves either the old ``path`` or the new one, never a half-written directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------- reading


def read_json(path: Path) -> dict[str, Any]:
    """Reads a JSON object, raising a ``ValueError`` that names the file when it is corrupt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt JSON in {path}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def load_safetensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Loads a safetensors file, raising a ``ValueError`` naming the file when it is missing, truncated or corrupt."""
    if not path.exists():
        raise FileNotFoundError(f"missing weights file {path}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"corrupt or truncated safetensors file {path}: {e}") from None


def read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face directory's ``model.safetensors`` or of the shards its index names.

    Never reads a pickle file (``pytorch_model.bin``): those must be converted to safetensors first.
    """
    weights, index = directory / WEIGHTS_NAME, directory / WEIGHTS_INDEX_NAME
    if weights.exists():
        return load_safetensors(weights)
    if index.exists():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index} has no 'weight_map' object")
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not isinstance(shard, str) or Path(shard).name != shard:
                raise ValueError(f"{index} names shard {shard!r}; shards must be plain file names in {directory}")
            state.update(load_safetensors(directory / shard))
        return state
    raise FileNotFoundError(
        f"{directory} holds no {WEIGHTS_NAME} (or {WEIGHTS_INDEX_NAME}); formers never reads pickle checkpoints "
        "such as pytorch_model.bin: convert them to safetensors first"
    )


# ---------------------------------------------------------------- model directories


def tied_groups(model: nn.Module) -> dict[int, list[str]]:
    """State-dict names grouped by the tensor they share (tied weights form groups of several names)."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return groups


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


def model_metadata(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` content describing ``model`` (family + config)."""
    return {"format": FORMAT, "family": model.family, "config": to_dict(model.config)}


def write_model_files(model: nn.Module, directory: Path) -> None:
    """Writes ``config.json`` and ``model.safetensors`` of ``model`` into an existing ``directory``."""
    (directory / CONFIG_NAME).write_text(json.dumps(model_metadata(model), indent=2), encoding="utf-8")
    save_model(model, str(directory / WEIGHTS_NAME))
