"""Files on disk, the leaf every other room writes and reads through.

Atomic writes (a temporary name, fsync, rename: a crash leaves the old file or the complete new one; a failed write
raises an ``OSError`` naming the path), the names of a model directory's files (``config.json`` +
``model.safetensors``), safetensors reading that names the file when it is corrupt, model-directory metadata,
copying a state dict into a model with clear errors, and Hugging Face weight files (single or sharded).

Files may come from anyone, so reading never trusts them: only regular files are opened (a FIFO or a device in
place of ``config.json`` is refused instead of blocking), JSON and pointer files are read with a size bound, a
safetensors header is read and checked before any tensor (:func:`safetensors_header`), and loaded weights must
match the model's dtypes and be finite (:func:`load_state_into`). Pickle files are never read.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from formers.config import to_dict

FORMAT = "formers"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
GENERATION_CONFIG_NAME = "generation_config.json"  # Hugging Face decoding defaults beside config.json
MAX_JSON_BYTES = 2**28
"""Largest JSON file :func:`read_json` reads (256 MiB: a big ``tokenizer.json`` is tens of MiB)."""
MAX_POINTER_BYTES = 256
"""Largest pointer file (``checkpoints/latest``) :func:`read_pointer` reads: one directory name."""
_POINTER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")


# ---------------------------------------------------------------- atomic writes


def current_umask() -> int:
    """The process's umask, read from ``/proc`` where possible (``os.umask`` can only read it by setting it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_by_umask(path: Path) -> None:
    """Gives ``path`` and every file and folder under it the mode ``open``/``mkdir`` would have given it (0o666 /
    0o777 less the umask): ``mkstemp``, ``mkdtemp`` and safetensors create private (0600 / 0700) files, while a
    saved model or run should be as readable as anything else the user writes. Symbolic links are left alone."""
    mask = current_umask()
    if not path.is_dir():
        os.chmod(path, 0o666 & ~mask)
        return
    os.chmod(path, 0o777 & ~mask)
    for root, dirs, files in os.walk(path):  # os.walk does not follow links into folders
        for name in dirs + files:
            entry = Path(root) / name
            if not entry.is_symlink():
                os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)


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
        chmod_by_umask(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        named = _naming(e, path)
        if named is e:
            raise
        raise named from e


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
        chmod_by_umask(tmp)
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
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        named = _naming(e, path)
        if named is e:
            raise
        raise named from e


def _naming(error: BaseException, path: Path) -> BaseException:
    """The error of a failed write, as an ``OSError`` naming ``path`` when it is an I/O failure.

    ``write()`` on a full disk raises ``OSError(ENOSPC)`` without a file name, and safetensors wraps the same failure
    in a ``SafetensorError``; both become an ``OSError`` with the errno, its message and ``path``.
    """
    if isinstance(error, OSError) and error.filename is None and error.errno is not None:
        error.filename = str(path)
        return error
    if isinstance(error, SafetensorError) and (m := re.search(r"os error (\d+)", str(error))):
        code = int(m.group(1))
        return OSError(code, os.strerror(code), str(path))
    return error


# ---------------------------------------------------------------- reading


def check_regular_file(path: Path, what: str = "file") -> int:
    """Returns the size of ``path`` after checking it is a regular file (following symlinks), without opening it.

    Raises:
        FileNotFoundError: ``path`` (or the file a symlink names) does not exist.
        ValueError: ``path`` is a directory, a FIFO, a device, a socket or a symlink loop: opening a FIFO would
            block until someone writes to it, and a device may never end.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing {what} {path}") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENAMETOOLONG, errno.ENOTDIR):
            raise ValueError(f"{what} {path} cannot be read: {e.strerror}") from None
        raise
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{what} {path} is not a regular file (it is {_file_kind(info.st_mode)})")
    return info.st_size


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def read_regular_file(path: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of regular file ``path``, refusing anything else or more than ``limit`` bytes.

    The file is opened non-blocking and checked again once open, so a FIFO swapped in after the first check cannot
    block the read either.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a regular file, or larger than ``limit`` bytes (naming the file and both sizes).
    """
    size = check_regular_file(path, what)
    if size > limit:
        raise ValueError(f"{what} {path} is {size:,} bytes, more than the {limit:,} it may hold")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{what} {path} is not a regular file")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ValueError(f"{what} {path} is more than the {limit:,} bytes it may hold")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_json(path: Path) -> dict[str, Any]:
    """Reads a JSON object, raising a ``ValueError`` that names the file when it is corrupt.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a regular file, larger than :data:`MAX_JSON_BYTES`, not UTF-8, not JSON, nested too deeply
            or not an object.
    """
    data = read_regular_file(path, MAX_JSON_BYTES, "JSON file")
    try:
        parsed = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"corrupt JSON in {path}: not UTF-8 text ({e})") from None
    except RecursionError:
        raise ValueError(f"corrupt JSON in {path}: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, or an integer literal longer than Python converts
        raise ValueError(f"corrupt JSON in {path}: {e}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(parsed).__name__}")
    return parsed


def read_pointer(pointer: Path) -> Path:
    """The directory a pointer file (``checkpoints/latest``) names: a sibling of the pointer.

    Raises:
        FileNotFoundError: ``pointer`` does not exist.
        ValueError: naming the pointer, when it is not a regular file, holds more than :data:`MAX_POINTER_BYTES`,
            binary data, or anything but one plain directory name (no ``/``, no ``..``).
    """
    data = read_regular_file(pointer, MAX_POINTER_BYTES, "checkpoint pointer")
    try:
        name = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(f"checkpoint pointer {pointer} must name a checkpoint directory; it holds binary data") from None
    if not _POINTER_NAME.fullmatch(name):
        raise ValueError(
            f"checkpoint pointer {pointer} must hold one directory name (letters, digits, '.', '_', '-'), "
            f"got {name[:80]!r}"
        )
    return pointer.parent / name


# safetensors dtype names -> torch dtypes (those this torch build has)
_SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    name: dtype
    for name, dtype in {
        "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
        "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None),
        "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
        "U16": getattr(torch, "uint16", None), "U32": getattr(torch, "uint32", None),
        "U64": getattr(torch, "uint64", None), "BOOL": torch.bool,
    }.items()
    if dtype is not None
}

