"""How to train: :class:`TrainerConfig`, the ``train`` section of a recipe (what to train is the task's business)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.fx.experimental._config
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")
PARALLEL_MODES = ("none", "ddp", "fsdp")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
GRAPHING_COMPILE_MODES = ("reduce-overhead", "max-autotune")
"""``torch.compile`` modes that replay CUDA graphs of their own: not with ``cuda_graphs``."""


@dataclass
class TrainerConfig:
    """How to train (what to train is the task's business).

    Attributes:
        max_steps: optimizer steps to take (skipped non-finite steps count: they consumed their batches).
        max_epochs: stop after this many epochs as well (whichever comes first); ``None``: steps only.
        max_minutes: also stop (evaluating and checkpointing as at any end) after this much wall-clock time in
            one ``fit`` call; a time budget for quick runs. ``None``: no time limit.
        grad_accum_steps: micro-batches per optimizer step; the step's loss is their mean.
        max_grad_norm: clip the global L2 gradient norm to this; 0 turns clipping off (the norm is still logged).
        precision: ``"fp32"``, ``"bf16"`` (autocast on CUDA or CPU) or ``"fp16"`` (CUDA autocast + GradScaler).
        eval_every: evaluate every this many steps (0: only at the end); needs an ``eval_loader``.
        save_every: write a step checkpoint every this many steps (0: only at the end); a step whose evaluation is
            a new best is saved too (``checkpoints/best`` names it).
        keep_last: step checkpoints kept (older ones are deleted, except the one ``checkpoints/best`` names).
        best_metric: key of the task's eval dict that selects ``checkpoints/best`` (``None``: no best).
        best_mode: ``"max"`` or ``"min"``: which direction of ``best_metric`` is better.
        log_every: write a metrics row every this many steps. The host reads the steps' losses and non-finite skips
            (decided on the device) only then and before evaluations, checkpoints and stops; on several ranks they
            also agree then on stopping (time budget, Ctrl-C), so a stop lands on such a step.
        seed: seeds python, numpy and torch at the start of a fresh run (resumed runs restore the RNG states).
        deterministic: ``torch.use_deterministic_algorithms(True)`` and deterministic cuDNN.
        max_consecutive_nonfinite: raise :class:`NonFiniteLossError` after this many skipped steps in a row
            (detected at the next host read, see ``log_every``; the error names the step that reached the limit).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        progress_bar: show a live tqdm bar with loss, lr and tokens/s when stderr is a terminal; otherwise (or when
            off) a line is printed every ``log_every`` steps (:mod:`formers.training.progress`).
        tensorboard: also log to ``run_dir/tensorboard`` (skipped when tensorboard is not installed).
        compile: run the training steps through ``torch.compile(model, dynamic=compile_dynamic)``: one graph per batch shape,
            the first steps pay the compilation. Suits fixed shapes (image batches, LM windows); text batches
            recompile per shape until PyTorch's recompile limit, then run eager (the text recipes' ``pad_multiple``
            keeps their padded lengths to a few). Evaluation and
            checkpoints use the plain model.
        compile_dynamic: compile with symbolic shapes (``torch.compile(dynamic=True)``): one graph serves every batch
            shape, for variable-length text batches that would otherwise recompile per shape (and fall back to eager
            at PyTorch's recompile limit). Kernels for symbolic shapes can be a little slower than specialised ones.
        compile_mode: ``torch.compile``'s mode: ``"default"``, ``"reduce-overhead"`` (the compiled forward and backward
            replay as CUDA graphs: one launch instead of hundreds, for small models whose steps are bound by
            kernel launches; needs ``grad_accum_steps`` 1), ``"max-autotune"`` or ``"max-autotune-no-cudagraphs"``.
        parallel: under ``torchrun`` (several processes), how the model is spread over them
            (:mod:`formers.training.distributed`): ``"ddp"`` (a full replica per rank, gradients all-reduced) or
            ``"fsdp"`` (FSDP2 ``fully_shard`` per block: parameters, gradients and optimizer state sharded). Each rank
            trains on its slice of every global batch. ``"none"``: one process (refused under a multi-rank launch).
        activation_checkpointing: recompute each block's activations in the backward pass instead of keeping them
            (``torch.utils.checkpoint``, non-reentrant, applied from outside the model): less memory, ~1/3 more
            compute; works on one device too.
        cuda_graphs: replay each training step's forward and backward from a CUDA graph per batch shape
            (:mod:`formers.training.step_graphs`): one launch instead of thousands, for steps bound by the host.
            ``None`` (the default): on for a CUDA device when the training loader says it yields few shapes
            (``static_shapes``: the translation recipes' static batches, image batches), the task says its step can be
            captured (``capturable``) and the steps are eager (not compiled) in bf16 or fp32. ``True`` also graphs
            compiled steps (``compile_mode`` ``"default"`` or ``"max-autotune-no-cudagraphs"``: the compiled forward
            and backward, gradients accumulated inside the graph); not with the modes that capture graphs themselves
            (``"reduce-overhead"``, ``"max-autotune"``), nor fp16.
        graph_optimizer: also replay the optimizer update (gradient norm, clipping, the non-finite skip, a fused
            Adam/AdamW step, buffers, zeroed gradients) from a CUDA graph (:mod:`formers.training.optimizer_graph`),
            where the steps are graphed (``cuda_graphs``) on one device with a fused Adam/AdamW, in bf16 or fp32.
            ``None`` (the default): on wherever that holds (on an H100 it took EfficientFormer's Fashion-MNIST step
            from 8.2 ms, 50% GPU-busy, to 3.6 ms, 91%); ``True`` says in a warning where it cannot apply; ``False``
            keeps the update eager.
    """

    max_steps: int | None = 1000
    max_epochs: int | None = None
    max_minutes: float | None = None
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    eval_every: int = 0
    save_every: int = 0
    keep_last: int = 3
    best_metric: str | None = None
    best_mode: Literal["max", "min"] = "max"
    log_every: int = 10
    seed: int = 0
    deterministic: bool = False
    max_consecutive_nonfinite: int = 5
    device: str = "auto"
    progress_bar: bool = True
    tensorboard: bool = True
    compile: bool = False
    compile_mode: str = "default"
    compile_dynamic: bool = False
    parallel: Literal["none", "ddp", "fsdp"] = "none"
    activation_checkpointing: bool = False
    cuda_graphs: bool | None = None
    graph_optimizer: bool | None = None

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_epochs is None:
            raise ValueError("TrainerConfig needs max_steps or max_epochs, got neither")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0 or None, got {self.max_minutes}")
        for name in ("max_steps", "max_epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        for name in ("grad_accum_steps", "keep_last", "log_every", "max_consecutive_nonfinite"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "save_every", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = off), got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {self.best_mode!r}")
        if self.parallel not in PARALLEL_MODES:
            raise ValueError(f"parallel must be one of {PARALLEL_MODES}, got {self.parallel!r}")
        if self.parallel == "fsdp" and self.precision == "fp16":
            raise ValueError("parallel='fsdp' needs precision 'bf16' or 'fp32' (no sharded GradScaler), got 'fp16'")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")
        if self.compile_dynamic and not self.compile:
            raise ValueError("compile_dynamic=True needs compile=True, got compile=False")
        if self.compile_mode != "default" and not self.compile:
            raise ValueError(f"compile_mode={self.compile_mode!r} needs compile=True, got compile=False")
        if self.cuda_graphs and (self.compile_mode in GRAPHING_COMPILE_MODES or self.precision == "fp16"):
            raise ValueError(
                f"cuda_graphs=True needs steps that are eager or compiled without CUDA graphs of their own "
                f"(compile_mode 'default' or 'max-autotune-no-cudagraphs') in bf16 or fp32, got "
                f"compile={self.compile}, compile_mode={self.compile_mode!r}, precision={self.precision!r}"
            )
        if self.compile_mode == "reduce-overhead" and self.grad_accum_steps != 1:
            raise ValueError(
                f"compile_mode='reduce-overhead' needs grad_accum_steps=1 (a CUDA graph's gradient buffers are reused "
                f"by its next replay), got grad_accum_steps={self.grad_accum_steps}"
            )


def compile_steps(model: nn.Module, config: TrainerConfig) -> nn.Module:
    """``torch.compile(model)`` as ``config`` asks (``compile_mode``, ``compile_dynamic``).

    With ``compile_dynamic`` this turns off PyTorch's duck sizing for the process: it would treat sizes that happen
    to be equal in the first batch (a source and a target of the same padded length) as one symbol, and compile
    again at the first batch where they differ.
    """
    if config.compile_dynamic:
        torch.fx.experimental._config.use_duck_shape = False
    return torch.compile(model, dynamic=config.compile_dynamic, mode=config.compile_mode)
