"""Every family's Config checks every field (``formers.config.check_fields`` in its ``__post_init__``), so a config
from an untrusted ``config.json``, from ``create_model`` overrides or built directly fails the same way: a
``ValueError``/``TypeError`` naming the field, its range and the value, before anything is allocated.

Parametrized over the registered families: a new family's Config that declares an ``int`` without a range, or does
not call ``check_fields``, fails here with a message saying what to add.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import pytest

import formers  # noqa: F401  (registers the families)
from formers.config import MAX_WIDTH, Between
from formers.registry import (
    MAX_MODEL_ELEMENTS,
    create_config,
    create_model,
    get_entry,
    list_models,
)


def _families() -> dict[str, str]:
    """Family name -> its first registered variant."""
    out: dict[str, str] = {}
    for name in list_models():
        out.setdefault(get_entry(name).family, name)
    return out


FAMILIES = _families()


def _fields(config_cls: type) -> dict[str, typing.Any]:
    hints = typing.get_type_hints(config_cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def _bounds(tp: typing.Any) -> tuple[type, Between | None, bool]:
    """(base type, its Between or None, whether it is a tuple of them) of an annotation, Optional unwrapped."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, type(int | None)):
        return _bounds(next(a for a in args if a is not type(None)))
    if origin is tuple:
        base, bound, _ = _bounds(args[0])
        return base, bound, True
    if origin is typing.Annotated:
        return args[0], next((m for m in args[1:] if isinstance(m, Between)), None), False
    return tp, None, False


def _cases(family: str) -> list[tuple[str, typing.Any, type, str]]:
    """(field, bad value, expected error, message pattern) for every numeric field of ``family``'s Config."""
    config = create_config(FAMILIES[family])
    cases = []
    for name, tp in _fields(type(config)).items():
        base, bound, is_tuple = _bounds(tp)
        current = getattr(config, name)

        def put(value, current=current, is_tuple=is_tuple):
            return (*current[:-1], value) if is_tuple else value

        if base is int:
            assert bound is not None, f"{type(config).__name__}.{name} is an int without a range: annotate it (Count, Width...)"
            cases += [(name, put(int(bound.high) + 1), ValueError, r"must be in"),
                      (name, put(int(bound.low) - 1), ValueError, r"must be in"),
                      (name, put(True), TypeError, r"int"),
                      (name, put(2.5), TypeError, r"int")]
        elif base is float:
            cases += [(name, put(float("nan")), ValueError, "finite"), (name, put(float("inf")), ValueError, "finite")]
            if bound is not None:
                cases.append((name, put(bound.high + 1), ValueError, r"must be in"))
    return cases


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_numeric_field_is_checked_by_the_config_itself(family):
    config = create_config(FAMILIES[family])
    cases = _cases(family)
    assert cases
    for name, value, error, pattern in cases:
        with pytest.raises(error, match=pattern) as info:
            dataclasses.replace(config, **{name: value})
        assert name in str(info.value), (name, value, str(info.value))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_create_model_with_bad_overrides_fails_the_same_way(family):
    for name, value, error, pattern in _cases(family):
        with pytest.raises(error) as info:
            create_model(FAMILIES[family], **{name: value})
        assert name in str(info.value), (name, value, str(info.value))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_config_bomb_is_refused_before_allocating(family):
    """A config within every field's range can still ask for more memory than a host has: the model is built on
    the meta device first and refused by size (quickly, without allocating)."""
    config = create_config(FAMILIES[family])
    fields = {f.name for f in dataclasses.fields(config)}
    widths = {name: 2**18 for name in ("embed_dim", "inner_dim", "ffn_dim", "key_dim", "hidden_dim") if name in fields}
    if hasattr(config, "embed_dims"):
        widths["embed_dims"] = (2**18,) * len(config.embed_dims)
    heads = {"num_heads": 1, "decoder_num_heads": None, "inner_num_heads": 1}
    overrides = {**widths, **{k: v for k, v in heads.items() if hasattr(config, k)}}
    if "vocab_size" in fields:  # word2vec: two vocab_size x embed_dim tables are all it holds
        overrides["vocab_size"] = 2**22
    if isinstance(getattr(config, "num_heads", None), tuple):  # Swin: the width doubles at every stage
        overrides["num_heads"] = (1,) * len(config.num_heads)
        overrides["embed_dim"] = MAX_WIDTH // 2 ** (len(config.depths) - 1)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="MAX_MODEL_ELEMENTS") as info:
        create_model(FAMILIES[family], **overrides)
    assert time.perf_counter() - start < 60
    assert f"{MAX_MODEL_ELEMENTS:,}" in str(info.value)


def test_ten_to_the_ninth_layers_is_refused_at_once():
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"num_layers must be in \[1, 1024\], got 1000000000"):
        create_model("gpt2", num_layers=10**9)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("gpt2", {"activation": "swish?"}, "activation must be one of"),
        ("transformer_tiny", {"activation": "nope"}, "activation must be one of"),
        ("transformer_tiny", {"num_heads": 7}, r"embed_dim \(\d+\) must be divisible by num_heads \(7\)"),
        ("transformer_tiny", {"decoder_num_heads": 7}, r"divisible by decoder_num_heads \(7\)"),
        ("vit_micro_patch8_32", {"mlp_ratio": 1e-3}, "empty MLP"),
        ("swin_tiny_cpu", {"mlp_ratio": 1e-3}, "empty parameters"),
    ],
)
def test_relations_between_fields_are_checked(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, **overrides)