TensorInfo = tuple[tuple[int, ...], torch.dtype]
"""What a file says about a tensor before it is read: its shape and dtype."""


def safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """The shape and dtype of every tensor in a safetensors file, read from its header alone (no tensor is loaded).

    The header is validated by ``safetensors`` itself (offsets inside the file, sizes matching shapes and dtypes), so
    loading the file afterwards allocates no more than the file holds.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming the file, when it is not a regular file or not a valid safetensors file (a pickle, a
            truncated or corrupt file, a dtype torch does not have).
    """
    check_regular_file(path, "weights file")
    info: dict[str, TensorInfo] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                tensor = f.get_slice(name)
                dtype = tensor.get_dtype()
                if dtype not in _SAFETENSORS_DTYPES:
                    raise ValueError(f"tensor {name} has dtype {dtype}, which formers does not read")
                info[name] = (tuple(tensor.get_shape()), _SAFETENSORS_DTYPES[dtype])
    except (SafetensorError, OSError, RuntimeError, ValueError, TypeError) as e:
        raise ValueError(f"corrupt or truncated safetensors file {path}: {e}") from None
    return info


def load_safetensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Loads a safetensors file, raising a ``ValueError`` naming the file when it is missing, truncated or corrupt."""
    check_regular_file(path, "weights file")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, RuntimeError, ValueError, TypeError) as e:
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
        for shard in weight_map.values():
            if not isinstance(shard, str) or Path(shard).name != shard or shard in (".", ".."):
                raise ValueError(f"{index} names shard {shard!r}; shards must be plain file names in {directory}")
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
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


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "floating-point" if dtype.is_floating_point else "integer"


def check_state_fits(
    model: nn.Module, state: Mapping[str, TensorInfo], source: Path, model_name: str = "the model"
) -> None:
    """Checks that tensors described by ``state`` (name -> shape, dtype) fit ``model``, before any is loaded.

    ``model`` may live on the ``meta`` device (built without memory, :func:`formers.registry.meta_model`), so a file
    can be checked against a config before the model is allocated. Tied parameters may be stored under any one
    of their names. A floating-point tensor may differ in precision (it is cast), but not in kind: integers
    where the model has floats (or the reverse) are refused.

    Args:
        model: the model (or its meta-device skeleton) the tensors must fit.
        state: name -> (shape, dtype) of the tensors, e.g. from :func:`safetensors_header`.
        source: the file they come from, named in every error.
        model_name: how errors name the model (``"the model config.json describes"``).

    Raises:
        ValueError: naming ``source`` and the tensor: missing or unexpected names, a shape or dtype mismatch.
    """
    expected = model.state_dict()
    missing = sorted(names[0] for names in tied_groups(model).values() if not any(n in state for n in names))
    unexpected = sorted(k for k in state if k not in expected)
    if missing or unexpected:
        raise ValueError(
            f"weights in {source} do not fit {model_name}: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    for k, (shape, dtype) in state.items():
        want = expected[k]
        if tuple(shape) != tuple(want.shape):
            raise ValueError(f"weights in {source}: {k} has shape {tuple(shape)}, {model_name} expects {tuple(want.shape)}")
        if _kind(dtype) != _kind(want.dtype):
            raise ValueError(
                f"weights in {source}: {k} holds {_kind(dtype)} values ({dtype}), {model_name} expects "
                f"{_kind(want.dtype)} values ({want.dtype})"
            )


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Names of the floating-point tensors of ``state`` holding NaN or infinite values, with how many each holds."""
    bad = {}
    for name, tensor in state.items():
        if tensor.is_floating_point():
            values = tensor if tensor.element_size() > 1 else tensor.to(torch.float16)  # float8 has no isfinite
            count = int((~torch.isfinite(values)).sum())
            if count:
                bad[name] = count
    return bad


