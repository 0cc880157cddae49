from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

from formers.layers import IGNORE_INDEX, linear_cross_entropy, logits_cross_entropy
from formers.layers.linear_cross_entropy import _LinearCrossEntropy

TOLERANCES = {torch.float32: {"rtol": 1e-5, "atol": 1e-5}, torch.float64: {"rtol": 1e-10, "atol": 1e-10}}


def reference(hidden, weight, bias, targets, num_classes, smoothing, reduction="mean"):
    """F.cross_entropy of the full logits cut to the real classes, and the gradients of hidden, weight and bias."""
    leaves = [t.detach().clone().requires_grad_() for t in (hidden, weight)]
    leaves.append(bias.detach().clone().requires_grad_() if bias is not None else None)
    logits = F.linear(leaves[0], leaves[1], leaves[2])[:, :num_classes]
    loss = F.cross_entropy(logits, targets, label_smoothing=smoothing, reduction=reduction)
    inputs = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(loss, inputs)
    return loss.detach(), list(grads)


def check(n, d, rows, num_classes, chunk_size, smoothing, dtype, with_bias, ignored, reduction="mean", seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=gen, dtype=dtype).requires_grad_()
    weight = torch.randn(rows, d, generator=gen, dtype=dtype).requires_grad_()
    bias = torch.randn(rows, generator=gen, dtype=dtype).requires_grad_() if with_bias else None
    targets = torch.randint(0, num_classes, (n,), generator=gen)
    targets[ignored] = IGNORE_INDEX
    expected, expected_grads = reference(hidden, weight, bias, targets, num_classes, smoothing, reduction)
    loss = linear_cross_entropy(hidden, weight, targets, bias=bias, num_classes=num_classes,
                                label_smoothing=smoothing, reduction=reduction, chunk_size=chunk_size)
    inputs = [t for t in (hidden, weight, bias) if t is not None]
    grads = torch.autograd.grad(loss, inputs)
    assert loss.dtype == dtype
    torch.testing.assert_close(loss, expected, equal_nan=True, **TOLERANCES[dtype])
    for grad, want in zip(grads, expected_grads):
        assert grad.dtype == dtype
        torch.testing.assert_close(grad, want, **TOLERANCES[dtype])
    assert torch.count_nonzero(grads[1][num_classes:]) == 0  # padded rows learn nothing
    again, nll = linear_cross_entropy(hidden, weight, targets, bias=bias, num_classes=num_classes,
                                      label_smoothing=smoothing, reduction=reduction, chunk_size=chunk_size,
                                      return_nll=True)
    logits = F.linear(hidden, weight, bias)[:, :num_classes].detach()
    expected_nll = F.cross_entropy(logits, targets, reduction=reduction)
    assert not nll.requires_grad
    torch.testing.assert_close(again, loss, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(nll, expected_nll, equal_nan=True, **TOLERANCES[dtype])
    return loss


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 12),
    num_classes=st.integers(1, 30),
    padding=st.integers(0, 5),
    chunk_size=st.integers(1, 50),
    smoothing=st.sampled_from([0.0, 0.1]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    with_bias=st.booleans(),
    reduction=st.sampled_from(["mean", "sum"]),
    data=st.data(),
)
def test_equals_f_cross_entropy_of_the_full_logits(n, d, num_classes, padding, chunk_size, smoothing, dtype,
                                                   with_bias, reduction, data):
    ignored = data.draw(st.lists(st.integers(0, n - 1), max_size=n), label="ignored rows")
    if len(set(ignored)) == n and reduction == "mean":
        ignored = ignored[1:]  # the all-ignored mean (NaN) has its own test
    check(n, d, num_classes + padding, num_classes, chunk_size, smoothing, dtype, with_bias, ignored, reduction,
          seed=n * 1000 + d)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_an_all_ignored_batch_is_nan_or_zero_with_zero_gradients_as_f_cross_entropy(smoothing, reduction):
    loss = check(7, 4, 12, 10, 3, smoothing, torch.float32, True, list(range(7)), reduction)
    assert torch.isnan(loss) if reduction == "mean" else loss == 0


