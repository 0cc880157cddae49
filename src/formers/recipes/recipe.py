"""A recipe: a YAML file stating its data, model, optimisation and expected result, and what a recipe's setup returns.

A recipe is a mapping with the sections of :class:`Recipe`. ``task`` picks the task module that reads the
free-form ``data`` and ``task_options`` sections (each validated by that task's own dataclasses, so unknown
keys raise there too). Built-in recipes live next to this file; any YAML/JSON path works as well.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml
from torch import nn

from formers.config import apply_overrides, from_dict, load_file, to_dict
from formers.files import atomic_file
from formers.registry import create_config, create_model, get_entry
from formers.training.trainer import Trainer, TrainerConfig


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (defaults: the paper's Adam(0.9, 0.98, 1e-9), warmup 4000)."""

    name: str = "adam"
    lr: float = 7e-4  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    weight_decay: float = 0.0
    decay_embeddings: bool = False  # nanoGPT/GPT-2 recipes decay embedding matrices too
    schedule: str = "inverse_sqrt"
    warmup_steps: int = 4000
    min_lr_ratio: float = 0.0
    lr_scales: dict[str, float] = field(default_factory=dict)  # parameter-name prefix -> lr multiplier


@dataclass
class Expected:
    """What running the recipe should give, where, and in how long."""

    metric: str = ""
    value: str = ""
    hardware: str = ""
    time: str = ""
    notes: str = ""  # how it was measured, baselines, shorter runs: what `formers recipes NAME` adds to the table


@dataclass
class Recipe:
    """A complete training setup."""

    name: str
    description: str = ""
    task: str = "translation"
    model: dict[str, Any] = field(default_factory=dict)  # {"name": registered model, **config overrides}
    data: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainerConfig = field(default_factory=TrainerConfig)
    expected: Expected = field(default_factory=Expected)


DATA_SOURCES: dict[str, tuple[str, ...]] = {
    "causal_lm": ("corpus", "text", "prepared"),
    "word2vec": ("corpus", "text", "prepared"),
    "text_classification": ("dataset", "train_file"),
    "token_classification": ("dataset", "train_file"),
}
"""Per task, the ``data`` keys of which a recipe gives exactly one: where its data comes from."""


def _builtin_dir() -> Path:
    return Path(str(resources.files("formers.recipes")))  # the YAML files beside this module


def list_recipes() -> dict[str, Recipe]:
    """Built-in recipes by name."""
    out = {}
    for path in sorted(_builtin_dir().glob("*.yaml")):
        recipe = from_dict(Recipe, load_file(path))
        out[recipe.name] = recipe
    return out


def load_recipe(name_or_path: str, overrides: dict[str, Any] | None = None) -> Recipe:
    """Loads a built-in recipe by name or a YAML/JSON file, then applies dotted ``overrides``.

    Raises:
        ValueError: unknown recipe name (listing the built-in ones) or malformed file.
        TypeError: unknown config keys.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise FileNotFoundError(f"recipe file {str(path)!r} does not exist")
        data = load_file(path)
        if isinstance(data, dict) and "name" not in data:
            data = {"name": path.stem, **data}  # a recipe file is named after itself unless it says otherwise
    else:
        builtin = _builtin_dir() / f"{name_or_path}.yaml"
        if not builtin.is_file():
            names = sorted(p.stem for p in _builtin_dir().glob("*.yaml"))
            raise ValueError(f"unknown recipe {name_or_path!r}; built-in recipes: {', '.join(names)} (or give a .yaml path)")
        data = load_file(builtin)
    recipe = from_dict(Recipe, data)
    if not overrides:
        return recipe
    # `--set data.text=my.txt` on a recipe that reads a built-in corpus means "this text instead": the override of
    # one data source replaces the recipe's other (a recipe file giving two still fails, in the task's setup).
    sources = DATA_SOURCES.get(str(overrides.get("task", recipe.task)), ())
    chosen = {k.removeprefix("data.") for k, v in overrides.items() if k.startswith("data.") and v is not None}
    if chosen & set(sources):
        recipe.data = {k: v for k, v in recipe.data.items() if k not in sources or k in chosen}
    return apply_overrides(recipe, overrides)


def dump_recipe(recipe: Recipe, path: Path) -> None:
    """Atomically writes the fully resolved recipe as YAML (the run's record of what was trained)."""
    with atomic_file(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(recipe), sort_keys=False), encoding="utf-8")


@dataclass
class RunSetup:
    """What a recipe's ``setup`` hands to the Trainer, and what it does once training ends.

    Attributes:
        model: the model to train.
        task: a :class:`formers.training.task.Task`.
        train_loader: an epoch loader (:class:`formers.training.task.EpochLoader`).
        eval_loader: what ``task.evaluate`` takes.
        extra_files: files saved beside every checkpoint (``{name: path}`` or a callback writing them).
        finalize: the end-of-run report: ``finalize(trainer) -> metrics`` (written to ``results.json``).
    """

    model: nn.Module
    task: Any
    train_loader: Any
    eval_loader: Any
    extra_files: Any
    finalize: Callable[[Trainer], dict[str, Any]]


def model_section(section: dict[str, Any]) -> dict[str, Any]:
    """Checks a registry ``model`` section (``name`` + config overrides) against the variant's config without
    building anything, and returns it with every config field filled in.

    Values the setup derives from the data later (vocabulary sizes, image size) keep the variant's defaults here.

    Raises:
        ValueError: no or an unknown ``name``, or a value the config refuses.
        TypeError: an unknown key (named ``model.<key>``) or a value of the wrong type.
    """
    if not isinstance(section, dict) or "name" not in section:
        raise ValueError("recipe section 'model' needs a 'name' (see `formers list-models`)")
    overrides = {k: v for k, v in section.items() if k != "name"}
    base = get_entry(section["name"]).make_config()
    names = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(
            f"unknown config key(s) {', '.join('model.' + k for k in unknown)} for model {section['name']!r} "
            f"({type(base).__name__}); valid keys: {', '.join(sorted(names))}"
        )
    return {"name": section["name"], **to_dict(create_config(section["name"], **overrides))}


def model_from_section(section: dict[str, Any], **derived: Any) -> nn.Module:
    """Builds ``section["name"]`` with the section's other keys and ``derived`` values (vocab sizes) as overrides."""
    if "name" not in section:
        raise ValueError("recipe section 'model' needs a 'name' (see `formers list-models`)")
    overrides = {k: v for k, v in section.items() if k != "name"}
    return create_model(section["name"], **{**derived, **overrides})
