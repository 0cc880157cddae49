"""train.graph_optimizer: the optimizer update replayed from a CUDA graph gives the Trainer's eager update.

On CPU the same update runs eagerly (what the graph holds), against the Trainer's device-decided update
(``DeviceSkipStep``), bit for bit: parameters, Adam state, BatchNorm buffers, the logged values, a skipped
non-finite step and a schedule that changes the learning rate every step. On CUDA, whole runs with and without it.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from formers.training.buffers import BufferSnapshot
from formers.training.device_step import DeviceSkipStep
from formers.training.optimizer_graph import OptimizerGraph
from formers.training.schedules import build_scheduler
from formers.training.task import StepOutput
from formers.training.trainer import Trainer, TrainerConfig


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def _setup():
    model = _net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    sched = build_scheduler(opt, "cosine", warmup_steps=2, total_steps=20)
    return model, opt, sched, list(model.parameters()), BufferSnapshot(model)


def _backward(model: nn.Module, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
    loss = nn.functional.cross_entropy(model(x), y)
    if step == 4:
        loss = loss * float("nan")  # a non-finite step: skipped, buffers put back
    loss.backward()
    return loss.detach()


def test_the_graphed_update_run_eagerly_equals_the_trainers_device_decided_update_bit_for_bit() -> None:
    ref_model, ref_opt, ref_sched, ref_params, ref_buffers = _setup()
    model, opt, sched, params, buffers = _setup()
    skip = DeviceSkipStep(ref_opt, ref_params, ref_buffers)
    graph = OptimizerGraph(DeviceSkipStep(opt, params, buffers), max_grad_norm=0.5, device=torch.device("cpu"))
    for step in range(8):
        # the reference: Trainer._optimizer_step's device-decided path
        ref_buffers.take()
        loss = _backward(ref_model, step)
        grads = [p.grad for p in ref_params]
        norm = torch.nn.utils.get_total_norm(grads)
        torch.nn.utils.clip_grads_with_norm_(ref_params, 0.5, norm)
        ref_values = torch.stack([loss, norm.float()])
        ref_finite = torch.isfinite(ref_values).all()
        if step == 0:  # the optimizer's state is made by a first, host-decided step
            ref_opt.step()
            skip.mark_applied()
        else:
            skip.step(ref_finite)
        ref_opt.zero_grad(set_to_none=False)
        if ref_finite:
            ref_sched.step()

        buffers.take()
        loss = _backward(model, step)
        if step == 0:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            torch.nn.utils.clip_grads_with_norm_(params, 0.5, norm)
            opt.step()
            opt.zero_grad(set_to_none=False)
            sched.step()
            continue
        values, finite = graph.step(loss)
        assert torch.equal(values.nan_to_num(-1), ref_values.nan_to_num(-1)) and bool(finite) == bool(ref_finite)
        if finite:
            sched.step()
        assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)  # filled in place by the schedule
        assert opt.param_groups[0]["lr"].item() == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-6)
        for a, b in zip(model.state_dict().values(), ref_model.state_dict().values(), strict=True):
            assert torch.equal(a, b), (step, (a - b).abs().max())
        for p, q in zip(params, ref_params):
            assert torch.equal(p.grad, torch.zeros_like(p)) and torch.equal(q.grad, torch.zeros_like(q))
            for k in ref_opt.state[q]:
                assert torch.equal(opt.state[p][k], ref_opt.state[q][k]), k
    assert ref_opt.state[ref_params[0]]["step"].item() == 7  # the NaN step was skipped by both


def test_the_optimizer_state_keeps_float_learning_rates_and_loading_one_drops_the_graph() -> None:
    model, opt, sched, params, buffers = _setup()
    graph = OptimizerGraph(DeviceSkipStep(opt, params, buffers), max_grad_norm=1.0, device=torch.device("cpu"))
    for step in range(3):
        _backward(model, step)
        if step == 0:
            opt.step()
            opt.zero_grad(set_to_none=False)
            continue
        graph.step(torch.tensor(1.0))
        sched.step()
    lr = opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor)
    saved = opt.state_dict()
    assert all(type(g["lr"]) is float for g in saved["param_groups"])
    assert saved["param_groups"][0]["lr"] == lr.item()
    assert graph._grads
    opt.load_state_dict(saved)
    assert graph._grads == [] and type(opt.param_groups[0]["lr"]) is float
    _backward(model, 5)
    graph.step(torch.tensor(1.0))  # taken up again, with a new learning-rate tensor
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)


class _Task:
    def training_step(self, model, batch):
        x, y = batch
        return StepOutput(loss=nn.functional.cross_entropy(model(x), y))

    def evaluate(self, model, loader):
        return {}


def test_asked_for_where_it_cannot_apply_a_warning_says_why_and_the_update_runs_eagerly(tmp_path: Path) -> None:
    model = _net()
    batches = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(3)]
    config = TrainerConfig(max_steps=3, progress_bar=False, tensorboard=False, device="cpu", graph_optimizer=True)
    with pytest.warns(UserWarning, match=r"graph_optimizer=true does not apply here \(the steps are not graphed "
                                         r"\(train.cuda_graphs\); the optimizer is not a fused Adam/AdamW\)"):
        trainer = Trainer(model, _Task(), batches, config, tmp_path / "run",
                          optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert trainer._optimizer_graph is None
    trainer.fit()
    assert trainer.state.step == 3


def test_by_default_it_is_on_only_where_it_applies_and_quietly_off_elsewhere(tmp_path: Path) -> None:
    from formers.training.optimizer_graph import optimizer_graph_for

    model = _net()
    config = TrainerConfig(max_steps=3, progress_bar=False, tensorboard=False, device="cpu")
    assert config.graph_optimizer is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer = Trainer(model, _Task(), [(torch.randn(8, 6), torch.randint(0, 3, (8,)))] * 3, config,
                          tmp_path / "run", optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert trainer._optimizer_graph is None

    _, opt, _, params, buffers = _setup()
    skip = DeviceSkipStep(opt, params, buffers)
    assert skip.fused
    applies = dict(skip=skip, device=torch.device("cpu"), step_graphs=object(), fp16=False, distributed=False)
    assert optimizer_graph_for(TrainerConfig(graph_optimizer=False), **applies) is None
    for setting in (None, True):  # on wherever it applies, by default or asked for
        assert optimizer_graph_for(TrainerConfig(graph_optimizer=setting), **applies) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert optimizer_graph_for(TrainerConfig(), **{**applies, "step_graphs": None}) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_run_with_the_graphed_update_equals_one_without(tmp_path: Path) -> None:
    import formers
    from formers.data.image_transforms import Preprocessing
    from formers.data.images import ImageBatchLoader, ImageSplit
    from formers.tasks.image_classification import ImageClassificationTask
    from formers.training.optim import build_optimizer

    g = torch.Generator().manual_seed(0)
    split = ImageSplit(torch.randint(0, 256, (256, 1, 28, 28), generator=g, dtype=torch.uint8),
                       torch.randint(0, 10, (256,), generator=g), [str(i) for i in range(10)]).to("cuda")
    runs = {}
    for graphed in (False, True):
        torch.manual_seed(0)
        model = formers.create_model("efficientformer_mini_28", num_classes=10)  # BatchNorm buffers included
        task = ImageClassificationTask(Preprocessing([str(i) for i in range(10)], (28, 28), 1), label_smoothing=0.1)
        optimizer = build_optimizer(model, lr=1e-3, fused=True)
        config = TrainerConfig(max_steps=14, log_every=1, progress_bar=False, tensorboard=False, device="cuda",
                               seed=5, cuda_graphs=True, graph_optimizer=graphed)
        trainer = Trainer(model, task, ImageBatchLoader(split, 64, seed=1), config, tmp_path / str(graphed),
                          optimizer=optimizer, scheduler=build_scheduler(optimizer, "cosine", 2, 14))
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True), warnings.catch_warnings():
            warnings.simplefilter("error")
            trainer.fit()
        with open(tmp_path / str(graphed) / "metrics.csv", newline="") as fh:
            losses = [float(r["loss"]) for r in csv.DictReader(fh) if r["loss"]]
        runs[graphed] = (trainer, losses)
    trainer = runs[True][0]
    assert trainer._optimizer_graph is not None and trainer._optimizer_graph.replayed >= 10
    assert all(math.isfinite(x) for x in runs[True][1])
    torch.testing.assert_close(torch.tensor(runs[True][1]), torch.tensor(runs[False][1]), rtol=1e-5, atol=1e-6)
    for (key, a), b in zip(runs[False][0].model.state_dict().items(), trainer.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=key)


def test_a_rescanned_buffer_snapshot_makes_the_update_prepare_again() -> None:
    model, opt, sched, params, buffers = _setup()
    graph = OptimizerGraph(DeviceSkipStep(opt, params, buffers), max_grad_norm=1.0, device=torch.device("cpu"))
    _backward(model, 0)
    opt.step()
    _backward(model, 1)
    graph.step(torch.tensor(1.0))
    prepared = graph._buffers_version
    model[1].running_mean = model[1].running_mean.clone()  # a forward pass that replaced a buffer tensor
    buffers.take()  # re-scans: new copies, which a captured graph would not read
    assert buffers.version == prepared + 1
    _backward(model, 2)
    graph.step(torch.tensor(1.0))
    assert graph._buffers_version == buffers.version
