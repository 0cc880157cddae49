from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import formers
from formers.training import checkpoint as ckpt
from formers.training.checkpoint import (
    TrainerState,
    average_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    write_averaged_model,
    write_checkpoint,
)
from formers.training.optim import build_optimizer
from formers.training.schedules import build_scheduler


def _trained(make_model, seed: int = 0, steps: int = 2):
    """A model with a non-empty AdamW state and a stepped scheduler."""
    model = make_model(seed=seed)
    opt = build_optimizer(model, lr=1e-3)
    sched = build_scheduler(opt, "inverse_sqrt", warmup_steps=4)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
        sched.step()
    return model, opt, sched


def test_round_trip_restores_everything(tmp_path: Path, make_model) -> None:
    model, opt, sched = _trained(make_model)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    state = TrainerState(step=7, epoch=1, batch_in_epoch=3, best_metric=0.5, best_step=6, total_nonfinite=2)
    path = save_checkpoint(tmp_path, model, state, opt, sched)
    assert path.name == "step_00000007" and latest_checkpoint(tmp_path) == path
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_00000007"
    expected_rng = (random.random(), np.random.rand(), torch.rand(3))

    model2, opt2, sched2 = _trained(make_model, seed=1, steps=1)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    restored = load_checkpoint(path, model2, opt2, sched2)
    assert restored == state
    assert (random.random(), np.random.rand()) == expected_rng[:2] and torch.equal(torch.rand(3), expected_rng[2])
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    sd, sd2 = opt.state_dict(), opt2.state_dict()
    assert sd["param_groups"] == sd2["param_groups"]
    for k in sd["state"]:
        for name, v in sd["state"][k].items():
            assert torch.equal(v, sd2["state"][k][name]), name
    assert sched2.state_dict() == sched.state_dict()
    # the model part is a regular formers directory
    loaded = formers.from_pretrained(tmp_path)
    assert torch.equal(loaded.encoder.embed.weight, model.encoder.embed.weight)
    # no pickle anywhere
    assert {f.suffix for f in path.iterdir()} <= {".json", ".safetensors"}


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path: Path, make_model, monkeypatch) -> None:
    model, opt, sched = _trained(make_model)
    first = save_checkpoint(tmp_path, model, TrainerState(step=2), opt, sched)
    real_save_state = ckpt.save_state

    def crash(directory, name, state):
        if name == "rng":  # after model and optimizer files are written
            raise OSError("disk full")
        real_save_state(directory, name, state)

    monkeypatch.setattr(ckpt, "save_state", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, model, TrainerState(step=4), opt, sched)
    monkeypatch.setattr(ckpt, "save_state", real_save_state)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000002"]  # no step_4, no temp dir
    assert latest_checkpoint(tmp_path) == first
    assert load_checkpoint(first, make_model(seed=3)).step == 2

    # a crash while replacing the pointer leaves the old pointer
    def failing_replace(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(ckpt.os, "replace", failing_replace)
    with pytest.raises(OSError, match="power cut"):
        ckpt.write_latest(tmp_path, root / "step_00000009")
    monkeypatch.undo()
    assert (root / "latest").read_text().strip() == "step_00000002"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "rng.safetensors"])
def test_truncated_safetensors_names_the_file(tmp_path: Path, make_model, name: str) -> None:
    model, opt, sched = _trained(make_model)
    path = save_checkpoint(tmp_path, model, TrainerState(step=1), opt, sched)
    _truncate(path / name)
    model2, opt2, sched2 = _trained(make_model, seed=1)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        load_checkpoint(path, model2, opt2, sched2)


@pytest.mark.parametrize("name", ["trainer_state.json", "optimizer.json", "scheduler.json", "rng.json"])
def test_corrupt_json_names_the_file(tmp_path: Path, make_model, name: str) -> None:
    model, opt, sched = _trained(make_model)
    path = save_checkpoint(tmp_path, model, TrainerState(step=1), opt, sched)
    (path / name).write_text('{"state": [1, 2', encoding="utf-8")
    model2, opt2, sched2 = _trained(make_model, seed=1)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        load_checkpoint(path, model2, opt2, sched2)


