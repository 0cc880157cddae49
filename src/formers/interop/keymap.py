"""Declarative, invertible maps between formers state-dict names and another library's checkpoint names.

A :class:`KeyMap` is a list of rules ``(ours, theirs)``; both sides are patterns whose ``{name}`` placeholders
(``{i}`` for a layer index) stand for non-negative integers and must appear on both sides. The same rules
convert a state dict in either direction. Special cases that are more than a rename (a bias stored as (1, V),
a Conv1D weight stored transposed) attach a :class:`Transform`, a pair of mutually inverse tensor functions.

Conversion is strict: a key that no rule matches, or a key matched by two rules, raises a ``KeyError`` naming
it; with ``expected`` keys given, missing and unexpected results raise too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Transform:
    """Tensor conversion attached to a rule: ``to_theirs`` and its inverse ``to_ours``."""

    to_theirs: Callable[[Tensor], Tensor]
    to_ours: Callable[[Tensor], Tensor]


# A (V,) vector stored as a (1, V) row (Hugging Face's ``final_logits_bias``).
ROW_VECTOR = Transform(
    to_theirs=lambda t: t.reshape(1, -1),  # (V,) -> (1, V)
    to_ours=lambda t: t.reshape(-1),  # (1, V) -> (V,)
)
# A Linear (out, in) weight stored as (in, out) (GPT-2's ``Conv1D``).
TRANSPOSE = Transform(
    to_theirs=lambda t: t.t().contiguous(),  # (out, in) -> (in, out)
    to_ours=lambda t: t.t().contiguous(),  # (in, out) -> (out, in)
)


@dataclass(frozen=True)
class KeyRule:
    """One name correspondence; ``transform`` (optional) converts the tensor as well."""

    ours: str
    theirs: str
    transform: Transform | None = None

    def __post_init__(self) -> None:
        if sorted(_PLACEHOLDER.findall(self.ours)) != sorted(_PLACEHOLDER.findall(self.theirs)):
            raise ValueError(f"key rule {self.ours!r} <-> {self.theirs!r}: both sides need the same placeholders")


def _compile(pattern: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(pattern)  # literal, name, literal, name, ..., literal
    regex = "".join(re.escape(p) if k % 2 == 0 else f"(?P<{p}>\\d+)" for k, p in enumerate(parts))
    return re.compile(regex + r"\Z")


class KeyMap:
    """Bidirectional renaming of state dicts by a list of :class:`KeyRule` (or ``(ours, theirs)`` tuples).

    Args:
        rules: the correspondences; a key must match exactly one rule on its side.
    """

    def __init__(self, rules: Sequence[KeyRule | tuple[str, str]]) -> None:
        self.rules = [r if isinstance(r, KeyRule) else KeyRule(*r) for r in rules]
        self._ours = [_compile(r.ours) for r in self.rules]
        self._theirs = [_compile(r.theirs) for r in self.rules]

    def to_theirs(self, state: Mapping[str, Tensor], expected: Iterable[str] | None = None) -> dict[str, Tensor]:
        """Converts a formers state dict to the foreign names (and tensor layouts)."""
        return self._convert(state, self._ours, to_theirs=True, expected=expected)

    def to_ours(self, state: Mapping[str, Tensor], expected: Iterable[str] | None = None) -> dict[str, Tensor]:
        """Converts a foreign state dict to formers names (and tensor layouts)."""
        return self._convert(state, self._theirs, to_theirs=False, expected=expected)

    def _convert(
        self,
        state: Mapping[str, Tensor],
        sources: list[re.Pattern[str]],
        to_theirs: bool,
        expected: Iterable[str] | None,
    ) -> dict[str, Tensor]:
        side = "formers" if to_theirs else "foreign"
        out: dict[str, Tensor] = {}
        unmapped = []
        for key, tensor in state.items():
            hits = [(rule, m) for rule, src in zip(self.rules, sources) if (m := src.match(key))]
            if not hits:
                unmapped.append(key)
                continue
            if len(hits) > 1:
                raise KeyError(f"{side} key {key!r} matches several rules: {[h[0] for h in hits]}")
            rule, match = hits[0]
            target = (rule.theirs if to_theirs else rule.ours).format(**match.groupdict())
            if rule.transform is not None:
                tensor = rule.transform.to_theirs(tensor) if to_theirs else rule.transform.to_ours(tensor)
            out[target] = tensor
        if unmapped:
            raise KeyError(f"{len(unmapped)} {side} key(s) match no rule of the key map: {sorted(unmapped)[:8]}")
        if expected is not None:
            check_keys(out, expected, what="converted state dict")
        return out


def check_keys(state: Mapping[str, Tensor], expected: Iterable[str], what: str) -> None:
    """Raises a ``KeyError`` listing the missing and unexpected keys of ``state`` against ``expected``."""
    expected = set(expected)
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise KeyError(f"{what}: missing keys {missing[:8]}, unexpected keys {unexpected[:8]}")
