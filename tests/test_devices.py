"""formers.devices: moving batches, and capturing CUDA graphs without a device synchronisation per capture."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch

from formers.devices import light_capture, move_to_device


def test_move_to_device_walks_nested_batches_and_leaves_other_values_alone() -> None:
    Pair = namedtuple("Pair", "a b")
    batch = {"x": torch.ones(2), "rows": [Pair(torch.zeros(1), 3)], "name": "n"}
    moved = move_to_device(batch, torch.device("cpu"))
    assert torch.equal(moved["x"], batch["x"]) and moved["name"] == "n"
    assert isinstance(moved["rows"][0], Pair) and moved["rows"][0].b == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_light_capture_replays_what_it_captured_and_can_share_a_pool() -> None:
    x = torch.arange(4.0, device="cuda")
    y = torch.zeros(4, device="cuda")
    x.add_(1)  # queued work on the current stream that the capture must come after
    first = torch.cuda.CUDAGraph()
    with light_capture(first):
        y.copy_(x * 2)
    assert torch.equal(y, torch.zeros(4, device="cuda"))  # captured, not run
    first.replay()
    assert y.tolist() == [2.0, 4.0, 6.0, 8.0]
    second = torch.cuda.CUDAGraph()
    with light_capture(second, pool=first.pool()):
        y.copy_(x + 10)
    x.fill_(0)
    second.replay()
    assert y.tolist() == [10.0] * 4
    first.replay()
    assert y.tolist() == [0.0] * 4
