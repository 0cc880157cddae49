"""Registries: model families and variants, and the converters that read other libraries' formats.

One idiom for "which family is this": a model class carries its ``family`` name and its ``config_class``;
``@register_family`` on the class makes checkpoints of that family rebuildable, and ``@register_model(ModelClass)`` on
a zero-argument function returning a config registers a named variant. ``create_model`` applies the user's overrides
to that config (unknown names raise, listing the valid ones) and builds the family's model class.

Building is bounded: :func:`build_model` (used by ``create_model``, ``from_pretrained`` and the converters) first
builds the model on PyTorch's ``meta`` device, which allocates nothing, and refuses a config whose parameters and
buffers would exceed :data:`MAX_MODEL_ELEMENTS`, or the tighter bound a caller sets with :func:`size_limit` (a
converter's model may not be much bigger than the weight file it is loaded from).

Converters register themselves for the format they read: ``@register_converter("hf", "gpt2")`` for a Hugging Face
``model_type``, ``@register_converter("timm", "vit_")`` for a ``timm`` model-name prefix. The registrations happen
when the family and converter modules are imported, which importing ``formers`` does.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import fnmatch
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from formers.config import apply_overrides

MAX_MODEL_ELEMENTS = 2**34
"""Most parameter and buffer elements :func:`build_model` allocates (about 17 billion: 64 GiB in float32, ten times
GPT-2 XL). A config asking for more is refused before any memory is taken; raise it here for a bigger machine."""

_SIZE_LIMIT: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar("size_limit", default=None)


@contextlib.contextmanager
def size_limit(elements: int, reason: str) -> Iterator[None]:
    """Within this block :func:`build_model` refuses models of more than ``elements`` parameter and buffer elements.

    ``reason`` says where the bound comes from in the error (``"the weights in model.safetensors hold 1,234
    elements"``).
    """
    token = _SIZE_LIMIT.set((elements, reason))
    try:
        yield
    finally:
        _SIZE_LIMIT.reset(token)


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
_CONVERTERS: dict[str, dict[str, Callable[..., Any]]] = {"hf": {}, "timm": {}}

M = TypeVar("M", bound=type)


def register_family(model_cls: M) -> M:
    """Class decorator: registers ``model_cls`` under its ``family`` so checkpoints can be rebuilt from it.

    The class must define ``family`` (a unique name written into checkpoints) and ``config_class``.
    """
    family, config_cls = getattr(model_cls, "family", None), getattr(model_cls, "config_class", None)
    if not isinstance(family, str) or config_cls is None:
        raise TypeError(f"{model_cls.__name__} needs class attributes 'family' (str) and 'config_class'")
    if family in _FAMILIES and _FAMILIES[family][1] is not model_cls:
        raise ValueError(f"model family {family!r} is registered twice")
    _FAMILIES[family] = (config_cls, model_cls)
    return model_cls


def family_classes(family: str) -> tuple[type, type[nn.Module]]:
    """Returns ``(config_cls, model_cls)`` for a registered family name."""
    if family not in _FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known families: {sorted(_FAMILIES)}")
    return _FAMILIES[family]


def register_converter(source: str, key: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a converter of ``source`` (``"hf"`` or ``"timm"``) checkpoints keyed by ``key``.

    For ``"hf"`` the key is a ``model_type`` and the function is ``(hf_config, hf_state, source_path) ->
    (model, formers_state)``; for ``"timm"`` the key is a model-name prefix and the function is
    ``(model_name, state_dict, overrides) -> model``.
    """
    if source not in _CONVERTERS:
        raise ValueError(f"source must be one of {sorted(_CONVERTERS)}, got {source!r}")

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if key in _CONVERTERS[source]:
            raise ValueError(f"a {source} converter for {key!r} is registered twice")
        _CONVERTERS[source][key] = fn
        return fn

    return wrap


def converters(source: str) -> dict[str, Callable[..., Any]]:
    """The registered converters of ``source`` by key (a copy)."""
    return dict(_CONVERTERS[source])


def register_model(model_cls: type[nn.Module]) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorator registering a zero-argument function that returns a variant's config for ``model_cls``.

    The decorated function's name is the variant name; its docstring's first line is the description.
    """
    register_family(model_cls)

    def wrap(fn: Callable[[], Any]) -> Callable[[], Any]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelEntry(name, model_cls.family, fn, model_cls, doc[0] if doc else "")
        return fn

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Names of registered model variants matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def get_entry(name: str) -> ModelEntry:
    """Returns the registry entry of ``name``; raises ``ValueError`` listing close names when unknown."""
    if name not in _REGISTRY:
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
    return build_model(entry.model_cls, config)


def meta_model(model_cls: Callable[[Any], nn.Module], config: Any) -> nn.Module:
    """Builds ``model_cls(config)`` on the ``meta`` device: shapes and dtypes without memory.

    Raises:
        ValueError: its parameters and buffers hold more than :data:`MAX_MODEL_ELEMENTS` elements, or more than
            an enclosing :func:`size_limit` allows (naming the class, the count and the config's sizes); or the
            config gives a parameter an empty shape.
    """
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the real build warns again if it has to
        model = model_cls(config)
    empty = [name for name, p in model.named_parameters() if p.numel() == 0]
    if empty:
        shape = tuple(model.get_parameter(empty[0]).shape)
        raise ValueError(
            f"{getattr(model_cls, '__name__', model_cls)} with this config has empty parameters: {empty[0]} gets "
            f"shape {shape} (a size or ratio of the config rounds down to 0)"
        )
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    total = sum(t.numel() for t in tensors.values())
    limit, reason = MAX_MODEL_ELEMENTS, f"formers.registry.MAX_MODEL_ELEMENTS={MAX_MODEL_ELEMENTS:,}"
    if (tighter := _SIZE_LIMIT.get()) is not None and tighter[0] < limit:
        limit, reason = tighter
    if total > limit:
        sizes = {k: v for k, v in vars(config).items() if isinstance(v, (int, tuple)) and not isinstance(v, bool)}
        raise ValueError(
            f"{getattr(model_cls, '__name__', model_cls)} with this config holds {total:,} parameter and buffer "
            f"elements ({total * 4 / 2**30:,.1f} GiB in float32), more than {reason}; config sizes: {sizes}"
        )
    return model


def build_model(model_cls: Callable[[Any], nn.Module], config: Any) -> nn.Module:
    """``model_cls(config)``, after :func:`meta_model` has checked its size without allocating."""
    meta_model(model_cls, config)
    return model_cls(config)


def config_field_names(config: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(config)]
