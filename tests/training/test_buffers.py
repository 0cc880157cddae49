"""BufferSnapshot: the copy of a model's buffers that a skipped step puts back, refreshed and selected per dtype."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from formers.training.buffers import BufferSnapshot


class Mixed(nn.Module):
    """Buffers of three dtypes (BatchNorm's float statistics and int64 counter, a float16 scale, a 0-dim value)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(5)
        self.register_buffer("scale", torch.arange(6, dtype=torch.float16).view(2, 3))
        self.register_buffer("level", torch.tensor(2.5))
        self.register_buffer("nothing", None)


def _values(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def _disturb(m: Mixed) -> None:
    m.train()
    m.norm(torch.randn(8, 5, generator=torch.Generator().manual_seed(1)))  # running stats and counter move
    m.scale.mul_(3)
    m.level.fill_(float("nan"))


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k].nan_to_num(7), b[k].nan_to_num(7)), k


def test_a_kept_step_keeps_every_buffer_and_a_skipped_one_puts_every_buffer_back_exactly() -> None:
    m = Mixed()
    snap = BufferSnapshot(m)
    before = _values(m)
    _disturb(m)
    after = _values(m)
    assert not torch.equal(after["norm.running_mean"], before["norm.running_mean"])
    snap.select(torch.tensor(True))
    _assert_same(_values(m), after)
    snap.take()
    _disturb(m)
    snap.select(torch.tensor(False))
    _assert_same(_values(m), after)  # the NaN level and the tripled scale are gone again
    assert m.norm.num_batches_tracked.item() == 1 and m.level.dtype == torch.float32


def test_select_writes_into_the_module_own_tensors_and_restore_equals_a_skipped_select() -> None:
    m = Mixed()
    snap = BufferSnapshot(m)
    before = _values(m)
    ids = [id(b) for b in m.buffers()]
    _disturb(m)
    snap.restore()
    _assert_same(_values(m), before)
    assert [id(b) for b in m.buffers()] == ids


def test_a_buffer_replaced_by_the_forward_pass_is_selected_into_the_new_tensor_or_rescanned_at_take() -> None:
    m = Mixed()
    snap = BufferSnapshot(m)
    m.scale = torch.full((2, 3), 9.0, dtype=torch.float16)  # same shape and dtype, a new tensor
    assert snap.replaced()
    snap.select(torch.tensor(False))
    assert torch.equal(m.scale, torch.arange(6, dtype=torch.float16).view(2, 3))
    m.level = torch.tensor(4.0, dtype=torch.float64)  # another dtype: selected one by one, cast as copy_ does
    snap.select(torch.tensor(False))
    assert m.level.dtype == torch.float64 and m.level.item() == 2.5
    snap.take()  # the replaced tensors are tracked from now on
    assert not snap.replaced()
    m.level.fill_(1.0)
    snap.select(torch.tensor(False))
    assert m.level.item() == 2.5


def test_a_buffer_that_changed_shape_cannot_be_selected() -> None:
    m = Mixed()
    snap = BufferSnapshot(m)
    m.scale = torch.zeros(4, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"buffer 'scale' changed shape from \(2, 3\) to \(4,\)"):
        snap.select(torch.tensor(True))


def test_a_model_without_buffers_costs_nothing() -> None:
    snap = BufferSnapshot(nn.Linear(2, 2))
    snap.take()
    snap.select(torch.tensor(False))
    snap.restore()
    assert not snap.replaced()
