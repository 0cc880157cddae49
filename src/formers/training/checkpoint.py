"""Training checkpoints: atomic directories holding everything needed to resume a run exactly.

Layout of ``run_dir/checkpoints/``::

    step_00001234/            one directory per saved step (the last ``keep_last`` are kept)
        config.json           model family + config (``formers.files.write_model_files``)
        model.safetensors     model weights
        optimizer.json        optimizer state without tensors (param groups, hyper-parameters)
        optimizer.safetensors its tensors (Adam moments, step counts)
        scheduler.json        LR scheduler state (+ scheduler.safetensors if it holds tensors)
        scaler.json           fp16 GradScaler state
        rng.json              python and numpy RNG states
        rng.safetensors       torch CPU and CUDA RNG states (uint8)
        loader.json           the train loader's state_dict, when it has one
        trainer_state.json    step, epoch, batch position, best metric, non-finite counters
        <extra files>         e.g. tokenizer.json, written by the task
    latest                    text file naming the newest step directory
    best                      link to the step directory with the best eval metric (never pruned; a copy where
                              links are unavailable and in older runs): see formers.training.best

Every directory is written under a temporary name, fsynced and renamed (:func:`atomic_directory`), and only then
is a pointer replaced (temporary file, fsync, ``os.replace``): a crash at any point leaves the previous checkpoint
and pointers intact. Pruning renames a directory out of the step names before deleting it, so no half-deleted
step directory is ever left under a step name. Nothing is ever pickled: non-tensor state goes to JSON (tuples,
int keys and dtypes tagged so they round-trip exactly) and tensors to safetensors. A corrupt or truncated file
raises a ``ValueError`` naming it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from formers.files import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    atomic_directory,
    atomic_file,
    load_safetensors,
    load_state_into,
    read_json,
    state_for_saving,
    write_model_files,
)

CHECKPOINTS_DIR = "checkpoints"
LATEST_NAME = "latest"
BEST_NAME = "best"
MAX_POINTER_BYTES = 255  # a directory name; longer pointer files are corrupt
TRAINER_STATE_NAME = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")

ExtraFiles = Mapping[str, "str | Path"] | Callable[[Path], None]


@dataclass
class TrainerState:
    """Progress of a run, saved as ``trainer_state.json``.

    Attributes:
        step: optimizer steps taken (skipped non-finite steps included: they consumed their batches).
        epoch: current epoch (0-based).
        batch_in_epoch: batches of ``epoch`` already consumed; resuming skips them.
        best_metric: best value of the configured eval metric so far.
        best_step: step at which ``best_metric`` was reached.
        consecutive_nonfinite: non-finite steps in a row ending at ``step``.
        total_nonfinite: skipped steps over the whole run.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    consecutive_nonfinite: int = 0
    total_nonfinite: int = 0


