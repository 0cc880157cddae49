"""``from_pretrained`` on hostile checkpoints: config bombs, corrupted safetensors headers and bytes, truncated files,
wrong dtypes, NaN weights, symlinks, FIFOs, pickles named ``model.safetensors``, bad ``latest`` pointers.

Every case must end in a clean ``ValueError``/``TypeError``/``FileNotFoundError`` (or load, when the damage is
harmless), never another exception, never a hang (``no_hang`` turns a blocked call into a failure) and never a huge
allocation (a config is checked, and the model built on the meta device, before anything is allocated). The
property-based tests draw configs and byte corruptions with ``hypothesis``; ``-m slow`` runs many more examples.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import struct
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import formers
from formers import hub
from formers.hub import checkpoint_family, from_pretrained, resolve_checkpoint_dir
from formers.interop.bert import save_bert_directory
from formers.interop.gpt2 import save_gpt2_directory
from formers.interop.marian import save_marian_directory
from formers.interop.swin import save_swin_directory
from formers.interop.vit import save_vit_directory
from formers.registry import create_model

CLEAN = (ValueError, TypeError, FileNotFoundError)
"""The only exceptions a hostile checkpoint may raise."""

TINY: dict[str, dict[str, Any]] = {
    "gpt_mini": dict(vocab_size=40, embed_dim=16, num_layers=2, num_heads=2, max_seq_len=16, eos_id=3),
    "transformer_tiny": dict(src_vocab_size=40, tgt_vocab_size=40, embed_dim=16, num_encoder_layers=1,
                             num_decoder_layers=1, num_heads=2, ffn_dim=32, max_seq_len=16),
    "bert_tiny": dict(vocab_size=40, embed_dim=16, num_layers=1, num_heads=2, ffn_dim=32, max_seq_len=16),
    "vit_micro_patch8_32": dict(image_size=16, patch_size=8, embed_dim=16, num_layers=1, num_heads=2, num_classes=3),
    "swin_tiny_cpu": dict(image_size=16, patch_size=2, embed_dim=8, depths=(1, 1), num_heads=(2, 2), window_size=2,
                          num_classes=3),
    "tnt_tiny": dict(image_size=16, patch_size=8, embed_dim=16, inner_dim=8, num_layers=1, num_heads=2,
                     inner_num_heads=2, num_classes=3),
    "efficientformer_tiny": {},
}
HF_SAVERS: dict[str, tuple[str, Callable[..., Path]]] = {
    "gpt2": ("gpt_mini", save_gpt2_directory),
    "bert": ("bert_tiny", save_bert_directory),
    "marian": ("transformer_tiny", save_marian_directory),
    "swin": ("swin_tiny_cpu", save_swin_directory),
    "vit": ("vit_micro_patch8_32", save_vit_directory),
}
FUZZ = settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
FUZZ_SLOW = settings(max_examples=2000, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def no_hang():
    """Fails the test instead of hanging when a call blocks (e.g. opening a FIFO nobody writes to)."""

    def alarm(signum, frame):
        raise TimeoutError("the call blocked")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """Each tiny model saved once: formers directories by variant, Hugging Face ones as ``hf_<model_type>``."""
    root = tmp_path_factory.mktemp("saved")
    out = {}
    torch.manual_seed(0)
    for name, overrides in TINY.items():
        out[name] = formers.save_pretrained(create_model(name, **overrides), root / name)
    for model_type, (name, save) in HF_SAVERS.items():
        model = create_model(name, **TINY[name])
        if model_type == "marian":
            model = create_model(name, **TINY[name], activation="gelu", sinusoidal_layout="concatenated",
                                 output_bias=True, scale_embedding=False)
        out[f"hf_{model_type}"] = save(model, root / f"hf_{model_type}")
    return out


def _copy(source: Path, into: Path) -> Path:
    target = into / source.name
    shutil.copytree(source, target)
    return target


def _load_cleanly(path: Path, **kwargs: Any) -> str:
    """Loads ``path``; returns "ok" or the clean exception's name, and fails on any other exception."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from_pretrained(path, **kwargs)
    except CLEAN as e:
        assert str(e), f"{type(e).__name__} without a message"
        assert len(str(e)) < 3000
        return type(e).__name__
    return "ok"


def test_the_tiny_checkpoints_load(saved):
    for name, path in saved.items():
        assert _load_cleanly(path) == "ok", name


# ---------------------------------------------------------------- config bombs


