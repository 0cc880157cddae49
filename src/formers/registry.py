"""Model registry: ``register_model`` / ``create_model(name, **overrides)`` / ``list_models(pattern)``.

Every registered variant is a function returning a family ``Config``; ``create_model`` applies the user's
overrides to that config (unknown names raise, listing the valid ones) and builds the family's model class.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from formers.config import apply_overrides


@dataclass(frozen=True)
class ModelEntry:
    """One registered variant: its name, family, config factory and model class."""

    name: str
    family: str
    make_config: Callable[[], Any]
    model_cls: type[nn.Module]
    description: str


_REGISTRY: dict[str, ModelEntry] = {}
_FAMILIES: dict[str, tuple[type, type[nn.Module]]] = {}


def register_family(family: str, config_cls: type, model_cls: type[nn.Module]) -> None:
    """Registers a family's config and model classes so checkpoints can be rebuilt from ``family``."""
    _FAMILIES[family] = (config_cls, model_cls)


def family_classes(family: str) -> tuple[type, type[nn.Module]]:
    """Returns ``(config_cls, model_cls)`` for a registered family name."""
    _import_families()
    if family not in _FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known families: {sorted(_FAMILIES)}")
    return _FAMILIES[family]


def register_model(family: str, model_cls: type[nn.Module]) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorator registering a zero-argument function that returns a variant's config.

    The decorated function's name is the variant name; its docstring's first line is the description.
    """

    def wrap(fn: Callable[[], Any]) -> Callable[[], Any]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelEntry(name, family, fn, model_cls, doc[0] if doc else "")
        return fn

    return wrap


def _import_families() -> None:
    # Importing the model package registers every family (import side effect, done once).
    import formers.models  # noqa: F401


def list_models(pattern: str = "*") -> list[str]:
    """Names of registered model variants matching a shell-style ``pattern``, sorted."""
    _import_families()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def get_entry(name: str) -> ModelEntry:
    """Returns the registry entry of ``name``; raises ``ValueError`` listing close names when unknown."""
    _import_families()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else f" Known models: {', '.join(sorted(_REGISTRY))}"
        raise ValueError(f"unknown model name {name!r}.{hint}")
    return _REGISTRY[name]


def create_config(name: str, **overrides: Any) -> Any:
    """Returns the config of variant ``name`` with ``overrides`` applied (unknown keys raise)."""
    entry = get_entry(name)
    return apply_overrides(entry.make_config(), overrides)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Builds registered model ``name`` with config ``overrides``.

    Args:
        name: a name from :func:`list_models`, e.g. ``"transformer_base"``.
        **overrides: config fields to change, e.g. ``num_encoder_layers=2``. Unknown names raise a
            ``TypeError`` listing the valid ones.
    """
    entry = get_entry(name)
    config = create_config(name, **overrides)
    return entry.model_cls(config)


def config_field_names(config: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(config)]