def load_state_into(
    model: nn.Module, state: dict[str, torch.Tensor], source: Path, allow_non_finite: bool = False
) -> None:
    """Copies ``state`` into ``model``; tied parameters may be stored under any one of their names.

    Args:
        model: the model to fill.
        state: tensors by state-dict name; floating-point ones are cast to the model's precision.
        source: the file they came from, named in every error.
        allow_non_finite: load NaN or infinite weights with a warning instead of refusing them.

    Raises:
        ValueError: naming ``source``: missing or unexpected keys, shape or dtype-kind mismatches (see
            :func:`check_state_fits`), and NaN or infinite values unless ``allow_non_finite``.
    """
    check_state_fits(model, {k: (tuple(v.shape), v.dtype) for k, v in state.items()}, source)
    bad = non_finite_tensors(state)
    if bad:
        listed = ", ".join(f"{name} ({count:,} values)" for name, count in list(bad.items())[:5])
        more = f" and {len(bad) - 5} more tensors" if len(bad) > 5 else ""
        if not allow_non_finite:
            raise ValueError(
                f"weights in {source} hold NaN or infinite values: {listed}{more}; pass allow_non_finite=True to "
                "load them anyway"
            )
        warnings.warn(f"weights in {source} hold NaN or infinite values: {listed}{more}", stacklevel=2)
    model.load_state_dict(state, strict=False)


def model_metadata(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` content describing ``model`` (family + config)."""
    return {"format": FORMAT, "family": model.family, "config": to_dict(model.config)}


def write_model_files(model: nn.Module, directory: Path) -> None:
    """Writes ``config.json`` and ``model.safetensors`` of ``model`` into an existing ``directory``."""
    (directory / CONFIG_NAME).write_text(json.dumps(model_metadata(model), indent=2), encoding="utf-8")
    save_file(state_for_saving(model), str(directory / WEIGHTS_NAME), metadata={"format": "pt"})


def state_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict as safetensors stores it: each tied weight once, every tensor owning its storage.

    Tied weights (the same storage, offset, shape and stride under several names) are kept once, under the name that
    sorts first, as ``safetensors.torch.save_model`` keeps them; loading fills the other names through the tie.
    Tensors that are views into a storage shared with other tensors, such as the flat weight buffer cuDNN keeps for
    ``nn.LSTM`` on a GPU, are copied out, since safetensors refuses partial views.
    """
    state = model.state_dict()
    kept: dict[str, torch.Tensor] = {}
    seen: set[tuple] = set()
    for name in sorted(state):
        t = state[name]
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if key not in seen:
            seen.add(key)
            kept[name] = t
    storage = lambda t: (t.device, t.untyped_storage().data_ptr())  # noqa: E731
    users = Counter(storage(t) for t in kept.values())
    out = {}
    for name, t in kept.items():
        shared = users[storage(t)] > 1
        partial = t.numel() * t.element_size() != t.untyped_storage().nbytes()
        out[name] = t.detach().clone() if shared or partial or not t.is_contiguous() else t.detach()
    return out
