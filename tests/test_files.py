"""formers.files on hostile files: non-regular files are refused without blocking, reads are bounded, pointers and
safetensors headers are validated, loaded weights must fit in dtype kind and be finite, and failed writes name the
path while keeping the previous content."""

from __future__ import annotations

import errno
import json
import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from formers import files
from formers.files import (
    atomic_directory,
    atomic_file,
    check_regular_file,
    load_safetensors,
    load_state_into,
    read_json,
    read_pointer,
    safetensors_header,
)


@pytest.fixture
def no_hang():
    """Fails the test instead of hanging when a call blocks (e.g. opening a FIFO nobody writes to)."""

    def alarm(signum, frame):
        raise TimeoutError("the call blocked")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _not_regular_files(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a directory, a symlink to a character device, a symlink loop and a dangling symlink."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    directory = tmp_path / "dir"
    directory.mkdir()
    device = tmp_path / "device"
    device.symlink_to("/dev/zero")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    return {"fifo": fifo, "directory": directory, "device": device, "loop": loop}


@pytest.mark.parametrize("reader", [read_json, lambda p: read_pointer(p), safetensors_header, load_safetensors])
def test_non_regular_files_are_refused_without_blocking(tmp_path, no_hang, reader):
    for path in _not_regular_files(tmp_path).values():
        with pytest.raises(ValueError, match=str(path.name)):
            reader(path)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="dangling"):
        reader(dangling)


def test_check_regular_file_says_what_the_path_is(tmp_path):
    paths = _not_regular_files(tmp_path)
    with pytest.raises(ValueError, match="a FIFO"):
        check_regular_file(paths["fifo"], "weights file")
    with pytest.raises(ValueError, match="a directory"):
        check_regular_file(paths["directory"])
    with pytest.raises(ValueError, match="a character device"):
        check_regular_file(paths["device"])
    (tmp_path / "ok").write_bytes(b"12345")
    assert check_regular_file(tmp_path / "ok") == 5


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a": ' + b"9" * 5000 + b"}", "corrupt JSON"),  # an int literal longer than Python converts
        (b'{"a": 1', "corrupt JSON"),
        (b"[1, 2]", "must hold a JSON object"),
        (b"", "corrupt JSON"),
    ],
)
def test_read_json_names_the_file_on_hostile_content(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_json(path)
    assert "config.json" in str(info.value)


def test_read_json_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_JSON_BYTES", 100)
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"a": "x" * 200}))
    with pytest.raises(ValueError, match="more than the 100"):
        read_json(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"x" * 5000, "5,000 bytes"),
        (b"\x00\xff\xfe\x80 binary", "binary data"),
        (b"../../elsewhere", "one directory name"),
        (b"step_1/../../x", "one directory name"),
        (b"/etc", "one directory name"),
        (b"", "one directory name"),
        (b"..", "one directory name"),
        (b"a b", "one directory name"),
    ],
)
def test_read_pointer_refuses_anything_but_one_name(tmp_path, content, message):
    pointer = tmp_path / "latest"
    pointer.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_pointer(pointer)
    assert "latest" in str(info.value) and len(str(info.value)) < 400


def test_read_pointer_reads_a_name(tmp_path):
    (tmp_path / "latest").write_text("step_00000012\n")
    assert read_pointer(tmp_path / "latest") == tmp_path / "step_00000012"


# ---------------------------------------------------------------- safetensors headers


def _weights(path: Path) -> Path:
    save_file({"a": torch.ones(2, 3), "b": torch.arange(4)}, str(path))
    return path


def test_safetensors_header_reads_shapes_and_dtypes(tmp_path):
    header = safetensors_header(_weights(tmp_path / "w.safetensors"))
    assert header == {"a": ((2, 3), torch.float32), "b": ((4,), torch.int64)}