def test_keep_last_prunes_oldest(tmp_path: Path, make_model) -> None:
    model = make_model()
    for step in (1, 2, 3, 4, 5):
        save_checkpoint(tmp_path, model, TrainerState(step=step), keep_last=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step_00000004", "step_00000005"]
    with pytest.raises(ValueError, match="keep_last must be >= 1"):
        ckpt.prune_checkpoints(tmp_path, 0)


def test_extra_files_dict_and_callback(tmp_path: Path, make_model) -> None:
    tokenizer = tmp_path / "tok.json"
    tokenizer.write_text('{"vocab": 1}')
    a = write_checkpoint(tmp_path / "a", make_model(), TrainerState(), extra_files={"tokenizer.json": tokenizer})
    assert (a / "tokenizer.json").read_text() == '{"vocab": 1}'
    b = write_checkpoint(tmp_path / "b", make_model(), TrainerState(), extra_files=lambda d: (d / "x.txt").write_text("x"))
    assert (b / "x.txt").read_text() == "x"
    with pytest.raises(ValueError, match="plain file names"):
        write_checkpoint(tmp_path / "c", make_model(), TrainerState(), extra_files={"../evil": tokenizer})
    assert not (tmp_path / "c").exists()


def test_state_encoding_round_trips_tuples_int_keys_and_rejects_objects(tmp_path: Path) -> None:
    state = {"a": (1, 2.5, None), 3: torch.arange(4), "nested": [{"x": torch.ones(2, 2)}], "d": torch.float16}
    ckpt.save_state(tmp_path, "thing", state)
    back = ckpt.load_state(tmp_path, "thing")
    assert back["a"] == (1, 2.5, None) and back["d"] is torch.float16
    assert torch.equal(back[3], torch.arange(4)) and torch.equal(back["nested"][0]["x"], torch.ones(2, 2))
    with pytest.raises(TypeError, match="never pickle"):
        ckpt.save_state(tmp_path, "bad", {"fn": object()})


def test_average_checkpoints_is_the_mean(tmp_path: Path, make_model) -> None:
    m1, m2 = make_model(seed=1), make_model(seed=2)
    p1 = write_checkpoint(tmp_path / "c1", m1, TrainerState(step=1))
    p2 = write_checkpoint(tmp_path / "c2", m2, TrainerState(step=2))
    averaged = average_checkpoints([p1, p2])
    s1, s2 = m1.state_dict(), m2.state_dict()
    for k, v in averaged.items():
        assert torch.allclose(v, (s1[k] + s2[k]) / 2, atol=1e-7), k
    out = write_averaged_model([p1, p2], tmp_path / "avg")
    model = formers.from_pretrained(out)
    for k, v in model.state_dict().items():
        assert torch.allclose(v, (s1[k] + s2[k]) / 2, atol=1e-7), k
    other = formers.create_model("transformer_tiny", src_vocab_size=30, tgt_vocab_size=30, embed_dim=32,
                                 ffn_dim=64, num_heads=2, num_encoder_layers=1, num_decoder_layers=1)
    p3 = write_checkpoint(tmp_path / "c3", other, TrainerState())
    with pytest.raises(ValueError, match="shape"):
        average_checkpoints([p1, p3])


def test_trainer_state_json_is_readable(tmp_path: Path, make_model) -> None:
    path = write_checkpoint(tmp_path / "c", make_model(), TrainerState(step=3, best_metric=1.5))
    data = json.loads((path / "trainer_state.json").read_text())
    assert data["step"] == 3 and data["best_metric"] == 1.5 and data["batch_in_epoch"] == 0


def test_atomic_file_replaces_whole_or_keeps_the_old_content(tmp_path):
    from formers.files import atomic_file

    target = tmp_path / "vocab.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.txt"]  # no temporary file left behind
    with atomic_file(target, suffix=".npy") as tmp:
        assert tmp.suffix == ".npy" and tmp.parent == tmp_path
        tmp.write_text("new\n")
    assert target.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["vocab.txt"]
