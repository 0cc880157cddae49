from __future__ import annotations

import copy
import csv
import json
import os
import warnings
from pathlib import Path

import pytest
import torch

import formers
from formers.training.best import best_checkpoint
from formers.training.checkpoint import latest_checkpoint, read_trainer_state
from formers.training.optim import build_optimizer
from formers.training.schedules import build_scheduler
from formers.training.task import StepOutput
from formers.training.trainer import NonFiniteLossError, Trainer, TrainerConfig


def _config(**overrides) -> TrainerConfig:
    base = dict(max_steps=4, log_every=1, progress_bar=False, tensorboard=False, device="cpu", max_grad_norm=1.0)
    base.update(overrides)
    return TrainerConfig(**base)


def _trainer(run_dir: Path, model, task, loader, config: TrainerConfig, **kwargs) -> Trainer:
    optimizer = build_optimizer(model, lr=3e-3, weight_decay=0.01)
    scheduler = build_scheduler(optimizer, "inverse_sqrt", warmup_steps=3)
    return Trainer(model, task, loader, config, run_dir, optimizer=optimizer, scheduler=scheduler, **kwargs)


def _assert_same_training_state(a: Trainer, b: Trainer) -> None:
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys() and sa["state"]
    for k in sa["state"]:
        for name, v in sa["state"][k].items():
            assert torch.equal(v, sb["state"][k][name]), (k, name)
    assert a.scheduler.state_dict() == b.scheduler.state_dict()


class _Crash(Exception):
    pass


class _CrashingTask:
    """Delegates to the copy task and raises on training_step call number ``crash_at`` (1-based)."""

    def __init__(self, task, crash_at: int) -> None:
        self.task, self.crash_at = task, crash_at

    def training_step(self, model, batch):
        if self.task.calls + 1 == self.crash_at:
            raise _Crash
        return self.task.training_step(model, batch)

    def evaluate(self, model, loader):
        return self.task.evaluate(model, loader)


@pytest.mark.parametrize("grad_accum_steps", [1, 2])
def test_resume_is_exact(tmp_path: Path, make_model, make_loader, task_cls, grad_accum_steps: int) -> None:
    """N steps straight == N/2 steps, crash, new Trainer resuming, N/2 more: same weights and optimizer state.

    Dropout is on (the RNG must be restored) and the loader reshuffles each epoch; 6 batches per epoch make the
    checkpoint fall in the middle of an epoch.
    """
    steps = 8
    cfg = _config(max_steps=steps, save_every=steps // 2, grad_accum_steps=grad_accum_steps, keep_last=5)
    straight = _trainer(tmp_path / "a", make_model(seed=0), task_cls(), make_loader(), cfg)
    straight.fit()
    assert straight.state.epoch >= 1  # crossed an epoch boundary

    crash_at = (steps // 2) * grad_accum_steps + 1  # first micro-batch after the step-N/2 checkpoint
    first = _trainer(tmp_path / "b", make_model(seed=0), _CrashingTask(task_cls(), crash_at), make_loader(), cfg)
    with pytest.raises(_Crash):
        first.fit()
    torch.manual_seed(1234)  # the resumed run must not depend on the global RNG at restart
    resumed = _trainer(tmp_path / "b", make_model(seed=99), task_cls(), make_loader(), cfg)
    state = resumed.fit(resume=True)
    assert state.step == steps
    _assert_same_training_state(straight, resumed)
    # metrics rows logged after the checkpoint by the crashed run are not duplicated
    steps_logged = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "b" / "metrics.csv")) if r["loss"]]
    assert steps_logged == list(range(1, steps + 1))


def test_resume_without_checkpoint_starts_fresh_and_restart_changes_nothing(
    tmp_path: Path, make_model, make_loader, task_cls
) -> None:
    cfg = _config(max_steps=3)
    trainer = _trainer(tmp_path, make_model(), task_cls(), make_loader(), cfg)
    assert trainer.fit(resume=True).step == 3
    weights = copy.deepcopy(trainer.model.state_dict())
    again = _trainer(tmp_path, make_model(seed=5), task_cls(), make_loader(), cfg)
    assert again.fit(resume=True).step == 3  # finished run: loads, takes no step
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, weights[k])


