"""Running a recipe end to end: the task builds data and model, the Trainer trains, the task reports.

Each task module exposes ``setup(recipe, run_dir, resume) -> RunSetup``; this module owns what every task
shares (optimizer, schedule, Trainer, the resolved recipe and ``results.json`` in the run directory).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from formers.recipes import OptimConfig, Recipe, dump_recipe
from formers.training.optim import build_optimizer
from formers.training.schedules import build_scheduler
from formers.training.trainer import Trainer, resolve_device

TASKS = {
    "translation": "formers.tasks.translation",
    "causal_lm": "formers.tasks.causal_lm",
    "image_classification": "formers.tasks.image_classification",
    "masked_lm": "formers.tasks.masked_lm",
    "text_classification": "formers.tasks.text_classification",
    "token_classification": "formers.tasks.text_classification",
}


@dataclass
class RunSetup:
    """What a task hands to the Trainer, and what it does once training ends."""

    model: nn.Module
    task: Any
    train_loader: Any
    eval_loader: Any
    extra_files: Any
    finalize: Callable[[Trainer], dict[str, Any]]


def build_optimization(model: nn.Module, optim: OptimConfig, total_steps: int | None):
    """Optimizer + LR scheduler from a recipe's ``optim`` section."""
    optimizer = build_optimizer(
        model, optim.name, optim.lr, tuple(optim.betas), optim.eps, optim.weight_decay, optim.decay_embeddings
    )
    scheduler = build_scheduler(
        optimizer, optim.schedule, warmup_steps=optim.warmup_steps, total_steps=total_steps,
        min_lr_ratio=optim.min_lr_ratio,
    )
    return optimizer, scheduler


def run_recipe(recipe: Recipe, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Trains ``recipe`` into ``run_dir`` (continuing the latest checkpoint when ``resume``); returns final metrics."""
    if recipe.task not in TASKS:
        raise ValueError(f"recipe task must be one of {sorted(TASKS)}, got {recipe.task!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    task_module = importlib.import_module(TASKS[recipe.task])
    setup: RunSetup = task_module.setup(recipe, run_dir, resume)
    dump_recipe(recipe, run_dir / "recipe.yaml")
    setup.model.to(resolve_device(recipe.train.device))  # before the optimizer: CUDA parameters get the fused update
    optimizer, scheduler = build_optimization(setup.model, recipe.optim, recipe.train.max_steps)
    trainer = Trainer(
        setup.model, setup.task, setup.train_loader, recipe.train, run_dir,
        optimizer=optimizer, scheduler=scheduler, eval_loader=setup.eval_loader, extra_files=setup.extra_files,
    )
    state = trainer.fit(resume=resume)
    results = {"recipe": recipe.name, "steps": state.step, **setup.finalize(trainer)}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results
