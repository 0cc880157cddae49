"""The model-agnostic training loop: accumulation, mixed precision, clipping, non-finite guards, logging, resume.

The Trainer knows nothing of the model family: a :class:`~formers.training.task.Task` turns batches into losses
and models into eval metrics. A step whose loss or gradient norm is not finite is skipped, decided on the device
(:mod:`formers.training.device_step`): it leaves the model as it was (parameters, optimizer state, buffers such as
BatchNorm statistics) and does not advance the schedule. The host reads losses, norms and skips only every
``log_every`` steps and before evaluations, checkpoints and stops, so the step loop does not wait for the GPU.

Resuming restores weights, optimizer, scheduler, GradScaler, RNG states and the position in the epoch (through
the loader's ``state_dict`` when it has one, else by ``set_epoch(epoch)`` and skipping consumed batches), so a
resumed run takes exactly the steps the uninterrupted one would have. Ctrl-C saves the last complete step
(:mod:`formers.training.interrupt`); ``checkpoints/best`` names the step checkpoint of the best evaluation
(:mod:`formers.training.best`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from formers.devices import cpu_has_native_bf16, move_to_device, resolve_device
from formers.training.best import repair_best, write_best
from formers.training.buffers import BufferSnapshot
from formers.training.checkpoint import (
    ExtraFiles,
    TrainerState,
    checkpoints_dir,
    latest_checkpoint,
    load_checkpoint,
    load_state,
    save_checkpoint,
    step_dir_name,
    write_trainer_state,
)
from formers.training.determinism import seed_everything, set_deterministic
from formers.training.device_step import (
    DeviceFeed,
    DeviceSkipStep,
    NonFiniteLossError,
    PendingSteps,
    SchedulerLag,
    count_step,
)
from formers.training.distributed import (
    FullOptimizerState,
    RankSlices,
    ShardedModelLoader,
    gather_full_state,
    init_distributed,
    is_sharded,
    prepare_model,
    rank_positions,
    rank_rng,
    step_module,
)
from formers.training.interrupt import (
    DeferredInterrupt,
    StepBoundary,
    TrainingInterrupted,
)
from formers.training.logs import (
    MetricsCSV,
    StepWindow,
    add_scalars,
    draw_curves,
    open_logs,
)
from formers.training.optim import build_optimizer
from formers.training.optimizer_graph import optimizer_graph_for
from formers.training.progress import NullProgress, Progress, stop_message
from formers.training.schedules import decay_left
from formers.training.step_graphs import StepGraphs, copy_of_output, use_step_graphs
from formers.training.task import StepOutput, check_step_output
from formers.training.trainer_config import TrainerConfig, compile_steps


class Trainer:
    """Trains ``model`` on ``task`` with ``train_loader`` into ``run_dir``.

    Args:
        model: any ``nn.Module`` (moved to the configured device); formers models also get ``config.json``
            in their checkpoints, so ``formers.from_pretrained(run_dir)`` loads the latest one.
        task: object with ``training_step(model, batch) -> StepOutput`` and ``evaluate(model, loader) -> dict``.
        train_loader: iterable over one epoch of batches, ideally with ``set_epoch(epoch)`` (deterministic order
            per epoch) and optionally ``state_dict()`` / ``load_state_dict()``.
        config: a :class:`TrainerConfig`.
        run_dir: where ``metrics.csv``, ``curves.png``, ``tensorboard/`` and ``checkpoints/`` go.
        optimizer: defaults to ``build_optimizer(model)`` (AdamW, decay on matrices only).
        scheduler: an LR scheduler stepped once per applied optimizer step (skipped steps do not advance it).
        eval_loader: passed to ``task.evaluate``; without it no evaluation happens.
        extra_files: ``{file name: path}`` copied into every checkpoint, or a callback ``fn(checkpoint_dir)``
            writing files there (e.g. ``tokenizer.json``).

    Under ``torchrun`` (:mod:`formers.training.distributed`) every rank builds the same Trainer: ``config.parallel``
    wraps the model, each rank trains on its slice of every batch of ``train_loader``, the loss, the stop decisions
    and the logged metrics are agreed over the ranks, and only rank 0 writes logs and checkpoints. With
    ``parallel='fsdp'`` a given ``optimizer`` must be built after :func:`~formers.training.distributed.prepare_model`.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Any,
        train_loader: Iterable[Any],
        config: TrainerConfig,
        run_dir: str | Path,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        eval_loader: Iterable[Any] | None = None,
        extra_files: ExtraFiles | None = None,
    ) -> None:
        if not isinstance(config, TrainerConfig):
            raise TypeError(f"config must be a TrainerConfig, got {type(config).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        for method in ("training_step", "evaluate"):
            if not callable(getattr(task, method, None)):
                raise TypeError(f"task must have a {method}() method (the Task protocol), got {type(task).__name__}")
        if config.best_metric is not None and eval_loader is None:
            raise ValueError(f"best_metric={config.best_metric!r} needs an eval_loader, got None")
        self.config = config
        self.dist = init_distributed(config.device)
        self.device = self.dist.device
        if config.precision == "fp16" and self.device.type != "cuda":
            raise ValueError(f"precision='fp16' needs a CUDA device, got device {str(self.device)!r} (use 'bf16')")
        if config.precision == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn(f"precision='bf16' on this CPU ({torch.backends.cpu.get_cpu_capability()}, no native "
                          "bfloat16) is emulated, many times slower than fp32 (multi30k-en-de: 15x); for speed use "
                          "--set train.precision=fp32", stacklevel=2)
        if self.dist.active and config.parallel == "fsdp" and optimizer is not None and not is_sharded(model):
            raise ValueError("parallel='fsdp' shards the parameters: build the optimizer after "
                             "formers.training.distributed.prepare_model(model, ...), or pass optimizer=None")
        self.model = prepare_model(model.to(self.device), config.parallel, config.activation_checkpointing,
                                   config.precision, self.dist)
        # What training steps call: DDP and the compiled wrapper share the model's parameters and modes.
        wrapped = step_module(self.model, config.parallel, self.dist)
        self._ddp = wrapped if isinstance(wrapped, nn.parallel.DistributedDataParallel) else None
        self._sync_grads = True
        self.step_model: nn.Module = compile_steps(wrapped, config) if config.compile else wrapped
        # CUDA graphs (reduce-overhead) reuse their output buffers at the next replay: each step marks its start,
        # and what outlives the step (loss, logged metrics) is copied out.
        self._graphed = config.compile and config.compile_mode == "reduce-overhead" and self.device.type == "cuda"
        self.task = task
        self.train_loader = RankSlices(train_loader, self.dist.rank, self.dist.world_size) if self.dist.active else (
            train_loader)
        self.eval_loader = eval_loader
        self.run_dir = Path(run_dir)
        self.optimizer = optimizer if optimizer is not None else build_optimizer(self.model)
        self.scheduler = scheduler
        self.extra_files = extra_files
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self.state = TrainerState()
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self._csv: MetricsCSV | None = None
        self._deadline: float | None = None
        self._tb: Any = None
        self._buffers = BufferSnapshot(self.model)
        self._step_graphs = StepGraphs(self._step, self.params, self.device, rewind=self._buffers.restore,
                                       compiled=config.compile) if (
            use_step_graphs(config, self.device, train_loader, self.dist.active, task)) else None
        self._skip = DeviceSkipStep(self.optimizer, self.params, self._buffers)
        self._optimizer_graph = optimizer_graph_for(config, self._skip, self.device, self._step_graphs,
                                                    self.scaler.is_enabled(), self.dist.active)
        self._pending = PendingSteps()  # steps the host has not read yet
        self._lag = SchedulerLag(scheduler)
        self._feed = DeviceFeed(self.device)
        self._window = StepWindow()
        self._boundary: StepBoundary | None = None
        self._phase = "step"  # "step": before the optimizer update; "update": during it; "after": step complete
        self._start_step = self._last_save = self._last_eval = 0
        self._latest: Path | None = None
        self._agreed = (False, False)  # time budget spent, interruption requested: as all ranks agreed at the last read
        self._interrupt: DeferredInterrupt | None = None

    # ------------------------------------------------------------------ public

    def fit(self, resume: bool = False, on_start: Callable[[TrainerState], None] | None = None) -> TrainerState:
        """Trains until ``max_steps`` / ``max_epochs``, evaluating, logging and checkpointing on the way.

        Ctrl-C stops after the current step and saves it (the usual step checkpoint, atomically); a second Ctrl-C
        stops at once, keeping the last complete checkpoint. Either way :class:`TrainingInterrupted` is raised.

        Args:
            resume: continue from ``run_dir/checkpoints/latest`` when it exists (a fresh start otherwise); a
                ``checkpoints/best`` left inconsistent by a crash is repaired (with a warning).
            on_start: called with the state once it is restored (or fresh), before the first step: e.g. to record
                the run's configuration only once a resume has succeeded.

        Returns:
            The final :class:`TrainerState`.

        Raises:
            NonFiniteLossError: ``max_consecutive_nonfinite`` steps in a row had a non-finite loss or gradient.
            TrainingInterrupted: the run was interrupted (it names what was saved).
        """
        cfg = self.config
        self._deadline = time.monotonic() + 60.0 * cfg.max_minutes if cfg.max_minutes is not None else None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.deterministic:
            set_deterministic()
        checkpoint = latest_checkpoint(self.run_dir) if resume else None
        loader_state = None
        if checkpoint is not None:
            model, optimizer = self.model, self.optimizer
            if is_sharded(self.model):  # every rank reads the full state and keeps its shards
                model, optimizer = ShardedModelLoader(self.model), FullOptimizerState(self.model, self.optimizer)
            self.state = load_checkpoint(checkpoint, model, optimizer, self.scheduler, self.scaler)
            if self.dist.is_main:
                self.state, repaired = repair_best(self.run_dir, self.state)
                if repaired is not None:
                    warnings.warn(repaired, stacklevel=2)
            self.dist.barrier()
            if hasattr(self.train_loader, "load_state_dict") and (checkpoint / "loader.json").exists():
                loader_state = load_state(checkpoint, "loader")
        else:
            seed_everything(cfg.seed)
            self.state = TrainerState()
        if on_start is not None:
            on_start(self.state)
        self._open_logs(resumed=checkpoint is not None)
        self._start_step = self._last_save = self._last_eval = self.state.step
        self._latest, self._boundary, self._phase = checkpoint, None, "step"
        bar = Progress(cfg.max_steps, self.state.step, cfg.progress_bar, self._deadline,
                       unit=getattr(self.task, "throughput_unit", "tok")) if self.dist.is_main else NullProgress()
        interrupt = self._interrupt = DeferredInterrupt()
        try:
            with interrupt:
                self._run(bar, interrupt, loader_state)
        except KeyboardInterrupt as e:
            if isinstance(e, TrainingInterrupted):
                raise
            raise self._interrupted(forced=interrupt.requested) from None
        finally:
            bar.close()
            if self._tb is not None:
                self._tb.close()
        return self.state

    def _run(self, bar: Progress, interrupt: DeferredInterrupt, loader_state: Any) -> None:
        """The epochs and steps of :meth:`fit`, then the final log, evaluation and checkpoint."""
        cfg, state = self.config, self.state
        window = self._window = StepWindow()
        step_loss: Tensor | None = None
        micro = 0
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self._buffers.take()
        while not self._done():
            if hasattr(self.train_loader, "set_epoch"):
                self.train_loader.set_epoch(state.epoch)
            skip = state.batch_in_epoch
            if loader_state is not None:  # the loader resumes its own position
                self.train_loader.load_state_dict(loader_state)
                loader_state, skip = None, 0
            iterator = iter(self.train_loader)
            if skip:
                iterator = itertools.islice(iterator, skip, None)
            consumed = 0
            for batch in iterator:
                consumed += 1
                state.batch_in_epoch += 1
                self._sync_grads = micro + 1 == cfg.grad_accum_steps  # DDP: all-reduce in this backward
                loss = self._forward_backward(batch, window)
                step_loss = loss if step_loss is None else step_loss + loss
                micro += 1
                if micro < cfg.grad_accum_steps:
                    continue
                self._phase = "update"  # an interruption from here until the step is counted cannot be rewound
                self._optimizer_step(step_loss / cfg.grad_accum_steps, window)
                step_loss, micro = None, 0
                state.step += 1
                self._phase = "after"
                bar.update(1)
                log_due = state.step % cfg.log_every == 0 or self._done()
                eval_due = self.eval_loader is not None and bool(cfg.eval_every) and state.step % cfg.eval_every == 0
                save_due = bool(cfg.save_every) and state.step % cfg.save_every == 0
                if log_due or eval_due or save_due:  # the same steps on every rank: they agree on stopping here
                    self._read(agree=self.dist.active)
                if log_due or self._done():
                    self._log_train(window, bar)
                    window = self._window = StepWindow()
                improved = False
                if eval_due:
                    improved = self._evaluate()
                    self._last_eval = state.step
                self._checkpoint_step(save_due, improved)
                if self._stop_requested(interrupt):
                    raise self._interrupted(forced=False)
                self._mark_boundary()
                if self._done():
                    break
            else:
                if consumed == 0 and state.batch_in_epoch == 0:
                    raise ValueError(f"train_loader yielded no batches in epoch {state.epoch}")
                state.epoch += 1
                state.batch_in_epoch = 0
        self.optimizer.zero_grad(set_to_none=True)  # drop a partial accumulation left by max_epochs
        self._phase = "after"
        self._read(agree=self.dist.active)
        if state.step > self._start_step:
            if window.losses:
                self._log_train(window, bar)
            improved = False
            if self.eval_loader is not None and self._last_eval != state.step:
                improved = self._evaluate()
            self._checkpoint_step(True, improved)
            self._plot()
        if self._stop_requested(interrupt):
            raise self._interrupted(forced=False)
        spent = self._time_up()
        latest = latest_checkpoint(self.run_dir)
        bar.close()
        if self.dist.is_main:
            if self._step_graphs is not None:
                print(self._step_graphs.summary(), flush=True)
            print(stop_message(state.step, self.config.max_steps, self.config.max_minutes, state.epoch,
                               self.config.max_epochs, spent, decay_left(self.scheduler, self.optimizer))
                  + (f"; latest checkpoint {latest}" if latest else "; no checkpoint written"), flush=True)

    def evaluate(self) -> dict[str, float]:
        """Runs ``task.evaluate`` in eval mode under ``torch.no_grad()`` (and autocast) and returns its metrics."""
        if self.eval_loader is None:
            raise ValueError("evaluate() needs an eval_loader, got None")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                metrics = self.task.evaluate(self.model, self.eval_loader)
        finally:
            self.model.train(was_training)
        if not isinstance(metrics, Mapping):
            raise TypeError(f"task.evaluate must return a dict of floats, got {type(metrics).__name__}")
        return {k: float(v) for k, v in metrics.items()}

    def save(self) -> Path:
        """Writes the step checkpoint of the current state, moves ``latest`` to it and prunes old ones.

        On several ranks every rank calls it (FSDP gathers the full state to rank 0 collectively); rank 0 writes,
        with every rank's data position (``ranks.json``, checked equal), and the others wait for it.
        """
        model, optimizer = self.model, self.optimizer
        if is_sharded(self.model):
            model, optimizer = gather_full_state(self.model, self.optimizer)  # type: ignore[assignment]
        ranks = rank_positions(self.state.epoch, self.state.batch_in_epoch, self.dist)
        path = checkpoints_dir(self.run_dir) / step_dir_name(self.state.step)
        if self.dist.is_main:
            path = save_checkpoint(
                self.run_dir, model, self.state, optimizer, self.scheduler, self.scaler,
                self.train_loader, self.extra_files, keep_last=self.config.keep_last,
                extra_state={"ranks": ranks} if self.dist.active else None,
            )
        self.dist.barrier()
        self._last_save, self._latest = self.state.step, path
        return path

    # ------------------------------------------------------------------ checkpoints and interruptions

    def _checkpoint_step(self, scheduled: bool, improved: bool) -> None:
        """Saves the step when it is due or a new best; a new best also moves ``best`` to it."""
        step = self.state.step
        if (scheduled or improved) and self._last_save != step:
            saved = self.save()
        elif improved:  # saved before this evaluation: record the new best in that checkpoint
            saved = checkpoints_dir(self.run_dir) / step_dir_name(step)
            if self.dist.is_main:
                write_trainer_state(saved, self.state)
        else:
            return
        if improved and self.dist.is_main:
            write_best(self.run_dir, saved)
        self.dist.barrier()

    def _mark_boundary(self) -> None:
        """Remembers the end of a complete step: what a skipped or interrupted next step must put back."""
        self._buffers.take()
        self._boundary = StepBoundary.capture(self.state.epoch, self.state.batch_in_epoch, self.train_loader)
        self._phase = "step"

    def _interrupted(self, forced: bool) -> TrainingInterrupted:
        """Saves what an interruption may keep and returns the exception to raise.

        A step interrupted before its optimizer update is rewound (buffers, RNG, batch position, loader) and the
        last complete step is saved; one interrupted during its update, or a second Ctrl-C, saves nothing.
        """
        state = self.state
        if state.step == self._last_save:
            return TrainingInterrupted(state.step, self._latest, self._latest)
        if forced or self._phase == "update" or (self.dist.active and not self._agreed[1]):
            # several ranks save only where all of them agreed to stop (at a step's end); else the last checkpoint
            # stays the latest
            return TrainingInterrupted(state.step, None, self._latest)
        if self._phase == "step":
            assert self._boundary is not None  # a step completed since the start: it marked a boundary
            self._buffers.restore()
            self._boundary.restore(self.train_loader)
            state.epoch, state.batch_in_epoch = self._boundary.epoch, self._boundary.batch_in_epoch
        self._read()  # the counters and the schedule of the steps taken, as the checkpoint records them
        self.optimizer.zero_grad(set_to_none=True)
        try:
            saved = self.save()
            if state.best_step == state.step and self.dist.is_main:
                write_best(self.run_dir, saved)
        except KeyboardInterrupt:  # a second Ctrl-C during the save: the atomic write left the last checkpoint
            try:
                latest = latest_checkpoint(self.run_dir)
            except (OSError, ValueError):
                latest = self._latest
            return TrainingInterrupted(state.step, None, latest)
        return TrainingInterrupted(state.step, saved, saved)

    # ------------------------------------------------------------------ steps

    def _done(self) -> bool:
        cfg, state = self.config, self.state
        return (
            (cfg.max_steps is not None and state.step >= cfg.max_steps)
            or (cfg.max_epochs is not None and state.epoch >= cfg.max_epochs)
            or self._time_up()
        )

    def _time_up(self) -> bool:
        """The time budget is spent (on several ranks: as they agreed at the last step, so all stop together)."""
        if self.dist.active:
            return self._agreed[0]
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _stop_requested(self, interrupt: DeferredInterrupt) -> bool:
        """Ctrl-C asked to stop after this step (on several ranks: any rank asked, as agreed at the last step)."""
        return self._agreed[1] if self.dist.active else interrupt.requested

    def _autocast(self) -> torch.autocast:
        precision = self.config.precision
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        # a CUDA graph must not keep the weight casts of its capture: no autocast cache with cuda_graphs
        return torch.autocast(self.device.type, dtype=dtype, enabled=precision != "fp32",
                              cache_enabled=self._step_graphs is None)

    def _forward_backward(self, batch: Any, window: StepWindow) -> Tensor:
        """One micro-batch: forward under autocast, backward of ``loss / grad_accum_steps``; returns the loss.

        Under DDP only the last micro-batch of a step (``_sync_grads``) all-reduces the gradients; the others
        accumulate them locally. With ``cuda_graphs`` the forward and backward replay from a CUDA graph per shape.
        """
        batch = self._feed(batch)
        if self._graphed:
            torch.compiler.cudagraph_mark_step_begin()
        ddp = self._ddp if not self._sync_grads else None
        with ddp.no_sync() if ddp is not None else contextlib.nullcontext():
            out = self._step_graphs(batch) if self._step_graphs is not None else self._step(batch)
        if self._graphed:
            out = copy_of_output(out)
        window.add_micro(out)
        return out.loss.detach().float()

    def _step(self, batch: Any) -> StepOutput:
        """The task's forward under autocast (and each rank's own generators) and its backward (what
        ``cuda_graphs`` captures)."""
        state = self.state
        with rank_rng(self.dist, self.config.seed, state.epoch, state.batch_in_epoch), self._autocast():
            out = check_step_output(self.task.training_step(self.step_model, batch))
        self.scaler.scale(out.loss.float() / self.config.grad_accum_steps).backward()
        return out

    def _optimizer_step(self, loss: Tensor, window: StepWindow) -> None:
        """Unscale, measure and clip the gradient, then step unless loss or norm is non-finite (decided on the
        device where :class:`~formers.training.device_step.DeviceSkipStep` can, else on the host)."""
        cfg, state = self.config, self.state
        self._lag.resolve()  # the schedule as the previous step left it
        if self._optimizer_graph is not None and self._step_graphs.disabled is None and self._skip.ready():
            self._defer(state.step + 1, *self._optimizer_graph.step(loss))  # the update zeroes the gradients too
            return
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        if hasattr(norm, "full_tensor"):  # FSDP: the norm of sharded gradients is a partial DTensor
            norm = norm.full_tensor()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(self.params, cfg.max_grad_norm, norm)
        values = self.dist.mean(torch.stack([loss, norm.float().to(loss.device)]))  # every rank decides alike
        if not is_sharded(self.model) and self._skip.ready():  # fp16: non-finite grads make the norm non-finite
            finite = torch.isfinite(values).all()
            self._skip.step(finite)
            self._defer(state.step + 1, values, finite)
        else:  # the host decides: count the pending steps first, in order
            self._read()
            if self._count(state.step + 1, *values.tolist()):
                if self.scaler.is_enabled():
                    self.scaler.step(self.optimizer)
                else:
                    self.optimizer.step()
                self._skip.mark_applied()
                if self.scheduler is not None:
                    self.scheduler.step()
            else:
                self._buffers.restore()  # the forward pass may have updated them (BatchNorm statistics)
        if self.scaler.is_enabled():
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=self._step_graphs is None)  # graphs add into fixed gradient memory

    def _defer(self, step: int, values: Tensor, finite: Tensor) -> None:
        """Leaves step ``step``'s (loss, norm) and finite flag on the device for the host's next read."""
        self._lag.defer(finite)
        self._pending.add(step, values)

    def _read(self, agree: bool = False) -> None:
        """The host's read of the pending steps' losses, norms and skips (one device sync), counted in order; with
        ``agree`` (on several ranks, at the same step on each) also the ranks' agreement to stop."""
        wants = None
        if agree:
            local = [self._deadline is not None and time.monotonic() >= self._deadline,
                     self._interrupt is not None and self._interrupt.requested]
            wants = self.dist.mean(torch.tensor(local, dtype=torch.float32, device=self.device))
        if not len(self._pending) and wants is None:
            self._lag.resolve()
            return
        rows, stops = self._pending.read(wants)
        if stops:
            self._agreed = (stops[0] > 0, stops[1] > 0)
        for step, loss_value, norm_value in rows:
            self._count(step, loss_value, norm_value)
        self._lag.resolve()

    def _count(self, step: int, loss_value: float, norm_value: float) -> bool:
        """Logs optimizer step ``step``'s loss and norm and counts it; returns whether it was finite (applied)."""
        self._window.losses.append(loss_value)
        self._window.norms.append(norm_value)
        return count_step(self.state, step, loss_value, norm_value, self.config.max_consecutive_nonfinite,
                          fp16=self.scaler.is_enabled())

    # ------------------------------------------------------------------ eval, best, logs

    def _evaluate(self) -> bool:
        """Evaluates, logs, updates the best metric; returns whether it improved."""
        cfg, state = self.config, self.state
        metrics = self.evaluate()
        self._write_row({"step": state.step, "epoch": state.epoch, **{f"eval_{k}": v for k, v in metrics.items()}})
        add_scalars(self._tb, "eval", metrics, state.step)
        self._plot()
        if cfg.best_metric is None:
            return False
        if cfg.best_metric not in metrics:
            raise ValueError(f"best_metric={cfg.best_metric!r} is not among the eval metrics {sorted(metrics)}")
        value = metrics[cfg.best_metric]
        if not math.isfinite(value):
            return False
        best = state.best_metric
        if best is None or (value > best if cfg.best_mode == "max" else value < best):
            state.best_metric, state.best_step = value, state.step
            return True
        return False

    def _open_logs(self, resumed: bool) -> None:
        self._csv, self._tb = None, None
        if self.dist.is_main:
            self._csv, self._tb = open_logs(self.run_dir, self.state.step if resumed else None, self.config.tensorboard)

    def _write_row(self, row: dict[str, Any]) -> None:
        if self._csv is not None:  # rank 0 only
            self._csv.write(row)

    def _log_train(self, window: StepWindow, bar: Progress) -> None:
        state = self.state
        lr = float(self.optimizer.param_groups[0]["lr"])
        values = window.read()
        if self.dist.active:  # every rank saw its slice: metrics are averaged, throughput summed
            keys = sorted(values)
            means = self.dist.mean(torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device))
            values = dict(zip(keys, means.tolist()))
            values["tokens_per_s"] *= self.dist.world_size
        row = {"step": state.step, "epoch": state.epoch, **values, "lr": lr, "nonfinite_skips": state.total_nonfinite}
        self._write_row(row)
        add_scalars(self._tb, "train", row, state.step)
        bar.log(state.step, values["loss"], lr, values["tokens_per_s"])

    def _plot(self) -> None:
        if self.dist.is_main:
            draw_curves(self.run_dir)


__all__ = [
    "MetricsCSV",
    "NonFiniteLossError",
    "Trainer",
    "TrainerConfig",
    "TrainingInterrupted",
    "move_to_device",
    "resolve_device",
    "seed_everything",
    "set_deterministic",
]