def test_a_chunk_size_not_dividing_n_and_one_larger_than_n_give_the_same_loss():
    losses = [check(23, 6, 20, 17, chunk, 0.1, torch.float64, False, [2, 5]) for chunk in (5, 23, 64)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-12, atol=0)
    torch.testing.assert_close(losses[0], losses[2], rtol=1e-12, atol=0)


def test_gradcheck_in_float64():
    torch.manual_seed(0)
    hidden = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(7, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 5, IGNORE_INDEX, 2, 5])
    for smoothing, mean in ((0.0, True), (0.1, True), (0.1, False)):

        def loss(h, w, b, smoothing=smoothing, mean=mean):
            return _LinearCrossEntropy.apply(h, w, b, targets, 6, IGNORE_INDEX, smoothing, mean, 2)[0]

        assert torch.autograd.gradcheck(loss, (hidden, weight, bias))


def test_bf16_autocast_runs_the_gemms_in_bf16_and_matches_the_autocast_reference():
    torch.manual_seed(0)
    hidden = torch.randn(64, 16, requires_grad=True)
    weight = torch.randn(40, 16, requires_grad=True)
    targets = torch.randint(0, 37, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(hidden, weight, targets, num_classes=37, label_smoothing=0.1, chunk_size=16)
        logits = F.linear(hidden, weight)[:, :37].float()
    expected = F.cross_entropy(logits, targets, label_smoothing=0.1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)  # same bf16 logits, float32 softmax
    grads = torch.autograd.grad(loss, (hidden, weight))
    expected_grads = torch.autograd.grad(expected, (hidden, weight))
    for grad, want in zip(grads, expected_grads):
        assert grad.dtype == torch.float32
        torch.testing.assert_close(grad, want, rtol=2e-2, atol=2e-3)  # bf16 rounding of the gradient GEMMs


class PeakBytes(TorchDispatchMode):
    """Live-bytes accounting: the peak total of the storages that ops made and that are still alive after each op."""

    def __init__(self):
        super().__init__()
        self.live, self.peak = {}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                self.live.setdefault(storage.data_ptr(), (StorageWeakRef(storage), storage.nbytes()))
        self.live = {ptr: (ref, size) for ptr, (ref, size) in self.live.items() if not ref.expired()}
        self.peak = max(self.peak, sum(size for _, size in self.live.values()))
        return out


def test_peak_memory_is_set_by_the_chunk_not_by_n_times_v():
    n, d, rows = 2048, 4, 256
    hidden = torch.randn(n, d, requires_grad=True)
    weight = torch.randn(rows, d, requires_grad=True)
    targets = torch.randint(0, 250, (n,))
    peaks = {}
    for chunk in (32, 128):
        with PeakBytes() as peak:
            linear_cross_entropy(hidden, weight, targets, num_classes=250, label_smoothing=0.1,
                                 chunk_size=chunk).backward()
        peaks[chunk] = peak.peak
    with PeakBytes() as full:
        F.cross_entropy(F.linear(hidden, weight)[:, :250], targets, label_smoothing=0.1).backward()
    logits_bytes = n * rows * 4  # one float32 (N, V) tensor
    assert full.peak >= 2 * logits_bytes  # the measure sees the logits and their log-softmax
    assert peaks[32] < logits_bytes / 4  # less than a quarter of one (N, V) tensor, at any moment
    assert peaks[128] - peaks[32] >= 96 * rows * 4  # what grows with the chunk is the chunk's logits


def test_bad_arguments_name_the_argument():
    hidden, weight, targets = torch.randn(4, 3), torch.randn(6, 3), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"weight must be \(R, 3\)"):
        linear_cross_entropy(hidden, torch.randn(6, 2), targets)
    with pytest.raises(ValueError, match=r"targets must be \(4,\)"):
        linear_cross_entropy(hidden, weight, targets[:3])
    with pytest.raises(ValueError, match=r"num_classes must be in \[1, 6\]"):
        linear_cross_entropy(hidden, weight, targets, num_classes=7)
    with pytest.raises(ValueError, match=r"targets holds class 5, outside \[0, 5\)"):
        linear_cross_entropy(hidden, weight, torch.tensor([0, 5, 1, 1]), num_classes=5)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.0"):
        linear_cross_entropy(hidden, weight, targets, label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"chunk_size must be a positive int, got 0"):
        linear_cross_entropy(hidden, weight, targets, chunk_size=0)
    with pytest.raises(ValueError, match=r"reduction must be 'mean' or 'sum', got 'none'"):
        linear_cross_entropy(hidden, weight, targets, reduction="none")
    with pytest.raises(TypeError, match=r"hidden and weight must have one dtype"):
        linear_cross_entropy(hidden.double(), weight, targets)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_logits_cross_entropy_equals_the_chunked_loss_and_nll(smoothing):
    torch.manual_seed(0)
    hidden, weight = torch.randn(2, 9, 5, dtype=torch.float64), torch.randn(11, 5, dtype=torch.float64)
    targets = torch.randint(0, 11, (2, 9))
    targets[1, 4:] = IGNORE_INDEX
    loss, nll = logits_cross_entropy(hidden @ weight.t(), targets, label_smoothing=smoothing)
    expected = linear_cross_entropy(hidden.flatten(0, 1), weight, targets.flatten(), label_smoothing=smoothing,
                                    chunk_size=4, return_nll=True)
    torch.testing.assert_close((loss, nll), expected, rtol=1e-12, atol=1e-12)
    assert not nll.requires_grad


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cuda_bf16_matches_the_full_logits_and_peaks_at_a_fraction_of_their_memory(smoothing):
    n, d, rows, classes = 8192, 256, 32768, 32700  # full float32 logits: 1 GiB
    gen = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn(n, d, device="cuda", generator=gen, requires_grad=True)
    weight = (0.05 * torch.randn(rows, d, device="cuda", generator=gen)).requires_grad_()
    targets = torch.randint(0, classes, (n,), device="cuda", generator=gen)
    targets[::7] = IGNORE_INDEX
    results = {}
    for name in ("full", "chunked"):
        hidden.grad = weight.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if name == "full":
                logits = F.linear(hidden, weight)[:, :classes].float()
                loss = F.cross_entropy(logits, targets, label_smoothing=smoothing)
                del logits
            else:
                loss = linear_cross_entropy(hidden, weight, targets, num_classes=classes, label_smoothing=smoothing,
                                            chunk_size=1024)
        loss.backward()
        torch.cuda.synchronize()
        results[name] = (loss.detach(), hidden.grad.clone(), weight.grad.clone(),
                         torch.cuda.max_memory_allocated() - base)
    (loss, gh, gw, peak), (ref, rgh, rgw, ref_peak) = results["chunked"], results["full"]
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-4)  # the same bf16 logits, float32 softmax
    for grad, want in ((gh, rgh), (gw, rgw)):  # both cast the float32 softmax gradient to bf16 for the GEMMs
        assert ((grad - want).norm() / want.norm()).item() < 1e-2
    assert peak < ref_peak / 4, (peak, ref_peak)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_compiled_path_gives_the_chunked_loss_nll_and_gradients(monkeypatch, smoothing, reduction):
    """``OutputProjection.cross_entropy`` under torch.compile (plain scores + loss) equals its eager chunked path."""
    from formers.layers.embedding import OutputProjection

    torch.manual_seed(0)
    head = OutputProjection(embed_dim=8, vocab_size=11, num_rows=16).double()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    targets = torch.randint(0, 11, (3, 5))
    targets[0, :2] = IGNORE_INDEX
    results = []
    for compiling in (False, True):
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda compiling=compiling: compiling)
        head.zero_grad()
        xi = x.clone().requires_grad_()
        loss, nll = head.cross_entropy(xi, targets, label_smoothing=smoothing, reduction=reduction, chunk_size=4,
                                       return_nll=True)
        loss.backward()
        results.append((loss.detach(), nll, xi.grad, head.weight.grad.clone()))
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-10, atol=1e-12)