@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("num_layers", 10**9, ValueError, r"num_layers must be in \[1, 1024\], got 1000000000"),
        ("num_layers", 0, ValueError, r"num_layers must be in \[1, 1024\], got 0"),
        ("embed_dim", -16, ValueError, r"embed_dim must be in \[1, 262144\], got -16"),
        ("embed_dim", 10**30, ValueError, r"embed_dim must be in"),
        ("dropout", float("nan"), ValueError, r"dropout must be finite, got nan"),
        ("layer_norm_eps", float("inf"), ValueError, r"layer_norm_eps must be finite"),
        ("max_seq_len", 1e300, ValueError, r"max_seq_len must be in"),
        ("num_heads", 3, ValueError, r"embed_dim \(16\) must be divisible by num_heads \(3\)"),
        ("num_heads", "2", None, None),  # a string of digits is read as the int, as on the command line
        ("num_layers", 2.5, TypeError, r"num_layers.*expected an int, got 2.5"),
        ("vocab_size", True, TypeError, r"vocab_size.*expected an int, got True"),
        ("vocab_size", [40], TypeError, r"vocab_size"),
        ("activation", "rm -rf", ValueError, r"activation must be one of"),
        ("eos_id", 40, ValueError, r"eos_id=40 is outside the vocabulary"),
        ("no_such_field", 1, TypeError, r"unknown config key\(s\) no_such_field"),
    ],
)
def test_config_bombs_name_the_file_and_the_field(saved, tmp_path, no_hang, field, value, error, message):
    directory = _copy(saved["gpt_mini"], tmp_path)
    meta = json.loads((directory / "config.json").read_text())
    meta["config"][field] = value
    (directory / "config.json").write_text(json.dumps(meta))
    if error is None:
        from_pretrained(directory)
        return
    with pytest.raises(error, match=message) as info:
        from_pretrained(directory)
    assert "config.json" in str(info.value)


@pytest.mark.parametrize(
    "meta, error, message",
    [
        ({"format": "formers", "family": ["gpt"], "config": {}}, ValueError, "'family' must be a model family name"),
        ({"format": "formers", "family": "nope", "config": {}}, ValueError, "unknown model family 'nope'"),
        ({"format": "formers", "family": "gpt", "config": [1, 2]}, ValueError, "'config' must be a mapping"),
        ({"format": "formers", "family": "gpt", "config": {"tokenizer": []}}, TypeError, "tokenizer"),
        ({"model_type": ["gpt2"]}, ValueError, "is not supported"),
        ({"model_type": "llama"}, ValueError, "'llama' is not supported"),
        ({"hello": 1}, ValueError, "neither a formers config"),
    ],
)
def test_malformed_config_json_is_refused(saved, tmp_path, meta, error, message):
    directory = _copy(saved["gpt_mini"], tmp_path)
    (directory / "config.json").write_text(json.dumps(meta))
    with pytest.raises(error, match=message):
        from_pretrained(directory)


