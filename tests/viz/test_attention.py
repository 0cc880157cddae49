"""Attention pictures: the rollout and window geometry they draw are checked against hand computations; every plot
writes a PNG and refuses shapes that do not match its labels."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from formers.layers.windows import cyclic_shift, pad_to_windows, window_partition
from formers.viz.attention import (
    attention_rollout,
    plot_alignment,
    plot_heads,
    plot_image_attention,
    plot_object_attention,
    plot_window_attention,
    window_attention_map,
)


def _rows(*shape: int) -> torch.Tensor:
    return torch.rand(*shape).softmax(-1)


def test_rollout_multiplies_the_residual_mixed_layers_from_the_first_up() -> None:
    torch.manual_seed(0)
    a1, a2 = _rows(1, 2, 3, 3), _rows(1, 2, 3, 3)
    mix = lambda a: (0.5 * a.mean(1) + 0.5 * torch.eye(3)) / (0.5 * a.mean(1) + 0.5 * torch.eye(3)).sum(-1, keepdim=True)
    rollout = attention_rollout([a1, a2])
    torch.testing.assert_close(rollout, mix(a2) @ mix(a1))
    torch.testing.assert_close(rollout.sum(-1), torch.ones(1, 3))
    torch.testing.assert_close(attention_rollout([a1], "max")[0], (0.5 * a1.amax(1) + 0.5 * torch.eye(3))[0]
                               / (0.5 * a1.amax(1) + 0.5 * torch.eye(3))[0].sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        attention_rollout([a1], "sum")
    with pytest.raises(ValueError, match="at least one layer"):
        attention_rollout([])


@pytest.mark.parametrize("shift", [(0, 0), (1, 1)])
def test_window_map_puts_each_token_back_where_the_partition_took_it(shift) -> None:
    h, w, ws = 5, 7, 3  # padded to 6 x 9: 2 x 3 windows
    values = torch.rand(h, w)
    x = pad_to_windows(values[None, :, :, None], (ws, ws))  # (1, 6, 9, 1)
    if shift != (0, 0):
        x = cyclic_shift(x, shift)
    per_token = window_partition(x, (ws, ws))[..., 0]  # (nW, N): the value each window slot holds
    weights = per_token[:, None, :].expand(-1, ws * ws, -1)  # every query of a window gives each key its value
    layout = dict(window_size=(ws, ws), windows=(2, 3), shift_size=shift, map_size=(h, w))
    torch.testing.assert_close(window_attention_map(weights, layout), values)
    with pytest.raises(ValueError, match=r"weights must be \(6, 9, 9\)"):
        window_attention_map(weights[:5], layout)


def test_every_plot_writes_a_png_and_checks_its_shapes(tmp_path) -> None:
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8)
    written = [
        plot_alignment(_rows(4, 3), ["a", "b", "c"], ["w", "x", "y", "z"], tmp_path / "align.png", "t"),
        plot_heads(_rows(3, 4, 4), list("abcd"), list("abcd"), tmp_path / "heads.png"),
        plot_image_attention(image[:1], torch.rand(3, 4), tmp_path / "image.png"),
        plot_window_attention(image, torch.rand(5, 7), dict(window_size=(3, 3), windows=(2, 3), shift_size=(1, 1),
                                                            map_size=(5, 7)), tmp_path / "windows.png"),
        plot_object_attention(image, torch.rand(2, 3, 4), torch.tensor([[0, 0, 10, 10], [5, 5, 30, 20.0]]),
                              ["cat 0.9", "dog 0.8"], tmp_path / "sub" / "objects.png"),
    ]
    for path in written:
        with Image.open(path) as png:
            assert png.format == "PNG" and png.width > 100
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(p.name for p in written)  # no tmp
    with pytest.raises(ValueError, match=r"weights must be \(4, 2\)"):
        plot_alignment(_rows(4, 3), ["a", "b"], list("wxyz"), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="head_names must name the 3 heads"):
        plot_heads(_rows(3, 4, 4), list("abcd"), list("abcd"), tmp_path / "bad.png", head_names=["h0"])
    with pytest.raises(ValueError, match="image must be"):
        plot_image_attention(image.float(), torch.rand(3, 4), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="must agree"):
        plot_object_attention(image, torch.rand(2, 3, 4), torch.zeros(1, 4), ["a", "b"], tmp_path / "bad.png")