class _Marker:
    """Unpickling this creates ``path``: proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _hostile_weight_files(tmp_path: Path) -> dict[str, bytes]:
    good = _weights(tmp_path / "good.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", good[:8])
    return {
        "pickle": pickle.dumps({"weight": _Marker(tmp_path / "PWNED")}),
        "torch.save zip": b"PK\x03\x04" + b"\x00" * 100,
        "empty": b"",
        "short": b"\x01\x02",
        "truncated header": good[: 8 + n // 2],
        "truncated data": good[:-5],
        "header length past the end": struct.pack("<Q", len(good)) + good[8:],
        "huge header length": struct.pack("<Q", 2**63) + good[8:],
        "header not JSON": good[:8] + b"\xff" * n + good[8 + n:],
        "bad dtype": good.replace(b'"F32"', b'"X32"'),
        "offsets out of range": good.replace(b'"data_offsets":[32,56]', b'"data_offsets":[32,99]'),
        "shape larger than data": good.replace(b'"shape":[2,3]', b'"shape":[9,9]'),
        "extra bytes": good + b"\x00" * 7,
    }


def test_hostile_weight_files_give_a_value_error_naming_the_file_and_never_unpickle(tmp_path, no_hang):
    cases = _hostile_weight_files(tmp_path)
    assert len(set(cases.values())) == len(cases)  # each case really differs from the valid file
    for content in cases.values():
        path = tmp_path / "model.safetensors"
        path.write_bytes(content)
        for reader in (safetensors_header, load_safetensors):
            with pytest.raises(ValueError, match="model.safetensors"):
                reader(path)
    assert not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------- loading into a model


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def _state(**changes: torch.Tensor) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in _Tiny().state_dict().items()}
    state.update(changes)
    return state


def test_integer_tensor_for_a_float_parameter_is_refused(tmp_path):
    model = _Tiny()
    with pytest.raises(ValueError, match=r"linear\.weight holds integer values .*expects floating-point"):
        load_state_into(model, _state(**{"linear.weight": torch.ones(2, 3, dtype=torch.int32)}), tmp_path / "w")
    with pytest.raises(ValueError, match=r"count holds floating-point values"):
        load_state_into(model, _state(count=torch.tensor(1.5)), tmp_path / "w")
    with pytest.raises(ValueError, match=r"holds bool values"):
        load_state_into(model, _state(**{"linear.bias": torch.ones(2, dtype=torch.bool)}), tmp_path / "w")
    # another float precision is cast, as Hugging Face float16 files need
    load_state_into(model, _state(**{"linear.weight": torch.ones(2, 3, dtype=torch.float16)}), tmp_path / "w")
    assert model.linear.weight.dtype == torch.float32 and model.linear.weight.sum() == 6


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_unless_allowed(tmp_path, bad):
    model = _Tiny()
    weight = torch.ones(2, 3)
    weight[1, 2] = bad
    with pytest.raises(ValueError, match=r"w\.safetensors hold NaN or infinite values: linear\.weight \(1 values\)"):
        load_state_into(model, _state(**{"linear.weight": weight}), tmp_path / "w.safetensors")
    assert torch.isfinite(model.linear.weight).all()  # nothing was copied
    with pytest.warns(UserWarning, match=r"linear\.weight"):
        load_state_into(model, _state(**{"linear.weight": weight}), tmp_path / "w.safetensors", allow_non_finite=True)
    assert not torch.isfinite(model.linear.weight).all()


# ---------------------------------------------------------------- failed writes


def test_a_failed_write_names_the_path_and_keeps_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "vocab.txt"
    target.write_text("old\n")
    with pytest.raises(OSError) as info, atomic_file(target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() raises on a full disk: no file name
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["vocab.txt"]

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    from safetensors import SafetensorError

    for error in (
        OSError(errno.EROFS, os.strerror(errno.EROFS)),
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
    ):
        with pytest.raises(OSError) as info, atomic_directory(model_dir):
            raise error
        assert info.value.filename == str(model_dir) and info.value.errno in (errno.EROFS, errno.ENOSPC)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "vocab.txt"]
        assert (model_dir / "config.json").read_text() == "{}"


def test_a_full_disk_during_save_pretrained_names_the_directory_and_keeps_the_old_one(tmp_path):
    """A real write failure: the file-size limit (RLIMIT_FSIZE) makes every write past 64 KiB fail, as a full disk."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import formers
        from formers.registry import create_model
        model = create_model("gpt_mini", vocab_size=64, embed_dim=64, num_layers=2, num_heads=2, max_seq_len=16, eos_id=None)
        formers.save_pretrained(create_model("gpt_mini", vocab_size=8, embed_dim=8, num_layers=1, num_heads=2,
                                             max_seq_len=4, eos_id=None), {str(tmp_path / "m")!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        try:
            formers.save_pretrained(model, {str(tmp_path / "m")!r})
        except OSError as e:
            print(type(e).__name__, e.errno, e.filename)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(files.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["OSError", str(errno.EFBIG), str(tmp_path / "m")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary directory left
    import formers

    assert formers.from_pretrained(tmp_path / "m").config.embed_dim == 8  # the earlier model is intact


def test_resource_limits_are_available():
    assert resource.RLIMIT_FSIZE  # the test above relies on it (Linux, macOS)


class _FlatViews(nn.Module):
    """Weights that are views into one flat buffer, as cuDNN lays out ``nn.LSTM`` on a GPU, plus a tied weight."""

    def __init__(self):
        super().__init__()
        flat = torch.arange(12, dtype=torch.float32)
        self.a = nn.Parameter(flat[:6].view(2, 3))
        self.b = nn.Parameter(flat[6:].view(3, 2))
        self.emb = nn.Linear(3, 2, bias=False)
        self.head = nn.Linear(3, 2, bias=False)
        self.head.weight = self.emb.weight


def test_state_for_saving_copies_partial_views_and_keeps_tied_weights_once(tmp_path):
    model = _FlatViews()
    assert model.a.untyped_storage().data_ptr() == model.b.untyped_storage().data_ptr()
    state = files.state_for_saving(model)
    assert sorted(state) == ["a", "b", "emb.weight"]  # the tie is kept under the name that sorts first
    assert state["a"].untyped_storage().data_ptr() != state["b"].untyped_storage().data_ptr()
    from safetensors.torch import save_model

    with pytest.raises(RuntimeError):  # what safetensors says of the model as it is
        save_model(model, str(tmp_path / "raw.safetensors"))
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    fresh = _FlatViews()
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    fresh.load_state_dict(files.load_safetensors(path), strict=False)
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