def test_deeply_nested_config_json_is_a_value_error(saved, tmp_path):
    directory = _copy(saved["gpt_mini"], tmp_path)
    (directory / "config.json").write_text('{"format": "formers", "config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match=r"config\.json: nested too deeply"):
        from_pretrained(directory)


def test_config_is_checked_against_the_weights_header_before_anything_is_allocated(saved, tmp_path, monkeypatch):
    """A config that fits every range but not the weights is refused from the safetensors header alone: the real
    model is never built and no tensor is read."""
    directory = _copy(saved["gpt_mini"], tmp_path)
    meta = json.loads((directory / "config.json").read_text())
    meta["config"].update(embed_dim=2**17, vocab_size=2**20, max_seq_len=2**19)  # 1.4e11 elements on the meta device
    (directory / "config.json").write_text(json.dumps(meta))
    built_for_real = []
    real_init = formers.models.gpt.GPT.__init__

    def spy(self, config):
        built_for_real.append(torch.empty(0).device.type != "meta")
        real_init(self, config)

    monkeypatch.setattr(formers.models.gpt.GPT, "__init__", spy)
    monkeypatch.setattr(hub, "load_safetensors", lambda *a, **k: pytest.fail("tensors read before the header check"))
    with pytest.raises(ValueError, match="MAX_MODEL_ELEMENTS") as info:  # too big to build at all
        from_pretrained(directory)
    assert "config.json" in str(info.value)
    meta["config"].update(embed_dim=32, vocab_size=40, max_seq_len=16)  # builds, but not these weights
    (directory / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"model\.safetensors: .* has shape \(\d+, 16\), the model .*config\.json "
                                         r"describes expects \(\d+, 32\)"):
        from_pretrained(directory)
    assert built_for_real == [False, False]


def test_a_hugging_face_config_bigger_than_its_weights_is_refused_before_allocating(saved, tmp_path, monkeypatch):
    """Within every field's range and under MAX_MODEL_ELEMENTS (48 layers of width 1024: 2.4 GB), but far more than
    the tiny weight file can fill: refused on the meta device, the model never built for real."""
    directory = _copy(saved["hf_gpt2"], tmp_path)
    meta = json.loads((directory / "config.json").read_text())
    meta.update(n_layer=48, n_embd=1024, n_head=16)
    (directory / "config.json").write_text(json.dumps(meta))
    built_for_real = []
    real_init = formers.models.gpt.GPT.__init__

    def spy(self, config):
        built_for_real.append(torch.empty(0).device.type != "meta")
        real_init(self, config)

    monkeypatch.setattr(formers.models.gpt.GPT, "__init__", spy)
    with pytest.raises(ValueError, match=r"more than what the weights in .*hf_gpt2 can fill \([\d,]+ elements\)"):
        from_pretrained(directory)
    assert built_for_real == [False]


# ---------------------------------------------------------------- weights


def test_non_finite_weights_are_refused_naming_the_tensor_unless_allowed(saved, tmp_path):
    directory = _copy(saved["gpt_mini"], tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    name = min(k for k, v in state.items() if v.is_floating_point() and v.dim() == 2)
    state[name][0, 0] = float("nan")
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(ValueError, match=rf"model\.safetensors hold NaN or infinite values: {name} \(1 values\)"):
        from_pretrained(directory)
    with pytest.warns(UserWarning, match=name):
        model = from_pretrained(directory, allow_non_finite=True)
    assert torch.isnan(model.state_dict()[name]).any()


def test_integer_tensors_where_floats_belong_are_refused_from_the_header(saved, tmp_path, monkeypatch):
    directory = _copy(saved["gpt_mini"], tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    name = min(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].to(torch.int64)
    save_file(state, str(directory / "model.safetensors"))
    monkeypatch.setattr(hub, "load_safetensors", lambda *a, **k: pytest.fail("tensors read before the header check"))
    with pytest.raises(ValueError, match=rf"{name} holds integer values \(torch.int64\), .* expects floating-point"):
        from_pretrained(directory)


class _Marker:
    """Unpickling this creates ``path``: proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_pickle_is_never_unpickled(saved, tmp_path):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps({"embed.weight": _Marker(marker)})
    directory = _copy(saved["gpt_mini"], tmp_path)
    (directory / "model.safetensors").write_bytes(payload)
    with pytest.raises(ValueError, match=r"corrupt or truncated safetensors file .*model\.safetensors"):
        from_pretrained(directory)
    hf = _copy(saved["hf_gpt2"], tmp_path)
    (hf / "model.safetensors").unlink()
    (hf / "pytorch_model.bin").write_bytes(payload)
    with pytest.raises(FileNotFoundError, match="never reads pickle"):
        from_pretrained(hf)
    (hf / "model.safetensors").write_bytes(payload)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        from_pretrained(hf)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_fifos_devices_and_symlinks_in_place_of_a_file(saved, tmp_path, no_hang, name):
    directory = _copy(saved["gpt_mini"], tmp_path)
    target = directory / name
    elsewhere = tmp_path / f"elsewhere-{name}"
    shutil.move(target, elsewhere)
    target.symlink_to(elsewhere)  # a symlink to a good file is fine
    assert _load_cleanly(directory) == "ok"
    for make, error, message in [
        (lambda: os.mkfifo(target), ValueError, "is not a regular file .*a FIFO"),
        (lambda: target.symlink_to("/dev/zero"), ValueError, "a character device"),
        (lambda: target.mkdir(), ValueError, "a directory"),
        (lambda: target.symlink_to(target), ValueError, "cannot be read"),
        (lambda: target.symlink_to(tmp_path / "nowhere"), FileNotFoundError, name),
    ]:
        if target.is_dir() and not target.is_symlink():
            target.rmdir()
        else:
            target.unlink(missing_ok=True)
        make()
        with pytest.raises(error, match=message):
            from_pretrained(directory)


# ---------------------------------------------------------------- run directories and their pointer


@pytest.mark.parametrize(
    "pointer, error, message",
    [
        (b"x" * 5000, ValueError, "5,000 bytes"),
        (b"\x00\x01\xfe\xff", ValueError, "binary data"),
        (b"../../elsewhere", ValueError, "one directory name"),
        (b"step_9", FileNotFoundError, "step_9, which holds no config.json"),
        (b"", ValueError, "one directory name"),
    ],
)
def test_a_hostile_latest_pointer_is_refused(saved, tmp_path, pointer, error, message):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copytree(saved["gpt_mini"], checkpoints / "step_1")
    (checkpoints / "latest").write_bytes(b"step_1\n")
    assert resolve_checkpoint_dir(tmp_path / "run") == checkpoints / "step_1"
    (checkpoints / "latest").write_bytes(pointer)
    with pytest.raises(error, match=message):
        from_pretrained(tmp_path / "run")


def test_a_fifo_as_latest_pointer_does_not_block(saved, tmp_path, no_hang):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    os.mkfifo(checkpoints / "latest")
    with pytest.raises(ValueError, match="a FIFO"):
        resolve_checkpoint_dir(tmp_path / "run")


def test_checkpoint_family_reads_only_the_config(saved):
    assert checkpoint_family(saved["gpt_mini"]) == "gpt"
    assert checkpoint_family(saved["transformer_tiny"]) == "transformer"
    assert checkpoint_family(saved["hf_marian"]) is None  # a Hugging Face directory: its converter decides


# ---------------------------------------------------------------- property-based: hostile config.json values

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.sampled_from([0, -1, 1025, 2**18 + 1, 2**22 + 1, 2**31, 2**63, 10**9, 10**30, -(10**9)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


def _fuzz_config(saved: dict[str, Path], data: st.DataObject, hf: bool) -> str:
    names = sorted(k for k in saved if k.startswith("hf_") == hf)
    source = saved[data.draw(st.sampled_from(names), label="checkpoint")]
    with tempfile.TemporaryDirectory() as tmp:
        directory = _copy(source, Path(tmp))
        meta = json.loads((directory / "config.json").read_text())
        fields = meta if hf else meta["config"]
        keys = sorted(fields) + ["unknown_field"]
        for _ in range(data.draw(st.integers(1, 3), label="changes")):
            key = data.draw(st.sampled_from(keys), label="field")
            fields[key] = data.draw(JSON_VALUES, label=f"{key}")
        if not hf and data.draw(st.booleans(), label="top-level too"):
            meta[data.draw(st.sampled_from(["family", "format", "config"]))] = data.draw(JSON_VALUES, label="top")
        (directory / "config.json").write_text(json.dumps(meta))
        outcome = _load_cleanly(directory)
    event(f"config: {outcome}")
    return outcome


@FUZZ
@given(data=st.data())
def test_hypothesis_config_json_values_give_clean_errors(saved, data):
    _fuzz_config(saved, data, hf=False)


@FUZZ
@given(data=st.data())
def test_hypothesis_hugging_face_config_values_give_clean_errors(saved, data):
    _fuzz_config(saved, data, hf=True)


# ---------------------------------------------------------------- property-based: corrupted safetensors bytes


def _fuzz_weights(saved: dict[str, Path], data: st.DataObject) -> str:
    name = data.draw(st.sampled_from(["gpt_mini", "vit_micro_patch8_32", "hf_gpt2"]), label="checkpoint")
    with tempfile.TemporaryDirectory() as tmp:
        directory = _copy(saved[name], Path(tmp))
        path = directory / "model.safetensors"
        raw = bytearray(path.read_bytes())
        (header_len,) = struct.unpack("<Q", raw[:8])
        how = data.draw(st.sampled_from(["truncate", "header bytes", "any bytes", "length", "append", "prefix",
                                         "header text"]), label="corruption")
        if how == "truncate":
            raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
        elif how in ("header bytes", "any bytes"):
            end = 8 + header_len if how == "header bytes" else len(raw)
            for _ in range(data.draw(st.integers(1, 8), label="bytes")):
                raw[data.draw(st.integers(0, end - 1), label="at")] = data.draw(st.integers(0, 255), label="to")
        elif how == "length":
            raw[:8] = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1), label="header length"))
        elif how == "append":
            raw += data.draw(st.binary(min_size=1, max_size=64), label="tail")
        elif how == "prefix":
            raw = bytearray(data.draw(st.binary(max_size=64), label="head")) + raw
        else:  # rewrite one value of the JSON header, keeping its length field consistent
            header = json.loads(raw[8: 8 + header_len])
            key = data.draw(st.sampled_from(sorted(header)), label="tensor")
            if key != "__metadata__":
                field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets"]), label="entry")
                header[key][field] = data.draw(JSON_VALUES, label="value")
            text = json.dumps(header).encode()
            raw = bytearray(struct.pack("<Q", len(text))) + text + raw[8 + header_len:]
        path.write_bytes(bytes(raw))
        outcome = _load_cleanly(directory)
    event(f"weights, {how}: {outcome}")
    return outcome


@FUZZ
@given(data=st.data())
def test_hypothesis_corrupted_safetensors_give_clean_errors(saved, data):
    _fuzz_weights(saved, data)


@pytest.mark.slow
@FUZZ_SLOW
@given(data=st.data())
def test_hypothesis_many_hostile_checkpoints(saved, data):
    kind = data.draw(st.sampled_from(["config", "hf config", "weights"]))
    if kind == "weights":
        _fuzz_weights(saved, data)
    else:
        _fuzz_config(saved, data, hf=kind == "hf config")
