"""Running a recipe end to end: the recipe's setup builds data and model, the Trainer trains, the setup reports.

Each ``recipes/<task>.py`` exposes ``sections(recipe)`` (its ``data``, ``task_options`` and ``model`` sections
checked and filled in, nothing read or built), ``setup(recipe, run_dir, resume) -> RunSetup`` and ``RESUMABLE``;
:data:`TASKS` maps task names to these modules by plain import. This module owns what every task shares: checking
the whole recipe before anything is written, the run directory's rules, seeding, optimizer, schedule, Trainer, and
the resolved recipe and ``results.json`` in the run directory.

Resuming a run (``resume=True``) continues what was trained: task, model, data, task options, optimizer, schedule,
seed, accumulation and best metric are those of the run's ``recipe.yaml``, and a recipe that changes any of them is
refused (naming each key, its old and new value). What may change is when to stop, how often to evaluate, save and
log, and how to compute: :data:`RESUMABLE_KEYS`, ``expected.*`` and each task's ``RESUMABLE`` report options. The
LR schedule keeps the length it was built with (it is restored from the checkpoint): after a longer
``train.max_steps``, cosine and linear schedules stay at their final rate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shlex
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from formers.config import from_dict, load_file, to_dict
from formers.hub import from_pretrained
from formers.recipes import (
    causal_lm,
    detection,
    image_classification,
    masked_lm,
    text_classification,
    translation,
    word2vec,
)
from formers.recipes.recipe import OptimConfig, Recipe, dump_recipe
from formers.training.checkpoint import LATEST_NAME, checkpoints_dir, latest_checkpoint
from formers.training.distributed import (
    init_distributed,
    is_sharded,
    prepare_model,
    shutdown_distributed,
)
from formers.training.optim import build_optimizer
from formers.training.schedules import build_scheduler
from formers.training.trainer import Trainer, seed_everything

TASKS = {
    "translation": translation,
    "causal_lm": causal_lm,
    "image_classification": image_classification,
    "detection": detection,
    "masked_lm": masked_lm,
    "text_classification": text_classification,
    "token_classification": text_classification,
    "word2vec": word2vec,
}
RECIPE_FILE = "recipe.yaml"
RESUMABLE_KEYS = frozenset({
    "name", "description", "data.data_dir", "data.eval_batch_size",
    "train.max_steps", "train.max_epochs", "train.max_minutes", "train.eval_every", "train.save_every",
    "train.keep_last", "train.log_every", "train.max_consecutive_nonfinite", "train.max_grad_norm",
    "train.precision", "train.deterministic", "train.device", "train.progress_bar", "train.tensorboard",
    "train.compile", "train.compile_mode", "train.parallel", "train.activation_checkpointing",
})
"""Recipe keys that may change when a run resumes (besides ``expected.*`` and each task's ``RESUMABLE``)."""


def build_optimization(model: nn.Module, optim: OptimConfig, total_steps: int | None):
    """Optimizer + LR scheduler from a recipe's ``optim`` section."""
    optimizer = build_optimizer(
        model, optim.name, optim.lr, tuple(optim.betas), optim.eps, optim.weight_decay, optim.decay_embeddings,
        lr_scales=optim.lr_scales or None,
    )
    if optim.schedule in ("cosine", "linear") and total_steps is not None and total_steps < max(1, optim.warmup_steps):
        raise ValueError(
            f"optim.warmup_steps={optim.warmup_steps} is longer than the run's {total_steps} optimizer steps "
            f"(train.max_steps, or max_epochs' steps), which the {optim.schedule} schedule decays over: lower "
            f"optim.warmup_steps (--set optim.warmup_steps=N) or raise train.max_steps"
        )
    scheduler = build_scheduler(
        optimizer, optim.schedule, warmup_steps=optim.warmup_steps, total_steps=total_steps,
        min_lr_ratio=optim.min_lr_ratio,
    )
    return optimizer, scheduler


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def resolve_recipe(recipe: Recipe) -> dict[str, Any]:
    """Checks every section of ``recipe`` (the task's data, options and model, optimizer and schedule, trainer) before
    anything is read, built or written, and returns it flattened to dotted keys with every default filled in.

    Raises:
        ValueError, TypeError: the first unknown key or bad value, named as ``section.key``.
    """
    if recipe.task not in TASKS:
        raise ValueError(f"recipe task must be one of {sorted(TASKS)}, got {recipe.task!r}")
    sections = TASKS[recipe.task].sections(recipe)
    try:  # optimizer name, schedule, warmup against the run length, on a stand-in module
        # lr_scales name the real model's parameters: checked when it is built
        build_optimization(nn.Linear(2, 2), dataclasses.replace(recipe.optim, lr_scales={}), recipe.train.max_steps)
    except (ValueError, TypeError) as e:
        raise type(e)(f"recipe section 'optim': {e}") from None
    full = {**to_dict(recipe), **sections}
    return _flatten(full)


def _resumable(key: str, task: str) -> bool:
    return key in RESUMABLE_KEYS or key.startswith("expected.") or key in TASKS[task].RESUMABLE


def check_run_dir(resolved: dict[str, Any], run_dir: Path, resume: bool) -> dict[str, Any]:
    """The run directory's rules: a new run needs one without checkpoints; a resumed run needs a checkpoint, and a
    recipe that keeps what was trained (see the module docstring).

    Returns:
        The changed keys that are allowed, ``{key: (old, new)}``.
    """
    pointer = checkpoints_dir(run_dir) / LATEST_NAME
    if not resume:
        if pointer.exists():
            raise ValueError(f"run directory {run_dir} already holds checkpoints; pass --resume to continue it or "
                             "--run-dir for a new run")
        return {}
    if latest_checkpoint(run_dir) is None:
        raise ValueError(f"cannot resume: run directory {run_dir} holds no checkpoint ({pointer} is missing); "
                         "start it without --resume")
    saved_path = run_dir / RECIPE_FILE
    if not saved_path.is_file():
        return {}
    try:
        saved = from_dict(Recipe, load_file(saved_path))
        old = resolve_recipe(saved)
    except (ValueError, TypeError) as e:
        warnings.warn(f"could not read {saved_path} ({e}); resuming without comparing recipes", stacklevel=2)
        return {}
    missing = object()
    changed = {k: (old.get(k, missing), resolved.get(k, missing)) for k in sorted(set(old) | set(resolved))
               if old.get(k, missing) != resolved.get(k, missing)}
    refused = [k for k in changed if not _resumable(k, saved.task)]
    if refused:
        shown = "; ".join(f"{k}: {_show(changed[k][0], missing)} -> {_show(changed[k][1], missing)}" for k in refused)
        raise ValueError(f"cannot resume {run_dir} with a different {', '.join(refused)} ({shown}): a resumed run "
                         f"keeps what it trains; start a new run (--run-dir) to change it")
    return changed


def _show(value: Any, missing: object) -> str:
    return "(unset)" if value is missing else repr(value)


def run_recipe(recipe: Recipe, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Trains ``recipe`` into ``run_dir`` (continuing its latest checkpoint when ``resume``); returns final metrics.

    The whole recipe is checked, and the run directory's rules applied (:func:`check_run_dir`), before anything is
    written; everything random (model init, data order, tokenizer training) is seeded with ``train.seed`` first;
    ``recipe.yaml`` is written once the run has started (a failed resume leaves it as it was).

    Under ``torchrun`` (several ranks, :mod:`formers.training.distributed`) every rank runs this: rank 0 runs the
    task's setup first (it downloads and prepares data into the run directory), the others then find it ready;
    ``train.parallel`` is applied before the optimizer is built; rank 0 alone writes ``recipe.yaml``, runs the final
    report and writes ``results.json`` (the other ranks return ``{}``).

    Raises:
        formers.training.interrupt.TrainingInterrupted: Ctrl-C (the last complete step is saved).
    """
    try:
        results = _run_recipe(recipe, Path(run_dir), resume)
    except BaseException:
        shutdown_distributed()
        raise
    shutdown_distributed(wait=True)  # every rank leaves together, after rank 0's report
    return results


def _run_recipe(recipe: Recipe, run_dir: Path, resume: bool) -> dict[str, Any]:
    resolved = resolve_recipe(recipe)
    changed = check_run_dir(resolved, run_dir, resume)
    ctx = init_distributed(recipe.train.device)
    if ctx.active and recipe.task == "word2vec":
        raise ValueError("task word2vec cannot train on several ranks (its batches are sentence chunks, not examples "
                         "to split); run it as one process")
    if "train.max_steps" in changed and recipe.optim.schedule in ("cosine", "linear") and ctx.is_main:
        print(f"note: train.max_steps {changed['train.max_steps'][0]} -> {recipe.train.max_steps}: the "
              f"{recipe.optim.schedule} LR schedule keeps its saved length and stays at its final rate after it")
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(recipe.train.seed)  # the same on every rank: the same initial weights
    if not ctx.is_main:
        ctx.barrier()  # rank 0 prepares the data first
    with contextlib.redirect_stdout(io.StringIO()) if not ctx.is_main else contextlib.nullcontext():
        setup = TASKS[recipe.task].setup(recipe, run_dir, resume)  # its report ("data: ...") printed once
    if ctx.is_main:
        ctx.barrier()
    setup.model.to(ctx.device)  # before the optimizer: CUDA parameters get the fused update
    train = recipe.train  # FSDP replaces the parameters: the optimizer is built after it
    prepare_model(setup.model, train.parallel, train.activation_checkpointing, train.precision, ctx)
    optimizer, scheduler = build_optimization(setup.model, recipe.optim, recipe.train.max_steps)
    trainer = Trainer(
        setup.model, setup.task, setup.train_loader, recipe.train, run_dir,
        optimizer=optimizer, scheduler=scheduler, eval_loader=setup.eval_loader, extra_files=setup.extra_files,
    )
    state = trainer.fit(resume=resume,
                        on_start=lambda _: dump_recipe(recipe, run_dir / RECIPE_FILE) if ctx.is_main else None)
    if not ctx.is_main:
        return {}
    latest = latest_checkpoint(run_dir)
    if is_sharded(trainer.model) and latest is not None:  # the final report runs on rank 0 alone: the plain model
        trainer.model = from_pretrained(latest, device=trainer.device)
    results = {"recipe": recipe.name, "steps": state.step, **setup.finalize(trainer)}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(next_steps(recipe, run_dir), flush=True)
    return results


NEXT_COMMANDS: dict[str, list[str]] = {
    "translation": ['formers translate --checkpoint {run} "And God said, Let there be light."',
                    "formers evaluate --checkpoint {run} --src SOURCES.txt --ref REFERENCES.txt"],
    "causal_lm": ['formers generate --checkpoint {run} --prompt "ROMEO:" --seed 0'],
    "image_classification": ["formers classify --checkpoint {run} IMAGE.png"],
    "text_classification": ['formers classify-text --checkpoint {run} "a text to label"'],
    "masked_lm": ['formers embed --model {run} "A sentence."'],
    "detection": ["formers detect --checkpoint {run} IMAGE.png --threshold 0.5 --draw boxes.png",
                  "formers evaluate --checkpoint {run} --coco ANNOTATIONS.json --images IMAGES/"],
    "word2vec": ["formers similar --vectors {run} king woman", "formers analogy --vectors {run} man king woman"],
}
"""Commands that use a finished run of each task (``{run}``: the run directory)."""


def next_steps(recipe: Recipe, run_dir: Path) -> str:
    """Where the run went and what to do with it, for the end of ``formers train``."""
    run = shlex.quote(str(run_dir))
    lines = [f"run: {run_dir} (results.json, metrics.csv, curves.png, checkpoints/)"]
    lines += [f"next: {command.format(run=run)}" for command in NEXT_COMMANDS.get(recipe.task, [])]
    return "\n".join(lines)