class _StatefulLoader:
    """A loader that resumes through state_dict (position) instead of being skipped by the Trainer."""

    def __init__(self, inner) -> None:
        self.inner, self.position, self.loaded = inner, 0, False

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)
        self.position = 0

    def state_dict(self) -> dict:
        return {"epoch": self.inner.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.inner.set_epoch(state["epoch"])
        self.position, self.loaded = state["position"], True

    def __iter__(self):
        for i, batch in enumerate(self.inner):
            if i < self.position:
                continue
            self.position = i + 1
            yield batch


def test_resume_uses_loader_state_dict(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    cfg = _config(max_steps=8, save_every=4)
    straight = _trainer(tmp_path / "a", make_model(), task_cls(), _StatefulLoader(make_loader()), cfg)
    straight.fit()
    first = _trainer(tmp_path / "b", make_model(), _CrashingTask(task_cls(), 5), _StatefulLoader(make_loader()), cfg)
    with pytest.raises(_Crash):
        first.fit()
    loader = _StatefulLoader(make_loader())
    resumed = _trainer(tmp_path / "b", make_model(seed=3), task_cls(), loader, cfg)
    resumed.fit(resume=True)
    assert loader.loaded
    _assert_same_training_state(straight, resumed)


class _NaNTask:
    """The copy task with the loss replaced by NaN on the given (1-based) training_step calls."""

    def __init__(self, task, nan_calls) -> None:
        self.task, self.nan_calls = task, nan_calls

    def training_step(self, model, batch):
        out = self.task.training_step(model, batch)
        if self.task.calls in self.nan_calls:
            out = StepOutput(loss=out.loss * float("nan"), metrics=out.metrics, num_tokens=out.num_tokens)
        return out

    def evaluate(self, model, loader):
        return self.task.evaluate(model, loader)


def test_nonfinite_step_is_skipped_and_counted(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    model = make_model()
    before = copy.deepcopy(model.state_dict())
    trainer = _trainer(tmp_path, model, _NaNTask(task_cls(), {1}), make_loader(), _config(max_steps=1))
    state = trainer.fit()
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights unchanged
    assert trainer.optimizer.state_dict()["state"] == {}  # optimizer state unchanged (never stepped)
    assert trainer.scheduler.last_epoch == 0  # the schedule does not advance on a skipped step
    assert state.total_nonfinite == 1 and state.consecutive_nonfinite == 1 and state.step == 1
    row = next(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert row["nonfinite_skips"] == "1"

    # a finite step afterwards resets the consecutive count and trains
    trainer = _trainer(tmp_path / "b", make_model(), _NaNTask(task_cls(), {2}), make_loader(), _config(max_steps=3))
    state = trainer.fit()
    assert (state.total_nonfinite, state.consecutive_nonfinite) == (1, 0)
    assert trainer.scheduler.last_epoch == 2


def test_consecutive_nonfinite_raises(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    task = _NaNTask(task_cls(), set(range(1, 100)))
    trainer = _trainer(tmp_path, make_model(), task, make_loader(), _config(max_steps=20, max_consecutive_nonfinite=3))
    with pytest.raises(NonFiniteLossError, match="3 optimizer steps in a row"):
        trainer.fit()
    assert task.task.calls == 3


def test_nonfinite_gradient_with_finite_loss_is_skipped(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    model = make_model()
    before = copy.deepcopy(model.state_dict())
    model.encoder.embed.weight.register_hook(lambda g: g * float("inf"))
    trainer = _trainer(tmp_path, model, task_cls(), make_loader(), _config(max_steps=2, max_consecutive_nonfinite=5))
    assert trainer.fit().total_nonfinite == 2
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_grad_accumulation_equals_large_batch(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    model = make_model(dropout=0.0)
    twin = copy.deepcopy(model)
    runs = []
    for m, batch_size, accum, name in ((model, 4, 2, "accum"), (twin, 8, 1, "big")):
        loader = make_loader(n=8, batch_size=batch_size, shuffle=False)
        optimizer = torch.optim.SGD(m.parameters(), lr=0.5)
        cfg = _config(max_steps=1, grad_accum_steps=accum, max_grad_norm=0.5)
        Trainer(m, task_cls(), loader, cfg, tmp_path / name, optimizer=optimizer).fit()
        runs.append(m)
    moved = False
    for (k, a), b, init in zip(runs[0].state_dict().items(), runs[1].state_dict().values(), make_model().state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=k)
        moved |= not torch.equal(a, init)
    assert moved


def test_best_and_keep_last_follow_the_metric(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    scores = iter([1.0, 3.0, 2.0, 5.0, 4.0])

    class ScriptedEval(task_cls):
        def evaluate(self, model, loader):
            return {"bleu": next(scores)}

    cfg = _config(max_steps=5, eval_every=1, save_every=1, keep_last=2, best_metric="bleu", best_mode="max")
    trainer = _trainer(tmp_path, make_model(), ScriptedEval(), make_loader(), cfg, eval_loader=[None])
    state = trainer.fit()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["best", "latest", "step_00000004", "step_00000005"]
    assert latest_checkpoint(tmp_path).name == "step_00000005"
    assert (state.best_metric, state.best_step) == (5.0, 4)
    assert os.readlink(root / "best") == "step_00000004"  # a link, kept out of pruning
    best = read_trainer_state(best_checkpoint(tmp_path))
    assert best.step == 4 and best.best_metric == 5.0
    assert formers.from_pretrained(root / "best").state_dict().keys() == trainer.model.state_dict().keys()


def test_best_min_mode_without_step_checkpoint(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    cfg = _config(max_steps=4, eval_every=2, save_every=0, best_metric="loss", best_mode="min")
    eval_loader = make_loader(n=8, batch_size=4, shuffle=False, data_seed=1)
    trainer = _trainer(tmp_path, make_model(), task_cls(), make_loader(), cfg, eval_loader=eval_loader)
    state = trainer.fit()
    best = read_trainer_state(best_checkpoint(tmp_path))
    assert best.step == state.best_step and best.best_metric == state.best_metric
    assert best_checkpoint(tmp_path).name == f"step_{state.best_step:08d}"  # a new best is saved as its step
    # the final checkpoint is written even with save_every=0, and is what from_pretrained(run_dir) loads
    assert latest_checkpoint(tmp_path).name == "step_00000004"
    assert isinstance(formers.from_pretrained(tmp_path), torch.nn.Module)


def test_csv_curves_and_tensorboard(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    tokenizer = tmp_path / "tokenizer_src.json"
    tokenizer.write_text("{}")
    cfg = _config(max_steps=6, log_every=2, eval_every=3, tensorboard=True, progress_bar=True, best_metric="acc")
    eval_loader = make_loader(n=8, batch_size=4, shuffle=False, data_seed=1)
    trainer = _trainer(tmp_path / "run", make_model(), task_cls(), make_loader(), cfg, eval_loader=eval_loader,
                       extra_files={"tokenizer.json": tokenizer})
    trainer.fit()
    run = tmp_path / "run"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    header = rows[0].keys()
    assert {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "train_acc", "eval_loss", "eval_acc"} <= header
    train_rows = [r for r in rows if r["loss"]]
    eval_rows = [r for r in rows if r["eval_loss"]]
    assert [int(r["step"]) for r in train_rows] == [2, 4, 6]
    assert [int(r["step"]) for r in eval_rows] == [3, 6]
    assert all(float(r["tokens_per_s"]) > 0 and float(r["grad_norm"]) > 0 for r in train_rows)
    png = (run / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(run / "curves.png").shape[2] in (3, 4)
    assert any((run / "tensorboard").iterdir())
    assert (latest_checkpoint(run) / "tokenizer.json").exists()
    assert json.loads((best_checkpoint(run) / "trainer_state.json").read_text())["best_step"] in (3, 6)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_autocast_on_cpu_trains(tmp_path: Path, make_model, make_loader, task_cls, monkeypatch, native) -> None:
    """It trains either way; on a CPU without native bfloat16 (emulated, many times slower) it says so."""
    monkeypatch.setattr("formers.training.trainer.cpu_has_native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _trainer(tmp_path, make_model(), task_cls(), make_loader(), _config(max_steps=2, precision="bf16"))
    said = [str(w.message) for w in caught if "no native bfloat16" in str(w.message)]
    assert len(said) == (0 if native else 1)
    if said:
        assert "for speed use --set train.precision=fp32" in said[0]
    state = trainer.fit()
    assert state.total_nonfinite == 0
    assert trainer.model.encoder.embed.weight.dtype == torch.float32  # master weights stay fp32


def test_compile_trains_like_eager_and_checkpoints_plain_weights(
    tmp_path: Path, make_model, make_loader, task_cls
) -> None:
    """train.compile: the steps run through torch.compile, give eager's losses, and the checkpoint has plain keys."""
    cfg = dict(max_steps=3, save_every=3)
    eager = _trainer(tmp_path / "eager", make_model(dropout=0.0), task_cls(), make_loader(), _config(**cfg))
    eager.fit()
    compiled = _trainer(
        tmp_path / "compiled", make_model(dropout=0.0), task_cls(), make_loader(), _config(compile=True, **cfg)
    )
    assert compiled.step_model is not compiled.model and compiled.step_model._orig_mod is compiled.model
    assert eager.step_model is eager.model
    compiled.fit()
    rows = {name: [float(r["loss"]) for r in csv.DictReader(open(tmp_path / name / "metrics.csv")) if r["loss"]]
            for name in ("eager", "compiled")}
    assert len(rows["compiled"]) == 3
    assert rows["compiled"] == pytest.approx(rows["eager"], rel=1e-4, abs=1e-5)
    for (name, x), y in zip(eager.model.state_dict().items(), compiled.model.state_dict().values(), strict=True):
        if name.endswith("k_proj.bias"):
            # A key bias shifts every score of a query equally: its true gradient is 0, and Adam's normalisation
            # turns the two paths' different rounding noise there into full-size (but meaningless) updates.
            continue
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5, msg=name)
    reloaded = formers.from_pretrained(tmp_path / "compiled")
    assert not any("_orig_mod" in k for k in reloaded.state_dict())
    for (name, x), y in zip(compiled.model.state_dict().items(), reloaded.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


class _VariableShapes:
    """Copy-task batches of five different (batch, length) shapes, as length-bucketed text batches are."""

    SHAPES = [(4, 6), (3, 9), (5, 4), (2, 11), (6, 7)]

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.SHAPES)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.epoch)
        for b, t in self.SHAPES:
            src = torch.randint(3, 24, (b, t), generator=g)
            yield {"src_ids": src, "tgt_in": torch.cat([torch.ones(b, 1, dtype=torch.long), src[:, :-1]], 1),
                   "tgt_out": src.clone()}


def test_compile_dynamic_trains_every_shape_with_one_graph_and_eager_losses(
    tmp_path: Path, make_model, task_cls
) -> None:
    """train.compile_dynamic: five batch shapes share one compiled graph (plain compile would compile each) and the
    losses are eager's."""
    from torch._dynamo.utils import counters

    cfg = dict(max_steps=5, max_grad_norm=0.0)
    eager = _trainer(tmp_path / "eager", make_model(dropout=0.0), task_cls(), _VariableShapes(), _config(**cfg))
    eager.fit()
    torch._dynamo.reset()
    counters.clear()
    compiled = _trainer(tmp_path / "dynamic", make_model(dropout=0.0), task_cls(), _VariableShapes(),
                        _config(compile=True, compile_dynamic=True, **cfg))
    compiled.fit()
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == 1, f"{graphs} graphs compiled for 5 shapes"
    rows = {name: [float(r["loss"]) for r in csv.DictReader(open(tmp_path / name / "metrics.csv")) if r["loss"]]
            for name in ("eager", "dynamic")}
    assert len(rows["dynamic"]) == 5
    assert rows["dynamic"] == pytest.approx(rows["eager"], rel=1e-4, abs=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_steps_train_like_plain_compiled_steps(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    """compile_mode='reduce-overhead': the compiled steps replay as CUDA graphs and give the same losses and weights."""
    runs = {}
    for mode in ("default", "reduce-overhead"):
        config = _config(max_steps=6, log_every=1, compile=True, compile_mode=mode, device="cuda")
        trainer = _trainer(tmp_path / mode, make_model(dropout=0.0), task_cls(), make_loader(), config)
        assert trainer._graphed == (mode == "reduce-overhead")
        trainer.fit()
        losses = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / mode / "metrics.csv")) if r["loss"]]
        runs[mode] = (losses, trainer.model.state_dict())
    assert len(runs["reduce-overhead"][0]) == 6
    assert runs["reduce-overhead"][0] == pytest.approx(runs["default"][0], rel=1e-4, abs=1e-5)
    for (name, x), y in zip(runs["default"][1].items(), runs["reduce-overhead"][1].values(), strict=True):
        if not name.endswith("k_proj.bias"):  # see test_compile_trains_like_eager_and_checkpoints_plain_weights
            torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5, msg=name)


def test_max_epochs_stops_training(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    cfg = _config(max_steps=None, max_epochs=2)
    state = _trainer(tmp_path, make_model(), task_cls(), make_loader(), cfg).fit()
    assert (state.step, state.epoch) == (12, 2)  # 6 batches per epoch


def test_bad_configuration_errors(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainerConfig(precision="fp8")
    with pytest.raises(ValueError, match="compile_mode must be one of .*'reduce-overhead'.*, got 'fast'"):
        TrainerConfig(compile=True, compile_mode="fast")
    with pytest.raises(ValueError, match="'reduce-overhead' needs grad_accum_steps=1.*got grad_accum_steps=2"):
        TrainerConfig(compile=True, compile_mode="reduce-overhead", grad_accum_steps=2)
    with pytest.raises(ValueError, match="compile_dynamic=True needs compile=True, got compile=False"):
        TrainerConfig(compile_dynamic=True)
    with pytest.raises(ValueError, match="compile_mode='max-autotune' needs compile=True, got compile=False"):
        TrainerConfig(compile_mode="max-autotune")
    with pytest.raises(ValueError, match="grad_accum_steps must be >= 1, got 0"):
        TrainerConfig(grad_accum_steps=0)
    with pytest.raises(ValueError, match="max_steps or max_epochs"):
        TrainerConfig(max_steps=None)
    with pytest.raises(ValueError, match="best_mode"):
        TrainerConfig(best_mode="up")
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        Trainer(make_model(), task_cls(), make_loader(), _config(precision="fp16"), tmp_path)
    with pytest.raises(TypeError, match="training_step"):
        Trainer(make_model(), object(), make_loader(), _config(), tmp_path)
    with pytest.raises(ValueError, match="needs an eval_loader"):
        Trainer(make_model(), task_cls(), make_loader(), _config(best_metric="bleu"), tmp_path)
    with pytest.raises(ValueError, match="yielded no batches"):
        Trainer(make_model(), task_cls(), [], _config(), tmp_path).fit()

    class NoMetric(task_cls):
        def evaluate(self, model, loader):
            return {"loss": 1.0}

    trainer = Trainer(make_model(), NoMetric(), make_loader(), _config(eval_every=1, best_metric="bleu"), tmp_path,
                      eval_loader=[None])
    with pytest.raises(ValueError, match="best_metric='bleu' is not among the eval metrics"):
        trainer.fit()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_cuda_mixed_precision_resume_is_exact(tmp_path: Path, make_model, make_loader, task_cls, precision: str) -> None:
    """On CUDA (deterministic kernels): autocast, GradScaler and CUDA RNG states survive a resume bitwise."""
    cfg = _config(max_steps=8, save_every=4, precision=precision, device="cuda", deterministic=True)
    try:
        straight = _trainer(tmp_path / "a", make_model(), task_cls(), make_loader(), cfg)
        straight.fit()
        first = _trainer(tmp_path / "b", make_model(), _CrashingTask(task_cls(), 5), make_loader(), cfg)
        with pytest.raises(_Crash):
            first.fit()
        resumed = _trainer(tmp_path / "b", make_model(seed=7), task_cls(), make_loader(), cfg)
        resumed.fit(resume=True)
    finally:
        torch.use_deterministic_algorithms(False)
    assert next(resumed.model.parameters()).is_cuda
    _assert_same_training_state(straight, resumed)
    assert resumed.scaler.is_enabled() == (precision == "fp16")
    if precision == "fp16":
        assert resumed.scaler.get_scale() == straight.scaler.get_scale()
        assert (tmp_path / "b" / "checkpoints" / "step_00000004" / "scaler.json").exists()
    rows = [r for r in csv.DictReader(open(tmp_path / "b" / "metrics.csv")) if r["loss"]]
    assert all(float(r["loss"]) == float(r["loss"]) for r in rows)  # finite losses logged
