"""The generic declarative key map: both directions, placeholders, transforms, strict errors."""

from __future__ import annotations

import pytest
import torch

from formers.interop.keymap import ROW_VECTOR, TRANSPOSE, KeyMap, KeyRule, check_keys

MAP = KeyMap(
    [
        ("embed.weight", "wte.weight"),
        ("layers.{i}.attn.q_proj.weight", "h.{i}.attn.c_q.weight"),
        KeyRule("layers.{i}.ffn.fc1.weight", "h.{i}.mlp.c_fc.weight", TRANSPOSE),
        KeyRule("output.bias", "final_logits_bias", ROW_VECTOR),
    ]
)


def _ours() -> dict[str, torch.Tensor]:
    return {
        "embed.weight": torch.randn(5, 4),
        "layers.0.attn.q_proj.weight": torch.randn(4, 4),
        "layers.12.attn.q_proj.weight": torch.randn(4, 4),
        "layers.0.ffn.fc1.weight": torch.randn(8, 4),
        "output.bias": torch.randn(5),
    }


def test_round_trip_with_placeholders_and_transforms() -> None:
    ours = _ours()
    theirs = MAP.to_theirs(ours)
    assert set(theirs) == {
        "wte.weight", "h.0.attn.c_q.weight", "h.12.attn.c_q.weight", "h.0.mlp.c_fc.weight", "final_logits_bias"
    }
    assert theirs["h.0.mlp.c_fc.weight"].shape == (4, 8)
    assert theirs["final_logits_bias"].shape == (1, 5)
    back = MAP.to_ours(theirs, expected=ours.keys())
    assert set(back) == set(ours)
    for k in ours:
        assert torch.equal(back[k], ours[k])


def test_unmapped_and_missing_keys_raise() -> None:
    with pytest.raises(KeyError, match="match no rule.*h.0.attn.c_k.weight"):
        MAP.to_ours({"h.0.attn.c_k.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="match no rule"):
        MAP.to_ours({"h.x.attn.c_q.weight": torch.zeros(1)})  # placeholders match integers only
    with pytest.raises(KeyError, match=r"missing keys \['output.bias'\]"):
        MAP.to_ours({"wte.weight": torch.zeros(1)}, expected=["embed.weight", "output.bias"])
    with pytest.raises(KeyError, match="unexpected keys"):
        check_keys({"a": torch.zeros(1)}, [], what="state")


def test_rules_need_matching_placeholders() -> None:
    with pytest.raises(ValueError, match="same placeholders"):
        KeyRule("layers.{i}.w", "h.w")


def test_ambiguous_rules_raise() -> None:
    with pytest.raises(KeyError, match="several rules"):
        KeyMap([("a.{i}", "x.{i}"), ("a.{j}", "y.{j}")]).to_theirs({"a.0": torch.zeros(1)})
