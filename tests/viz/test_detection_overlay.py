from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")
PIL = pytest.importorskip("PIL.Image")

from formers.viz.detection import draw_detections, save_image  # noqa: E402


def test_boxes_are_drawn_on_their_outline_only(tmp_path):
    image = torch.zeros(3, 60, 80, dtype=torch.uint8)
    drawn = draw_detections(image, torch.tensor([[10.0, 10, 50, 40]]), [1], [0.9], ["cat", "dog"])
    assert drawn.shape == image.shape and drawn.dtype == torch.uint8 and not image.any()  # the input is untouched
    changed = drawn.any(0)  # (H, W)
    assert changed[10, 10:50].all() and changed[10:40, 10].all()  # the outline
    assert changed[11:22, 12:48].any()  # the caption, inside the top-left corner
    assert not changed[25:38, 12:48].any() and not changed[45:, :].any()  # nothing else inside, nothing below
    path = save_image(drawn, tmp_path / "out" / "boxes.png")
    assert np.array_equal(np.asarray(PIL.open(path)), drawn.permute(1, 2, 0).numpy())
    assert torch.equal(draw_detections(image, torch.zeros(0, 4), []), image)
    with pytest.raises(ValueError, match="1 boxes but 2 labels"):
        draw_detections(image, torch.tensor([[1.0, 1, 5, 5]]), [0, 1])
