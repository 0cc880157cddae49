"""The run wiring: recipes (YAML files beside this module), each task's setup and end-of-run report
(``recipes/<task>.py``), and :func:`formers.recipes.run.run_recipe`, which maps a recipe's task to its setup."""

from __future__ import annotations

from formers.recipes.recipe import (
    Expected,
    OptimConfig,
    Recipe,
    RunSetup,
    dump_recipe,
    list_recipes,
    load_recipe,
)

__all__ = ["Expected", "OptimConfig", "Recipe", "RunSetup", "dump_recipe", "list_recipes", "load_recipe"]
