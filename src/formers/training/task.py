"""The contracts between the Trainer and what it trains: a ``Task`` and an epoch-wise training loader.

A task turns a batch into a loss (``training_step``) and a model into evaluation metrics (``evaluate``); the
Trainer owns everything else (devices, precision, accumulation, clipping, logging, checkpoints). Any object with
these methods is a task: the protocols are structural, no base class is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

from torch import Tensor, nn


@dataclass
class StepOutput:
    """What a task returns for one (micro-)batch.

    Attributes:
        loss: scalar tensor to backpropagate, already averaged over the batch (tokens, items or pixels).
        metrics: extra training metrics to log (scalar tensors or floats); tensors are read back to the host only
            at logging time, so returning them costs no synchronisation.
        num_tokens: tokens (or items) in the batch, for throughput; a plain int so counting never syncs.
    """

    loss: Tensor
    metrics: dict[str, Tensor | float] = field(default_factory=dict)
    num_tokens: int = 0


def check_step_output(out: Any) -> StepOutput:
    """Returns ``out`` if it is a StepOutput with a scalar tensor loss, else raises naming what it is."""
    if not isinstance(getattr(out, "loss", None), Tensor):
        raise TypeError(f"task.training_step must return a StepOutput with a tensor loss, got {type(out).__name__}")
    if out.loss.ndim != 0:
        raise ValueError(f"StepOutput.loss must be a scalar (already averaged), got shape {tuple(out.loss.shape)}")
    return out


@runtime_checkable
class Task(Protocol):
    """Batch -> model call -> loss + metrics; model + evaluation data -> metrics.

    A task may also set ``throughput_unit``, the unit of its ``StepOutput.num_tokens`` in progress lines (``"img"``
    for images, ``"word"``; ``"tok"`` when it is absent), and ``capturable = True`` when its ``training_step`` does
    only device work (random numbers drawn on the device, no decision taken on the host), so that
    ``train.cuda_graphs`` may replay it as a CUDA graph (:mod:`formers.training.step_graphs`).
    """

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        """Computes the loss of ``batch`` (already on the model's device) in training mode."""
        ...

    def evaluate(self, model: nn.Module, eval_loader: Iterable[Any]) -> dict[str, float]:
        """Returns evaluation metrics; the Trainer calls it in eval mode under ``torch.no_grad()``.

        The batches of ``eval_loader`` are given as the loader yields them (the task moves them to the device).
        """
        ...


@runtime_checkable
class EpochLoader(Protocol):
    """An iterable over one epoch of batches whose order is a deterministic function of ``(seed, epoch)``.

    Batches are dicts of tensors, sequences of tensors, or objects with a ``.to(device)`` method. Loaders that
    also offer ``state_dict()`` / ``load_state_dict()`` are resumed through them instead of by skipping batches.
    """

    def set_epoch(self, epoch: int) -> None:
        """Fixes the order of the next iteration to that of ``epoch``."""
        ...

    def __iter__(self) -> Iterator[Any]:
        ...
