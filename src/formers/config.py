"""Config dataclasses <-> dict / JSON / YAML, with dotted overrides (``--set model.num_layers=6``), and their checks.

Unknown keys always raise, listing the valid ones: a typo in a config must never be silently ignored. A config may
come from an untrusted ``config.json``, so every field is checked against its annotation (:func:`check_fields`): the
type (an ``int`` is not a ``bool``, a ``float`` is finite), ``Literal`` choices and a :class:`Between` range. The
size aliases below (``Count``, ``Width``, ``VocabSize``...) give each concept one range, generous enough for any
published model and small enough that ``num_layers=10**9`` is refused before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import stat
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

T = TypeVar("T")

MAX_ITEMS = 1024
"""Most entries a list or tuple field of a config may hold (stages, per-stage depths)."""
MAX_FILE_BYTES = 2**26
"""Largest YAML/JSON config file :func:`load_file` reads (64 MiB)."""
MAX_NODES = 10**6
"""Most values (mappings, lists, scalars, counted every time an alias repeats them) a config file may expand to."""


@dataclasses.dataclass(frozen=True)
class Between:
    """The range a config field must lie in, stated in its annotation: ``Annotated[int, Between(1, 1024)]``.

    ``low_open``/``high_open`` exclude the bound itself (dropout is in ``[0, 1)``, an epsilon in ``(0, 1]``).
    """

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


MAX_LAYERS = 1024
"""Most blocks a model may stack (per ``num_*_layers`` field, and over all stages of a ``depths`` tuple)."""
MAX_WIDTH = 2**18
"""Widest feature dimension (any stage of any family)."""

# One range per concept (the names of the house style's table), shared by every family's Config.
Count = Annotated[int, Between(1, MAX_LAYERS)]  # layers, heads, blocks per stage
Width = Annotated[int, Between(1, MAX_WIDTH)]  # embed_dim, ffn_dim, channels, key_dim
VocabSize = Annotated[int, Between(1, 2**22)]  # token and token-type vocabularies
TokenId = Annotated[int, Between(0, 2**22 - 1)]  # pad/bos/eos ids; families check them against their vocabulary
SeqLen = Annotated[int, Between(1, 2**20)]  # max_seq_len
Pixels = Annotated[int, Between(1, 2**14)]  # image_size, patch_size, window_size, strides, pooling sizes
NumClasses = Annotated[int, Between(0, 2**22)]  # classifier outputs (0: no head)
Probability = Annotated[float, Between(0.0, 1.0, high_open=True)]  # dropout, drop_path_rate
Epsilon = Annotated[float, Between(0.0, 1.0, low_open=True)]  # layer_norm_eps
Ratio = Annotated[float, Between(0.0, 1024.0, low_open=True)]  # mlp_ratio, attn_ratio


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _annotated_field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_fields(config: Any) -> None:
    """Checks every field of dataclass ``config`` against its annotation; call it first in ``__post_init__``.

    An ``int`` field holds an int (not a bool, not 2.5), a ``float`` field a finite number, a ``bool`` a bool, a
    ``Literal`` one of its choices, a ``tuple[X, ...]`` at most :data:`MAX_ITEMS` entries of ``X``, and an
    ``Annotated[..., Between(low, high)]`` field a value in that range.

    Raises:
        TypeError: a value of the wrong type, naming the field, the expected type and the value.
        ValueError: a value out of range, naming the field, the range and the value.
    """
    cls = type(config)
    for name, tp in _annotated_field_types(cls).items():
        _check_value(getattr(config, name), tp, f"{cls.__name__}.{name}")


def _check_value(value: Any, tp: Any, key: str) -> None:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        _check_value(value, args[0], key)
        for bound in args[1:]:
            if isinstance(bound, Between) and value not in bound:
                raise ValueError(f"{key} must be in {bound}, got {value!r}")
        return
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        options = [a for a in args if a is not type(None)]
        errors: list[Exception] = []
        for option in options:
            try:
                return _check_value(value, option, key)
            except (TypeError, ValueError) as e:
                errors.append(e)
        if len(errors) == 1:
            raise type(errors[0])(f"{errors[0]}{' (or None)' if type(None) in args else ''}")
        raise TypeError(f"{key} must be one of {tp}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{key} must be one of {list(args)}, got {value!r}")
        return
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{key} must be a list of values, got {value!r}")
        if len(value) > MAX_ITEMS:
            raise ValueError(f"{key} may hold at most {MAX_ITEMS} entries, got {len(value)}")
        inner = args[0] if args else Any
        if len(args) > 1 and args[1] is not Ellipsis:  # a fixed-length tuple[X, Y]
            if len(value) != len(args):
                raise ValueError(f"{key} must hold {len(args)} entries, got {len(value)}")
            for i, (v, a) in enumerate(zip(value, args)):
                _check_value(v, a, f"{key}[{i}]")
            return
        for i, v in enumerate(value):
            _check_value(v, inner, f"{key}[{i}]")
        return
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{key} must be a mapping, got {type(value).__name__}")
        return
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{key} must be true or false, got {value!r}")
        return
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{key} must be an int, got {value!r}")
        return
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{key} must be a number, got {value!r}")
        if not isinstance(value, numbers.Integral) and not math.isfinite(value):
            raise ValueError(f"{key} must be finite, got {value!r}")
        return
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"{key} must be a string, got {value!r}")
        return


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
        if len(value) > MAX_ITEMS:
            raise ValueError(f"config key {key!r}: at most {MAX_ITEMS} entries, got {len(value)}")
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
        out[key] = _parse_yaml(raw, f"--set {item!r}") if raw.strip() else ""
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """Reads a YAML or JSON config file into a dict.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming the file, when it is not a regular file (a FIFO, a device), larger than
            :data:`MAX_FILE_BYTES`, not UTF-8, malformed (with the line and column), nested too deeply, expanding
            to more than :data:`MAX_NODES` values through aliases, or not a mapping at the top level.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {str(path)!r} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"config file {path} is not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise ValueError(f"config file {path} is {info.st_size:,} bytes; a config may hold at most {MAX_FILE_BYTES:,}")
    try:
        text = path.read_bytes()[: MAX_FILE_BYTES + 1].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"config file {path} is not UTF-8 text: {e}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError(f"config file {path} is nested too deeply") from None
        except ValueError as e:
            raise ValueError(f"config file {path} is not valid JSON: {e}") from None
    else:
        data = _parse_yaml(text, f"config file {path}")
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _parse_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` with its errors as one-line ``ValueError``s naming ``source``, and aliases bounded."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        where = f" at line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1}" if e.problem_mark else ""
        raise ValueError(f"{source} is not valid YAML{where}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{source} is not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ValueError(f"{source} is nested too deeply") from None
    _count_nodes(data, source)
    return data


def _count_nodes(data: Any, source: str) -> None:
    """Raises when ``data`` expands to more than :data:`MAX_NODES` values (a YAML alias bomb shares one list
    a billion times; walking it expanded, as every reader does, would never end)."""
    budget, stack = MAX_NODES, [data]
    while stack:
        budget -= 1
        if budget < 0:
            raise ValueError(f"{source} expands to more than {MAX_NODES:,} values (through YAML aliases?)")
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
