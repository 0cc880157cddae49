"""Non-finite injection: a skipped step leaves every parameter, buffer (BatchNorm statistics and counters) and
optimizer state as it was, and eval-mode predictions stay finite afterwards."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import formers
from formers.training.task import StepOutput
from formers.training.trainer import Trainer, TrainerConfig

pytestmark = pytest.mark.usefixtures("no_plots")

SIZE = 64  # efficientformer_tiny's attention grid is 4x4 at 64x64


def _model() -> nn.Module:
    torch.manual_seed(0)
    return formers.create_model("efficientformer_tiny", in_channels=1, num_classes=3, dropout=0.0, drop_path_rate=0.0)


def _everything(trainer: Trainer) -> dict[str, Any]:
    """Every parameter and buffer (persistent or not) and the optimizer's state, copied."""
    model = trainer.model
    return {
        "params": {k: v.detach().clone() for k, v in model.named_parameters()},
        "buffers": {k: v.detach().clone() for k, v in model.named_buffers()},
        "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
    }


def _assert_same(a: dict[str, Any], b: dict[str, Any], where: str) -> None:
    assert a["params"].keys() == b["params"].keys() and a["buffers"].keys() == b["buffers"].keys()
    for kind in ("params", "buffers"):
        for name, x in a[kind].items():
            assert torch.equal(x, b[kind][name]), f"{where}: {kind[:-1]} {name} changed"
    sa, sb = a["optimizer"], b["optimizer"]
    assert sa["param_groups"] == sb["param_groups"], where
    assert sa["state"].keys() == sb["state"].keys(), where
    for k in sa["state"]:
        for name, v in sa["state"][k].items():
            assert torch.equal(v, sb["state"][k][name]), f"{where}: optimizer state {k}/{name} changed"


class PoisonLoader:
    """``num_batches`` random image batches; batch ``i`` carries ``poison[i]`` (a value written into one activation
    of the stem: +inf, -inf or nan). At the first micro-batch of every step it records the whole training state
    (the state before that step)."""

    def __init__(self, poison: dict[int, float], num_batches: int, accum: int) -> None:
        self.poison, self.num_batches, self.accum = poison, num_batches, accum
        self.trainer: Trainer | None = None
        self.before: list[dict[str, Any]] = []

    def set_epoch(self, epoch: int) -> None:
        pass

    def __iter__(self) -> Iterator[dict[str, Any]]:
        g = torch.Generator().manual_seed(0)
        for i in range(self.num_batches):
            if i % self.accum == 0 and self.trainer is not None:
                self.before.append(_everything(self.trainer))
            yield {"images": torch.rand(4, 1, SIZE, SIZE, generator=g), "labels": torch.randint(0, 3, (4,), generator=g),
                   "poison": self.poison.get(i)}


class PoisonTask:
    """Cross-entropy of the classifier; a poisoned batch gets its value written into the stem's first convolution
    output, which then enters BatchNorm in training mode (what a +inf pixel does)."""

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        handle = None
        if batch["poison"] is not None:
            value = batch["poison"]

            def inject(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
                output = output.clone()
                output[0, 0, 0, 0] = value
                return output

            handle = model.stem.conv1.register_forward_hook(inject)
        try:
            logits = model(batch["images"]).logits
        finally:
            if handle is not None:
                handle.remove()
        return StepOutput(loss=F.cross_entropy(logits, batch["labels"]), num_tokens=len(batch["labels"]))

    def evaluate(self, model: nn.Module, loader: Any) -> dict[str, float]:
        return {}


def _train(tmp_path: Path, poison: dict[int, float], steps: int, accum: int = 1) -> tuple[Trainer, PoisonLoader]:
    loader = PoisonLoader(poison, steps * accum, accum)
    config = TrainerConfig(max_steps=steps, grad_accum_steps=accum, log_every=1, progress_bar=False,
                           tensorboard=False, device="cpu", max_consecutive_nonfinite=steps + 1)
    model = _model()
    trainer = Trainer(model, PoisonTask(), loader, config, tmp_path,
                      optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))
    loader.trainer = trainer
    trainer.fit()
    loader.before.append(_everything(trainer))  # the state after the last step
    return trainer, loader


def test_an_inf_activation_skips_the_step_and_leaves_every_buffer_as_it_was(tmp_path: Path) -> None:
    trainer, loader = _train(tmp_path, {2: math.inf}, steps=4)
    assert trainer.state.total_nonfinite == 1
    assert any(name.endswith("running_var") for name in loader.before[0]["buffers"])  # BatchNorm is there
    _assert_same(loader.before[2], loader.before[3], "the skipped step 3")
    for i in (0, 1, 3):  # the other steps did train, statistics included
        assert not torch.equal(loader.before[i]["buffers"]["stem.norm1.running_mean"],
                               loader.before[i + 1]["buffers"]["stem.norm1.running_mean"])
    for name, value in trainer.model.named_buffers():
        assert torch.isfinite(value.float()).all(), name
    trainer.model.eval()
    with torch.no_grad():
        logits = trainer.model(torch.rand(8, 1, SIZE, SIZE)).logits
    assert torch.isfinite(logits).all()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    accum=st.sampled_from([1, 2]),
    poisoned=st.dictionaries(st.integers(0, 7), st.sampled_from([math.inf, -math.inf, math.nan]), max_size=4),
)
def test_any_injection_leaves_skipped_steps_without_a_trace(tmp_path_factory, accum: int, poisoned: dict) -> None:
    steps = 4
    poison = {i: v for i, v in poisoned.items() if i < steps * accum}
    trainer, loader = _train(tmp_path_factory.mktemp("run"), poison, steps=steps, accum=accum)
    skipped = {i // accum for i in poison}
    assert trainer.state.total_nonfinite == len(skipped)
    for step in range(steps):
        if step in skipped:
            _assert_same(loader.before[step], loader.before[step + 1], f"skipped step {step + 1}")
    for name, value in list(trainer.model.named_buffers()) + list(trainer.model.named_parameters()):
        assert torch.isfinite(value.float()).all(), name
