"""Running a recipe end to end: the recipe's setup builds data and model, the Trainer trains, the setup reports.

Each ``recipes/<task>.py`` exposes ``setup(recipe, run_dir, resume) -> RunSetup``; :data:`TASKS` maps task names to
them by plain import. This module owns what every task shares (optimizer, schedule, Trainer, the resolved recipe
and ``results.json`` in the run directory).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from torch import nn

from formers.devices import resolve_device
from formers.recipes import (
    causal_lm,
    image_classification,
    masked_lm,
    text_classification,
    translation,
    word2vec,
)
from formers.recipes.recipe import OptimConfig, Recipe, RunSetup, dump_recipe
from formers.training.optim import build_optimizer
from formers.training.schedules import build_scheduler
from formers.training.trainer import Trainer

TASKS: dict[str, Callable[[Recipe, Path, bool], RunSetup]] = {
    "translation": translation.setup,
    "causal_lm": causal_lm.setup,
    "image_classification": image_classification.setup,
    "masked_lm": masked_lm.setup,
    "text_classification": text_classification.setup,
    "token_classification": text_classification.setup,
    "word2vec": word2vec.setup,
}


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
    setup = TASKS[recipe.task](recipe, run_dir, resume)
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
