"""Config dataclasses <-> dict / JSON / YAML, with dotted overrides (``--set model.num_layers=6``).

Unknown keys always raise, listing the valid ones: a typo in a config must never be silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Converts a JSON/YAML/CLI value to the annotated field type, raising a clear error when impossible."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise TypeError(f"config key {key!r}: expected {tp}, got {value!r}")
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value] if inner is not Any and inner is not Ellipsis else list(value)
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, dict):
        return dict(value)
    if tp is Any or origin is typing.Literal:
        if origin is typing.Literal and value not in args:
            raise ValueError(f"config key {key!r}: expected one of {list(args)}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise TypeError(f"config key {key!r}: expected a bool, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise TypeError(f"config key {key!r}: expected an int, got {value!r}")
        if isinstance(value, float) and not value.is_integer():
            raise TypeError(f"config key {key!r}: expected an int, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise TypeError(f"config key {key!r}: expected an int, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise TypeError(f"config key {key!r}: expected a float, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise TypeError(f"config key {key!r}: expected a float, got {value!r}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise TypeError(f"config key {key!r}: expected a string, got {value!r}")
        return str(value)
    return value


def _check_keys(cls: type, data: dict[str, Any], prefix: str) -> None:
    """Raises ``TypeError`` naming unknown keys of ``data`` and listing the valid fields of ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TypeError(
            f"unknown config key(s) {', '.join(prefix + u for u in unknown)} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(names))}"
        )


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Builds dataclass ``cls`` from ``data``; unknown keys raise ``TypeError`` listing the valid ones."""
    if not isinstance(data, dict):
        raise TypeError(f"config {prefix or cls.__name__}: expected a mapping, got {type(data).__name__}")
    _check_keys(cls, data, prefix)
    hints = _field_types(cls)
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (tuples become lists), suitable for JSON."""
    def convert(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: convert(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        return v

    return convert(config)


def apply_overrides(config: T, overrides: dict[str, Any]) -> T:
    """Returns a copy of dataclass ``config`` with ``overrides`` (possibly dotted, ``a.b=1``) applied."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        d = nested
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise TypeError(f"override {key!r} conflicts with another override of {p!r}")
        d[parts[-1]] = value
    return _merge(config, nested, prefix="")


def _merge(config: Any, updates: dict[str, Any], prefix: str) -> Any:
    _check_keys(type(config), updates, prefix)
    hints = _field_types(type(config))
    changes = {}
    for k, v in updates.items():
        current = getattr(config, k)
        if dataclasses.is_dataclass(current) and isinstance(v, dict):
            changes[k] = _merge(current, v, prefix + k + ".")
        elif isinstance(current, dict) and isinstance(v, dict):
            # free-form sections (a recipe's model/data) are merged key by key; their owner validates them
            changes[k] = {**current, **v}
        else:
            changes[k] = _coerce(v, hints[k], prefix + k)
    return dataclasses.replace(config, **changes)


def parse_set_args(items: list[str]) -> dict[str, Any]:
    """Parses ``["a.b=1", "c=[1,2]"]`` into ``{"a.b": 1, "c": [1, 2]}`` (values read as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not p.isidentifier() for p in key.split(".")):
            raise ValueError(f"--set: malformed key {key!r} in {item!r}; expected dotted identifiers like model.embed_dim")
        out[key] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """Reads a YAML or JSON config file into a dict."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping at the top level, got {type(data).__name__}")
    return data
