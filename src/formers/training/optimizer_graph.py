"""The optimizer half of a training step replayed from a CUDA graph (``train.graph_optimizer``).

Once :class:`~formers.training.step_graphs.StepGraphs` replays the forward and backward as one launch, what is left
on the host is the Trainer's update: the gradient norm, clipping, the device-decided non-finite flag, a fused
Adam/AdamW step told to skip through ``found_inf``, the selection of the model's buffers and zeroing the gradients.
Each is a handful of kernels, but their Python and dispatch cost 2-3 ms a step on the host: in the EfficientFormer
Fashion-MNIST recipe's profile (``benchmarks/results/step_profile_efficientformer-fashion-mnist_graphed_h100.json``)
the AdamW step took 0.9 ms of host time, the gradient norm 0.6 ms and ``zero_grad`` 0.3 ms beside 4 ms of kernels.
:class:`OptimizerGraph` captures that update once and replays it each step: the same kernels on the same tensors.

What a graph needs, and how it is given:

- fixed tensors: the gradients are those StepGraphs binds (zeroed in place, never set to None), the optimizer state
  exists before the capture (the first steps run the eager update), the loss is copied into a static input, and the
  step's ``(loss, norm)`` and flag are copied out after each replay;
- a learning rate it can read: each parameter group's ``lr`` becomes a device tensor that the schedule updates in
  place (``LambdaLR`` fills tensor learning rates), and the optimizer's ``state_dict`` turns them back into floats,
  so checkpoints are unchanged; loading a state drops the graph (it is captured again). CUDA's fused Adam reads a
  tensor learning rate as float32 where the eager update uses the double: the updates agree to float32 rounding of
  the learning rate, not bit for bit;
- ``capturable`` set on the groups during the capture only (PyTorch's check that a step may be captured).

The first update through this path runs eagerly on the side stream the capture uses, the second is captured, the
later ones replay. Each gives the eager update's parameters, optimizer state and buffers: the CPU tests run the same
update eagerly against the Trainer's device-decided one (bit for bit: on a CPU the learning rate stays a double); a
GPU test compares whole runs.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from formers.training.device_step import DeviceSkipStep


def _float_learning_rates(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer ``state_dict`` post-hook: tensor learning rates saved as the floats they hold."""
    for group in state["param_groups"]:
        if isinstance(group.get("lr"), Tensor):
            group["lr"] = float(group["lr"])
    return state


