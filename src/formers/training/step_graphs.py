"""Training steps replayed from CUDA graphs, one graph per batch shape, without ``torch.compile``.

A small model's eager step is bound by the host: the multi30k Transformer's forward and backward launch about
6,900 kernels, about 65 ms of Python and dispatch for a few milliseconds of GPU work. :class:`StepGraphs` captures
the forward and backward of :meth:`Task.training_step <formers.training.task.Task.training_step>` once per batch
signature (the tree of the batch and its tensors' shapes and dtypes) and replays it: the batch's tensors are copied
into the graph's static inputs, one launch runs the whole step, and the gradients land in the parameters'
``.grad`` tensors as eager backward would put them (accumulated in place, so gradient accumulation works).

What stays eager around the replay is the Trainer's optimizer step (clipping, the device-decided non-finite skip, a
fused Adam), a handful of kernels. Loaders that yield few shapes make this pay: the translation loader's static
batches pad the rows and lengths of every batch to a few buckets (:class:`~formers.data.parallel.TranslationLoader`).

The rules a graphed step follows, with their reasons:

- the first batch of each signature runs eagerly on a side stream (warm-up: lazy initialisation, cuBLAS
  workspaces), the second is captured and replayed, the later ones are replayed; at most ``max_graphs`` signatures
  are captured, the others run eagerly;
- the gradients must exist before the capture (the warm-up made them) and stay allocated between steps
  (the Trainer zeroes them in place), so the captured backward adds into fixed memory;
- random numbers (dropout) come from PyTorch's graph-safe generator: a replay draws the numbers the eager step
  would have drawn from the same generator state;
- autocast runs without its weight-cast cache (a cached cast would freeze the weights of the capture);
- non-tensor values of a batch are not part of the signature: a replay sees those of the captured batch, so a step
  may depend on them only through its tensors' shapes (count tokens on the device, as the translation task does);
- a step that cannot be captured because it synchronises with the host (``.item()``, a boolean-mask index, a
  copy to the CPU such as ``pack_padded_sequence``'s lengths) is found in its first warm-up, which runs under
  ``torch.cuda.set_sync_debug_mode("error")``: that partial step is rewound (random generators, gradients, and the
  buffers through ``rewind``), run again eagerly, and every later step is eager, with one warning naming the reason.
  A capture that fails after a clean warm-up stops the run with an error (a failed capture can leave the CUDA
  generator unusable for eager dropout: going on would train on corrupted random numbers).

Every replayed step gives the eager step's loss and gradients (a GPU test compares them, dropout included).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from formers.training.task import StepOutput
from formers.training.trainer_config import TrainerConfig


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: list[Tensor]  # the static copies of the batch's tensors, in tree order
    output: StepOutput
    grads: list[tuple[nn.Parameter, Tensor]]  # the gradient tensors the captured backward adds into


def _signature(leaves: list[Any], spec: Any) -> tuple | None:
    tensors = tuple((tuple(t.shape), t.dtype, t.device) for t in leaves if isinstance(t, Tensor))
    if not tensors or any(d.type != "cuda" for _, _, d in tensors):
        return None
    return (str(spec), tuple(isinstance(t, Tensor) for t in leaves), tensors)


def _detached(value: Any) -> Any:
    return tree_map(lambda t: t.detach().clone() if isinstance(t, Tensor) else t, value)


def copy_of_output(out: StepOutput) -> StepOutput:
    """The output with every tensor detached and copied (a graph's outputs are overwritten by its next replay)."""
    return StepOutput(loss=out.loss.detach().clone(), metrics=_detached(out.metrics), num_tokens=_detached(out.num_tokens))


class StepGraphs:
    """Runs ``step(batch)`` (forward and backward of one micro-batch) from a CUDA graph per batch signature.

    Args:
        step: the eager step: forward under autocast (without cache), backward; returns the task's
            :class:`~formers.training.task.StepOutput`.
        params: the parameters whose gradients the step makes.
        device: the CUDA device.
        max_graphs: signatures captured at most; later new signatures run eagerly.
        rewind: puts the model's buffers back as they were at the start of the step (after a warm-up that had to
            stop, see the module notes); ``None``: the model has none to put back.
        compiled: the step calls a ``torch.compile``-d model (default mode): its first warm-up runs twice, the first
            run compiling and tuning kernels (which synchronises) and then rewound.

    ``captured`` counts the graphs (each runs the step it was captured on), ``replayed`` the later steps replayed and
    ``eager`` the steps run eagerly; ``disabled`` holds the reason when the step cannot be captured (every step is
    eager from then on).
    """

    def __init__(self, step: Callable[[Any], StepOutput], params: list[nn.Parameter], device: torch.device,
                 max_graphs: int = 64, rewind: Callable[[], None] | None = None, compiled: bool = False) -> None:
        if device.type != "cuda":
            raise ValueError(f"StepGraphs needs a CUDA device, got {str(device)!r}")
        self.step = step
        self.params = params
        self.device = device
        self.max_graphs = max_graphs
        self.rewind = rewind
        self.compiled = compiled
        self._checked = False  # a warm-up ran without host synchronisation
        self._stream = torch.cuda.Stream(device)
        self._pool = torch.cuda.graph_pool_handle()
        self._graphs: dict[tuple, _Graph] = {}
        self._seen: set[tuple] = set()
        self.disabled: str | None = None
        self.replayed = self.eager = 0

    @property
    def captured(self) -> int:
        """Graphs captured so far."""
        return len(self._graphs)

    def __call__(self, batch: Any) -> StepOutput:
        leaves, spec = tree_flatten(batch)
        key = _signature(leaves, spec)
        if self.disabled is not None or key is None:
            self.eager += 1
            return self.step(batch)
        graph = self._graphs.get(key)
        if graph is None:
            if len(self._graphs) >= self.max_graphs:  # a shape beyond the budget of graphs
                self.eager += 1
                return self.step(batch)
            if key not in self._seen:
                self._seen.add(key)
                self.eager += 1
                return self._warm_up(batch)
            graph = self._capture(key, leaves, spec)
        else:
            self.replayed += 1
            torch._foreach_copy_(graph.inputs, [t for t in leaves if isinstance(t, Tensor)])
        self._bind(graph)
        graph.graph.replay()
        return copy_of_output(graph.output)

    def _snapshot(self) -> tuple:
        """The random generators' states and copies of the gradients, for :meth:`_rewind`."""
        rng = torch.cuda.get_rng_state(self.device), torch.get_rng_state()
        return rng, [p.grad.clone() if p.grad is not None else None for p in self.params]

    def _rewind(self, snapshot: tuple) -> None:
        """Puts back what a step changed: generators, gradients and (through ``rewind``) the model's buffers."""
        (cuda_rng, cpu_rng), grads = snapshot
        torch.cuda.set_rng_state(cuda_rng, self.device)
        torch.set_rng_state(cpu_rng)
        for p, g in zip(self.params, grads):
            p.grad = g
        if self.rewind is not None:
            self.rewind()

    def _warm_up(self, batch: Any) -> StepOutput:
        """The eager step on the side stream the captures use; what outlives it is marked as used by the caller's.
        The first warm-up checks that the step never synchronises with the host (which a capture cannot hold); a
        compiled step first runs once unchecked and is rewound (compiling and tuning its kernels synchronise)."""
        current = torch.cuda.current_stream(self.device)
        check = not self._checked
        self._stream.wait_stream(current)
        if check:
            snapshot = self._snapshot()
            if self.compiled:
                with torch.cuda.stream(self._stream):
                    self.step(batch)
                current.wait_stream(self._stream)
                self._rewind(snapshot)
                self._stream.wait_stream(current)
            mode = torch.cuda.get_sync_debug_mode()
        failure = None
        try:
            with torch.cuda.stream(self._stream):
                if check:
                    with warnings.catch_warnings():  # "a prototype feature": said once by PyTorch, not news to a user
                        warnings.filterwarnings("ignore", message="Synchronization debug mode")
                        torch.cuda.set_sync_debug_mode("error")
                out = self.step(batch)
        except RuntimeError as e:
            if not check or "synchronizing CUDA operation" not in str(e):
                raise
            failure = str(e).splitlines()[0]
        finally:
            if check:
                torch.cuda.set_sync_debug_mode(mode)
        if failure is not None:
            current.wait_stream(self._stream)
            self._rewind(snapshot)
            self.disabled = "the step synchronises with the host: " + failure
            warnings.warn(f"train.cuda_graphs: the training step cannot be captured as a CUDA graph, training continues "
                          f"eagerly ({self.disabled})", stacklevel=4)
            return self.step(batch)
        self._checked = True
        current.wait_stream(self._stream)
        for t in tree_flatten((out.loss, out.metrics, out.num_tokens))[0] + [p.grad for p in self.params]:
            if isinstance(t, Tensor) and t.is_cuda:
                t.record_stream(current)
        return out

    def _capture(self, key: tuple, leaves: list[Any], spec: Any) -> _Graph:
        inputs = [t.clone() for t in leaves if isinstance(t, Tensor)]
        it = iter(inputs)
        static = tree_unflatten([next(it) if isinstance(t, Tensor) else t for t in leaves], spec)
        before = [p.grad for p in self.params]
        graph = torch.cuda.CUDAGraph()
        current = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(current)
        try:
            with torch.cuda.graph(graph, pool=self._pool, stream=self._stream):
                out = self.step(static)
            made = [p for p, g in zip(self.params, before) if p.grad is not g]
            if made:
                raise RuntimeError(f"{len(made)} parameter(s) got their first gradient inside the capture (a "
                                   "parameter unused by the warm-up step of the same batch shape)")
        except Exception as e:
            raise RuntimeError(f"train.cuda_graphs: capturing the training step as a CUDA graph failed after a clean "
                               f"warm-up ({type(e).__name__}: {str(e).splitlines()[0]}); set train.cuda_graphs=false "
                               "to train eagerly") from e
        current.wait_stream(self._stream)
        captured = _Graph(graph, inputs, out, [(p, p.grad) for p in self.params if p.grad is not None])
        self._graphs[key] = captured
        return captured

    @staticmethod
    def _bind(graph: _Graph) -> None:
        """Makes the parameters' ``.grad`` the tensors the graph adds into (a ``zero_grad(set_to_none=True)`` since
        the capture would have detached them), keeping what they held."""
        for p, g in graph.grads:
            if p.grad is not g:
                if p.grad is None:
                    g.zero_()
                else:
                    g.copy_(p.grad)
                p.grad = g

    def summary(self) -> str:
        """One line: graphs captured, steps replayed and eager (and why graphs are off, if they are)."""
        line = f"cuda graphs: {self.captured} captured, {self.replayed} steps replayed, {self.eager} eager"
        return line + (f" (off: {self.disabled})" if self.disabled else "")


def use_step_graphs(config: TrainerConfig, device: torch.device, loader: Any, distributed: bool,
                    task: Any = None) -> bool:
    """Whether a Trainer graphs its steps: ``config.cuda_graphs`` True, or None (the default) with a loader whose
    ``static_shapes`` attribute says it yields few batch shapes and a task whose ``capturable`` attribute says its
    step draws its random numbers on the device and decides nothing on the host (a capture would freeze such
    decisions: a host-drawn mixup coin, say); on one CUDA device, eager (not compiled) steps in bf16 or fp32.
    ``True`` where it cannot apply is said in a warning, not ignored."""
    wanted = config.cuda_graphs
    if wanted is None:
        wanted = bool(getattr(loader, "static_shapes", False)) and bool(getattr(task, "capturable", False))
        if not wanted:
            return False
        return device.type == "cuda" and not distributed and not config.compile and config.precision != "fp16"
    if not wanted:
        return False
    if getattr(task, "capturable", True) is False:
        warnings.warn(f"train.cuda_graphs=true: {type(task).__name__}'s training step takes decisions on the host "
                      "(capturable is False), which a CUDA graph would freeze; its steps run eagerly", stacklevel=3)
        return False
    if device.type != "cuda" or distributed:
        warnings.warn(f"train.cuda_graphs=true applies to one CUDA device; the steps on {str(device)!r}"
                      f"{' under torchrun' if distributed else ''} run eagerly", stacklevel=3)
        return False
    return True


__all__ = ["StepGraphs", "copy_of_output", "use_step_graphs"]