# ---------------------------------------------------------------- state <-> JSON + safetensors (no pickle)


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Encodes a nested state into JSON-able data, moving tensors into ``tensors`` (keyed by their path)."""
    if isinstance(value, torch.Tensor):
        key = path or "tensor"
        while key in tensors:
            key += "_"
        tensors[key] = value.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v, f"{path}/{k}", tensors) for k, v in value.items()}
        return {"__items__": [[_encode(k, f"{path}/k{i}", tensors), _encode(v, f"{path}/{k}", tensors)]
                              for i, (k, v) in enumerate(value.items())]}
    raise TypeError(
        f"cannot save state entry {path or '<root>'!r}: expected tensors, numbers, strings, lists, tuples or dicts, "
        f"got {type(value).__name__} (checkpoints never pickle)"
    )


def _decode(value: Any, tensors: dict[str, torch.Tensor], source: Path) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, source) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        key = value["__tensor__"]
        if key not in tensors:
            raise ValueError(f"{source} refers to tensor {key!r}, missing from its safetensors file")
        return tensors[key]
    if "__ndarray__" in value:
        return np.asarray(value["__ndarray__"], dtype=value["dtype"])
    if "__dtype__" in value:
        return getattr(torch, value["__dtype__"])
    if "__tuple__" in value:
        return tuple(_decode(v, tensors, source) for v in value["__tuple__"])
    if "__items__" in value:
        return {_decode(k, tensors, source): _decode(v, tensors, source) for k, v in value["__items__"]}
    return {k: _decode(v, tensors, source) for k, v in value.items()}


def save_state(directory: Path, name: str, state: Any) -> None:
    """Writes ``state`` as ``<name>.json`` plus ``<name>.safetensors`` when it holds tensors."""
    tensors: dict[str, torch.Tensor] = {}
    data = _encode(state, "", tensors)
    (directory / f"{name}.json").write_text(json.dumps({"state": data}, indent=1), encoding="utf-8")
    if tensors:
        save_file(tensors, str(directory / f"{name}.safetensors"))


def load_state(directory: Path, name: str, device: str | torch.device = "cpu") -> Any:
    """Reads back what :func:`save_state` wrote; corrupt files raise a ``ValueError`` naming them."""
    json_path = directory / f"{name}.json"
    if not json_path.exists():
        raise FileNotFoundError(f"checkpoint {directory} has no {json_path.name}")
    data = read_json(json_path)
    if "state" not in data:
        raise ValueError(f"{json_path} has no 'state' entry: not a formers training state file")
    tensor_path = directory / f"{name}.safetensors"
    tensors = load_safetensors(tensor_path, device) if tensor_path.exists() else {}
    return _decode(data["state"], tensors, json_path)


# ---------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and (when available) every CUDA device's RNG state."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restores what :func:`rng_state` returned (CUDA states only when the device count matches)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch_cpu"].to(torch.uint8))
    cuda = state.get("torch_cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in cuda])


# ---------------------------------------------------------------- directories and pointers


def checkpoints_dir(run_dir: str | Path) -> Path:
    """``run_dir/checkpoints``."""
    return Path(run_dir) / CHECKPOINTS_DIR


def step_dir_name(step: int) -> str:
    """``step_00001234``: zero-padded so names sort by step."""
    return f"step_{step:08d}"


def step_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete step checkpoint directories of a run, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def read_pointer(pointer: Path) -> Path | None:
    """The checkpoint directory a pointer file (``latest``) names, or ``None`` when there is no such file.

    Raises:
        ValueError: the pointer does not hold a plain directory name (corrupt or hostile file).
        FileNotFoundError: the directory it names holds no complete checkpoint.
    """
    if not pointer.is_file():
        return None
    raw = pointer.read_bytes()[:MAX_POINTER_BYTES + 1]
    name = raw.decode("utf-8", errors="replace").strip()
    if len(raw) > MAX_POINTER_BYTES or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{pointer} must hold the name of a checkpoint directory, got {name[:60]!r}")
    target = pointer.parent / name
    if not (target / TRAINER_STATE_NAME).exists():
        raise FileNotFoundError(f"{pointer} points to {target}, which holds no {TRAINER_STATE_NAME}")
    return target


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint ``run_dir/checkpoints/latest`` points to, or ``None`` when the run has none yet."""
    return read_pointer(checkpoints_dir(run_dir) / LATEST_NAME)


def write_pointer(run_dir: str | Path, name: str, checkpoint: Path) -> None:
    """Atomically points ``run_dir/checkpoints/<name>`` at ``checkpoint`` (temp file, fsync, ``os.replace``)."""
    with atomic_file(checkpoints_dir(run_dir) / name) as tmp:
        tmp.write_text(checkpoint.name + "\n", encoding="utf-8")


def write_latest(run_dir: str | Path, checkpoint: Path) -> None:
    """Atomically points ``run_dir/checkpoints/latest`` at ``checkpoint``."""
    write_pointer(run_dir, LATEST_NAME, checkpoint)


def remove_directory(path: Path) -> None:
    """Deletes ``path`` after renaming it to a hidden leftover name, so a crash mid-delete never leaves a partial
    directory under its real name (:func:`prune_checkpoints` removes such leftovers)."""
    doomed = path.with_name(f".{path.name}.tmp-removed-{os.getpid()}")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _pointed(root: Path, name: str) -> Path | None:
    """The directory pointer file or link ``root/name`` names (unchecked), or ``None``."""
    pointer = root / name
    if pointer.is_symlink():
        return root / os.readlink(pointer)
    if not pointer.is_file():
        return None
    return root / pointer.read_bytes()[:MAX_POINTER_BYTES].decode("utf-8", errors="replace").strip()


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Deletes all but the newest ``keep_last`` step checkpoints (never the ones ``latest`` and ``best`` name) and
    leftovers of interrupted saves. Returns the deleted directories."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    keep = {_pointed(root, LATEST_NAME), _pointed(root, BEST_NAME)}
    removed = [p for p in step_checkpoints(run_dir)[:-keep_last] if p not in keep]
    for p in removed:
        remove_directory(p)
    # leftovers of interrupted saves and deletions (.step_*.tmp-*, .step_*.old-*); .best.* ones are the business of
    # formers.training.best.repair_best, which may still recover a best checkpoint from them
    leftovers = [
        p for p in root.iterdir()
        if p.name.startswith((".step_", f".{LATEST_NAME}.")) and (".tmp-" in p.name or ".old-" in p.name)
    ]
    for p in leftovers:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return removed + leftovers