class OptimizerGraph:
    """The update of :meth:`Trainer._optimizer_step <formers.training.trainer.Trainer._optimizer_step>` (norm, clip,
    non-finite flag, fused Adam/AdamW with ``found_inf``, buffer selection, gradients zeroed) captured once.

    Args:
        skip: the Trainer's :class:`~formers.training.device_step.DeviceSkipStep` (a fused Adam or AdamW, its
            parameters and the snapshot of the model's buffers), whose device-decided step the update takes.
        max_grad_norm: the clipping threshold (0: no clipping).
        device: the CUDA device; elsewhere :meth:`step` runs the same update eagerly (what the CPU tests check).
    """

    def __init__(self, skip: DeviceSkipStep, max_grad_norm: float, device: torch.device) -> None:
        self.skip = skip
        self.optimizer, self.params, self.buffers = skip.optimizer, skip.params, skip.buffers
        self.max_grad_norm = max_grad_norm
        self.device = device
        self.use_graph = device.type == "cuda"
        self.replayed = 0
        self._grads: list[Tensor] = []
        self._buffers_version = -1  # the buffer snapshot's version the graph was captured with
        self._graph: Any = None
        self._warm = False
        self._stream: Any = None
        self._loss = torch.zeros((), dtype=torch.float32, device=device)  # static input
        self._values = torch.zeros(2, dtype=torch.float32, device=device)  # (loss, norm), static output
        self._finite = torch.ones((), dtype=torch.bool, device=device)  # static output
        self.optimizer.register_state_dict_post_hook(_float_learning_rates)
        self.optimizer.register_load_state_dict_post_hook(lambda _: self.reset())

    def reset(self) -> None:
        """Drops the graph (captured again at the next steps), e.g. after the optimizer's state was loaded."""
        self._graph = None
        self._warm = False
        self._grads = []

    def _prepare(self, grads: list[Tensor]) -> None:
        self.reset()
        self._grads = grads
        self._buffers_version = self.buffers.version
        # CUDA's fused kernels read a tensor learning rate as float32 (the eager update's is a double: the updates
        # then differ in the last bits); the CPU kernel reads a double
        dtype = torch.float32 if self.device.type == "cuda" else torch.float64
        for group in self.optimizer.param_groups:
            if not isinstance(group["lr"], Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), dtype=dtype, device=self.device)

    @torch.no_grad()
    def _update(self) -> None:
        """The update itself, on the static tensors (what the graph holds)."""
        norm = torch.nn.utils.get_total_norm(self._grads)
        if self.max_grad_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.max_grad_norm, norm)
        self._values.copy_(torch.stack([self._loss, norm.float()]))
        self._finite.copy_(torch.isfinite(self._values).all())
        self.skip.step(self._finite)  # the fused step told to skip through found_inf, the buffers selected
        torch._foreach_zero_(self._grads)

    def step(self, loss: Tensor) -> tuple[Tensor, Tensor]:
        """One update for a step whose (scalar) loss is ``loss``; returns that step's ``(loss, grad norm)`` and its
        finite flag, fresh tensors on the device (nothing is read on the host)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if (len(grads) != len(self._grads) or any(a is not b for a, b in zip(grads, self._grads))
                or self.buffers.version != self._buffers_version):
            self._prepare(grads)  # first use, or the gradients or buffer copies are other tensors now: capture again
        self._loss.copy_(loss.detach().reshape(()))
        if not self.use_graph:
            self._update()
        elif not self._warm:  # eager, on the stream the capture will use
            self._stream = self._stream or torch.cuda.Stream(self.device)
            current = torch.cuda.current_stream(self.device)
            self._stream.wait_stream(current)
            with torch.cuda.stream(self._stream):
                self._update()
            current.wait_stream(self._stream)
            self._warm = True
        else:
            if self._graph is None:
                self._graph = self._capture()
            self._graph.replay()
            self.replayed += 1
        return self._values.clone(), self._finite.clone()

    def _capture(self) -> Any:
        groups = self.optimizer.param_groups
        capturable = [g.get("capturable", False) for g in groups]
        graph = torch.cuda.CUDAGraph()
        current = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(current)
        try:
            for g in groups:
                g["capturable"] = True
            with torch.cuda.graph(graph, stream=self._stream):
                self._update()
        except Exception as e:
            raise RuntimeError(f"train.graph_optimizer: capturing the optimizer update as a CUDA graph failed "
                               f"({type(e).__name__}: {str(e).splitlines()[0]}); set train.graph_optimizer=false"
                               ) from e
        finally:
            for g, flag in zip(groups, capturable):
                g["capturable"] = flag
        current.wait_stream(self._stream)
        return graph


def optimizer_graph_for(config: Any, skip: DeviceSkipStep, device: torch.device, step_graphs: Any, fp16: bool,
                        distributed: bool) -> OptimizerGraph | None:
    """The Trainer's :class:`OptimizerGraph` where it can apply (graphed steps: ``step_graphs``, the Trainer's
    StepGraphs or None; a fused Adam/AdamW; no fp16 loss scaling; one process) and ``config.graph_optimizer`` is not
    False. Asked for (True) where it cannot apply, a warning says why; either way the update then stays eager (None)."""
    if config.graph_optimizer is False:
        return None
    reasons = [why for bad, why in (
        (step_graphs is None, "the steps are not graphed (train.cuda_graphs)"),
        (not skip.fused, "the optimizer is not a fused Adam/AdamW"),
        (fp16, "fp16 loss scaling"),
        (distributed, "several processes"),
    ) if bad]
    if reasons:
        if config.graph_optimizer is None:  # the default: on where it applies, quietly off elsewhere
            return None
        warnings.warn(f"train.graph_optimizer=true does not apply here ({'; '.join(reasons)}): the optimizer update "
                      "runs eagerly", stacklevel=3)
        return None
    return OptimizerGraph(skip, config.max_grad_norm, device)


__all__ = ["OptimizerGraph", "optimizer_graph_for"]
