from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from formers.layers import IGNORE_INDEX, cross_entropy
from formers.layers.cross_entropy import _CrossEntropy


def reference(logits: torch.Tensor, targets: torch.Tensor, num_classes: int, reduction: str = "mean"):
    """F.cross_entropy on float32 (float64 stays) logits cut to the real classes, with its gradient."""
    x = logits.detach().clone().requires_grad_()
    wide = torch.promote_types(x.dtype, torch.float32)
    loss = F.cross_entropy(x[:, :num_classes].to(wide), targets, reduction=reduction)
    loss.backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("recompute", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_equals_f_cross_entropy_with_padded_columns_and_ignored_rows(dtype, reduction, recompute):
    torch.manual_seed(0)
    logits = (3 * torch.randn(37, 70)).to(dtype).requires_grad_()
    targets = torch.randint(0, 61, (37,))
    targets[[3, 10, 11]] = IGNORE_INDEX
    targets[0], targets[1] = 0, 60  # the first and the last real class
    expected, expected_grad = reference(logits, targets, 61, reduction)
    loss = cross_entropy(logits, targets, num_classes=61, reduction=reduction, recompute=recompute)
    assert loss.dtype == torch.promote_types(dtype, torch.float32)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-5)
    (0.7 * loss).backward()
    assert logits.grad.dtype == dtype
    tol = {"rtol": 1.6e-2, "atol": 1e-5} if dtype == torch.bfloat16 else {"rtol": 1e-5, "atol": 1e-7}  # bf16 rounding
    torch.testing.assert_close(logits.grad.float(), 0.7 * expected_grad.float(), **tol)
    assert torch.count_nonzero(logits.grad[:, 61:]) == 0  # alignment columns learn nothing
    assert torch.count_nonzero(logits.grad[[3, 10, 11]]) == 0  # ignored rows neither


def test_gradient_is_exact_in_float64():
    targets = torch.tensor([1, 2, IGNORE_INDEX, 0, 4])
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: cross_entropy(x, targets, 5, recompute=True), (x,))
    assert torch.autograd.gradcheck(lambda x: cross_entropy(x, targets, 5, reduction="sum", recompute=True), (x,))


def test_all_rows_ignored_gives_nan_like_f_cross_entropy():
    logits = torch.randn(4, 5)
    targets = torch.full((4,), IGNORE_INDEX)
    assert torch.isnan(cross_entropy(logits, targets, recompute=True)) and torch.isnan(F.cross_entropy(logits, targets))
    assert cross_entropy(logits, targets, reduction="sum", recompute=True).item() == 0.0


def test_bad_arguments_raise_clear_errors():
    logits = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"logits must be \(N, R\), got shape \(2, 2, 8\)"):
        cross_entropy(logits.view(2, 2, 8), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets must be \(4,\) for logits \(4, 8\), got \(3,\)"):
        cross_entropy(logits, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class indices, got dtype torch.float32"):
        cross_entropy(logits, torch.zeros(4))
    with pytest.raises(ValueError, match=r"num_classes must be in \[1, 8\].*got 9"):
        cross_entropy(logits, torch.zeros(4, dtype=torch.long), num_classes=9)
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum', got 'none'"):
        cross_entropy(logits, torch.zeros(4, dtype=torch.long), reduction="none")
    with pytest.raises(ValueError, match=r"targets holds class 6, outside \[0, 6\) and not ignore_index=-100"):
        cross_entropy(logits, torch.tensor([0, 6, 1, IGNORE_INDEX]), num_classes=6)  # 6 is an alignment column
    with pytest.raises(ValueError, match=r"targets holds class -2"):
        cross_entropy(logits, torch.tensor([0, -2, 1, 1]))


def test_compiled_equals_eager(monkeypatch):
    """Compiled calls take the recomputing path by default (checked by the counter), eager ones F.cross_entropy."""
    torch.manual_seed(1)
    logits = torch.randn(16, 40, requires_grad=True)
    targets = torch.randint(0, 33, (16,))
    targets[5] = IGNORE_INDEX
    eager = cross_entropy(logits, targets, num_classes=33)
    (g_eager,) = torch.autograd.grad(eager, logits)
    calls = []
    original = _CrossEntropy.forward

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(_CrossEntropy, "forward", staticmethod(counted))
    cross_entropy(logits, targets, num_classes=33)
    assert not calls  # eager: F.cross_entropy
    compiled = torch.compile(lambda x, y: cross_entropy(x, y, num_classes=33), dynamic=False)(logits, targets)
    (g_compiled,) = torch.autograd.grad(compiled, logits)
    assert calls  # traced through the recomputing function
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(g_compiled, g_eager)