def _write_extra_files(directory: Path, extra_files: ExtraFiles | None) -> None:
    if extra_files is None:
        return
    if callable(extra_files):
        extra_files(directory)
        return
    for name, source in extra_files.items():
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"extra_files keys must be plain file names, got {name!r}")
        shutil.copyfile(source, directory / name)


def copy_checkpoint(source: Path, destination: Path) -> Path:
    """Atomically replaces ``destination`` with a copy of checkpoint ``source`` (hard links when possible: checkpoint
    files are never modified in place)."""
    with atomic_directory(destination) as tmp:
        for f in source.iterdir():
            if not f.is_file():
                continue
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)
    return destination


# ---------------------------------------------------------------- save / load


def _unwrap(model: nn.Module) -> nn.Module:
    # torch.compile and DDP wrap the model; the checkpoint holds the plain module's weights.
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model


def write_checkpoint(
    directory: str | Path,
    model: nn.Module,
    state: TrainerState,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
    loader: Any | None = None,
    extra_files: ExtraFiles | None = None,
    extra_state: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically writes a full training checkpoint into ``directory`` (replacing it if present).

    Args:
        directory: the checkpoint directory to create.
        model: a formers model (``family`` + ``config``: ``config.json`` is written) or any module (weights only).
        state: the trainer's progress.
        optimizer, scheduler, scaler: saved through their ``state_dict()`` when given (the scaler only if enabled).
        loader: the train loader; its ``state_dict()`` is saved when it has one.
        extra_files: ``{file name: source path}`` copied in, or a callback writing files into the directory.
        extra_state: ``{name: state}`` saved as ``<name>.json`` (+ safetensors), e.g. the ranks' data positions.

    Returns:
        ``directory``.
    """
    directory = Path(directory)
    model = _unwrap(model)
    with atomic_directory(directory) as tmp:
        if hasattr(model, "family") and hasattr(model, "config"):
            write_model_files(model, tmp)
        else:
            save_file(state_for_saving(model), str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        if optimizer is not None:
            save_state(tmp, "optimizer", optimizer.state_dict())
        if scheduler is not None:
            save_state(tmp, "scheduler", scheduler.state_dict())
        if scaler is not None and scaler.is_enabled():
            save_state(tmp, "scaler", scaler.state_dict())
        if loader is not None and hasattr(loader, "state_dict"):
            save_state(tmp, "loader", loader.state_dict())
        save_state(tmp, "rng", rng_state())
        _write_extra_files(tmp, extra_files)
        for name, value in (extra_state or {}).items():
            save_state(tmp, name, value)
        (tmp / TRAINER_STATE_NAME).write_text(json.dumps(dataclasses.asdict(state), indent=2), encoding="utf-8")
    return directory


def save_checkpoint(
    run_dir: str | Path,
    model: nn.Module,
    state: TrainerState,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
    loader: Any | None = None,
    extra_files: ExtraFiles | None = None,
    keep_last: int | None = None,
    extra_state: Mapping[str, Any] | None = None,
) -> Path:
    """Writes ``run_dir/checkpoints/step_<state.step>/`` (see :func:`write_checkpoint`), then moves ``latest`` to it
    and prunes to the newest ``keep_last`` step checkpoints. Returns the checkpoint directory."""
    directory = checkpoints_dir(run_dir) / step_dir_name(state.step)
    write_checkpoint(directory, model, state, optimizer, scheduler, scaler, loader, extra_files, extra_state)
    write_latest(run_dir, directory)
    if keep_last is not None:
        prune_checkpoints(run_dir, keep_last)
    return directory


def write_trainer_state(directory: str | Path, state: TrainerState) -> None:
    """Atomically replaces ``trainer_state.json`` of an existing checkpoint (used when an evaluation after the step's
    save makes it the best: the rest of the checkpoint is that step's state already)."""
    with atomic_file(Path(directory) / TRAINER_STATE_NAME) as tmp:
        tmp.write_text(json.dumps(dataclasses.asdict(state), indent=2), encoding="utf-8")


def read_trainer_state(directory: str | Path) -> TrainerState:
    """Reads ``trainer_state.json`` of a checkpoint (a corrupt file raises a ``ValueError`` naming it)."""
    path = Path(directory) / TRAINER_STATE_NAME
    if not path.exists():
        raise FileNotFoundError(f"{directory} is not a training checkpoint: missing {TRAINER_STATE_NAME}")
    data = read_json(path)
    names = {f.name for f in dataclasses.fields(TrainerState)}
    if set(data) != names:
        raise ValueError(f"{path}: expected keys {sorted(names)}, got {sorted(data)}")
    return TrainerState(**data)


def load_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
    loader: Any | None = None,
    restore_rng: bool = True,
) -> TrainerState:
    """Restores a checkpoint written by :func:`write_checkpoint` into the given objects (never unpickling).

    Args:
        directory: the checkpoint directory.
        model: receives the weights (on whatever device it is).
        optimizer, scheduler, scaler, loader: receive their saved state when given and saved.
        restore_rng: also restore the python / numpy / torch RNG states.

    Returns:
        The saved :class:`TrainerState`.

    Raises:
        ValueError: a file is corrupt or truncated, or the weights do not fit ``model`` (the message names it).
        FileNotFoundError: a file the given objects need is missing.
    """
    directory = Path(directory)
    state = read_trainer_state(directory)
    weights = directory / WEIGHTS_NAME
    load_state_into(_unwrap(model), load_safetensors(weights), weights)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(load_state(directory, "optimizer"))
        except (KeyError, RuntimeError) as e:
            raise ValueError(f"{directory / 'optimizer.json'} does not fit the optimizer: {e}") from None
    if scheduler is not None:
        scheduler.load_state_dict(load_state(directory, "scheduler"))
    if scaler is not None and scaler.is_enabled() and (directory / "scaler.json").exists():
        scaler.load_state_dict(load_state(directory, "scaler"))
    if loader is not None and hasattr(loader, "load_state_dict") and (directory / "loader.json").exists():
        loader.load_state_dict(load_state(directory, "loader"))
    if restore_rng:
        set_rng_state(load_state(directory, "rng"))
    return state


# ---------------------------------------------------------------- averaging (Vaswani et al., sec. 6.1)


def average_checkpoints(paths: Iterable[str | Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model weights of several checkpoints (the paper averages the last 5 or 20).

    Args:
        paths: checkpoint directories (or their ``model.safetensors`` files), all of the same model.

    Returns:
        The averaged state dict; floating tensors are averaged in float64 and cast back, others (integer buffers)
        must be equal and are copied.
    """
    files = [Path(p) / WEIGHTS_NAME if Path(p).is_dir() else Path(p) for p in paths]
    if not files:
        raise ValueError("paths must name at least one checkpoint, got none")
    total: dict[str, torch.Tensor] = {}
    reference: dict[str, torch.Tensor] = {}
    for f in files:
        state = load_safetensors(f)
        if reference and set(state) != set(reference):
            diff = sorted(set(state) ^ set(reference))
            raise ValueError(f"{f} holds different weights than {files[0]}: keys {diff[:8]} differ")
        for k, v in state.items():
            if reference and v.shape != reference[k].shape:
                raise ValueError(f"{f}: {k} has shape {tuple(v.shape)}, {files[0]} has {tuple(reference[k].shape)}")
            if v.is_floating_point():
                total[k] = total[k] + v.double() if k in total else v.double()
            elif reference and not torch.equal(v, reference[k]):
                raise ValueError(f"{f}: non-floating tensor {k} differs from {files[0]}, cannot average it")
        if not reference:
            reference = state
    return {k: (total[k] / len(files)).to(v.dtype) if k in total else v.clone() for k, v in reference.items()}


def write_averaged_model(paths: Iterable[str | Path], output_dir: str | Path) -> Path:
    """Averages the weights of checkpoint directories ``paths`` and atomically writes a model directory.

    The result holds ``model.safetensors`` and the ``config.json`` of the last checkpoint, so
    ``formers.from_pretrained(output_dir)`` loads it.
    """
    paths = [Path(p) for p in paths]
    averaged = average_checkpoints(paths)
    output_dir = Path(output_dir)
    with atomic_directory(output_dir) as tmp:
        save_file(averaged, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        config = paths[-1] / CONFIG_NAME
        if config.exists():
            read_json(config)  # refuse to copy a corrupt config
            shutil.copyfile(config, tmp / CONFIG_NAME)
    return output_dir


def average_run_checkpoints(run_dir: Path, last: int, out: Path) -> list[Path]:
    """Averages the last ``last`` step checkpoints of ``run_dir`` into model directory ``out``.

    Files saved beside the weights (``tokenizer.json``) are copied from the newest checkpoint.
    """
    if last < 2:
        raise ValueError(f"last (--last) must be >= 2 to average anything, got {last}")
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    paths = step_checkpoints(run_dir)[-last:]
    if len(paths) < 2:
        raise ValueError(f"{run_dir} holds {len(paths)} step checkpoint(s); averaging needs at least 2")
    write_averaged_model(paths, out)
    for extra in paths[-1].glob("*.json"):
        if extra.name not in ("config.json", "trainer_state.json") and not (out / extra.name).exists():
            shutil.copyfile(extra, out / extra.name)
    return paths
