"""word2vec's closed-form SGD update of a batch of examples as two fused Triton kernels: the CUDA fast path of
:meth:`formers.models.word2vec.Word2Vec.sgd_step_`, whose torch code is the readable reference (tests: equal to 1e-5).

An update of a thousand centre words is, in torch ops, about 25 small kernels that each write and re-read a
``(P, J, D)`` or ``(P, C, D)`` temporary; on a GPU their count and traffic set the speed. Here it is two kernels, one
program per example (``D`` in one block):

1. :func:`_score_kernel` reads the tables as they are on entry: the hidden vector ``h`` (the weighted sum of the
   example's input rows), each output row's logit ``u . h``, word2vec's ``g = alpha * (label - s(u . h))`` (zero for
   invalid terms and ``|u . h| >= MAX_EXP``), the error ``sum_j g_j u_j`` and the loss. It writes only ``h``, ``g``,
   the error and the loss.
2. :func:`_apply_kernel` then adds ``g_j * h`` to each output row and ``spread_c * error`` to each input row with
   atomic adds, as ``index_add_`` does, so every example's update is computed from the same tables and the updates
   sum: the closed form of the reference, up to the order of floating-point additions.

Kernels are compiled on first use (a second or so per table layout) and can be captured in CUDA graphs.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

try:  # the GPU wheels of torch ship Triton; CPU-only installs need not
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None


_disabled: str | None = None  # why the fused update was turned off for this process (a kernel failed to build)


def fused_update_available(device: torch.device) -> bool:
    """Whether :func:`fused_sgd_update_` can run on ``device`` (CUDA with Triton installed, not disabled)."""
    return triton is not None and device.type == "cuda" and _disabled is None


def disable_fused_update(reason: str) -> None:
    """Turns the fused update off for this process, with one warning (callers fall back to the torch update). A
    kernel fails to build on its first launch, before it writes anything."""
    global _disabled
    if _disabled is None:
        warnings.warn(f"word2vec's fused Triton update failed ({reason}); using the torch update instead",
                      stacklevel=3)
    _disabled = reason


if triton is not None:

    @triton.jit
    def _score_kernel(
        words, inputs, reading, table, ids, labels, valid, alpha, hidden, g_out, error, loss,
        C: tl.constexpr, J: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, WEIGHTED: tl.constexpr,
        FIRST: tl.constexpr, MAX_EXP: tl.constexpr,
    ):
        p = tl.program_id(0).to(tl.int64)
        d = tl.arange(0, BLOCK_D)
        dm = d < D
        h = tl.zeros([BLOCK_D], dtype=tl.float32)
        for c in tl.static_range(C):
            row = tl.load(inputs + p * C + c)
            v = tl.load(words + row * D + d, mask=dm, other=0.0)
            if WEIGHTED:
                v = v * tl.load(reading + p * C + c)
            h += v
        a = tl.load(alpha)
        e = tl.zeros([BLOCK_D], dtype=tl.float32)
        total = 0.0
        for j in tl.static_range(J):
            row = tl.load(ids + p * J + j)
            label = tl.load(labels + p * J + j)
            u = tl.load(table + row * D + d, mask=dm, other=0.0)
            x = tl.sum(u * h, axis=0)
            keep = (tl.load(valid + p * J + j) != 0) & (tl.abs(x) < MAX_EXP)
            g = tl.where(keep, a * (label - tl.sigmoid(x)), 0.0)
            y = (1.0 - 2.0 * label) * x  # binary cross-entropy of a 0/1 label: softplus((1 - 2 label) x)
            total += tl.where(keep, tl.maximum(y, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(y))), 0.0)
            e += g * u
            tl.store(g_out + p * J + j, g)
        tl.store(hidden + p * D + d, h, mask=dm)
        if FIRST:
            tl.store(error + p * D + d, e, mask=dm)
            tl.store(loss + p, total)
        else:
            tl.store(error + p * D + d, tl.load(error + p * D + d, mask=dm, other=0.0) + e, mask=dm)
            tl.store(loss + p, tl.load(loss + p) + total)

    @triton.jit
    def _apply_kernel(
        table, ids, g_in, hidden, words, inputs, spread, error,
        C: tl.constexpr, J: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, WEIGHTED: tl.constexpr,
        INPUTS: tl.constexpr,
    ):
        p = tl.program_id(0).to(tl.int64)
        d = tl.arange(0, BLOCK_D)
        dm = d < D
        h = tl.load(hidden + p * D + d, mask=dm, other=0.0)
        for j in tl.static_range(J):
            row = tl.load(ids + p * J + j)
            tl.atomic_add(table + row * D + d, tl.load(g_in + p * J + j) * h, mask=dm, sem="relaxed")
        if INPUTS:
            e = tl.load(error + p * D + d, mask=dm, other=0.0)
            for c in tl.static_range(C):
                row = tl.load(inputs + p * C + c)
                v = e
                if WEIGHTED:
                    v = e * tl.load(spread + p * C + c)
                tl.atomic_add(words + row * D + d, v, mask=dm, sem="relaxed")


def fused_sgd_update_(
    words: Tensor, inputs: Tensor, rows: list[tuple[Tensor, Tensor, Tensor, Tensor]], alpha: Tensor,
    reading: Tensor | None = None, spreading: Tensor | None = None,
) -> Tensor:
    """word2vec's update of ``P`` examples, in place; returns their ``(P,)`` losses before it.

    Args:
        words: ``(V, D)`` float32 input vectors, contiguous.
        inputs: ``(P, C)`` input rows of each example (skip-gram: ``C = 1``).
        rows: per output table ``(table (N, D), ids (P, J), labels (P, J) float 0/1, valid (P, J) bool)``.
        alpha: 0-d float32 tensor, the learning rate.
        reading: ``(P, C)`` weight of each input row in ``h`` (None: 1); spreading: ``(P, C)`` the share of the
            error each input row receives (None: 1). Both or neither.
    """
    for name, t in [("words", words), *((f"rows[{i}] table", r[0]) for i, r in enumerate(rows))]:
        if t.dtype != torch.float32 or not t.is_contiguous():  # the kernels address rows as ``row * D``
            raise ValueError(f"{name} must be a contiguous float32 tensor, got {t.dtype}"
                             f"{'' if t.is_contiguous() else ', not contiguous'}")
    num, width = inputs.shape
    dim = words.shape[1]
    block = triton.next_power_of_2(dim)
    weighted = reading is not None
    device = words.device
    hidden = torch.empty(num, dim, device=device, dtype=torch.float32)
    error = torch.empty_like(hidden)
    loss = torch.empty(num, device=device, dtype=torch.float32)
    inputs = inputs.contiguous()
    weights = (reading.contiguous(), spreading.contiguous()) if weighted else (inputs, inputs)  # unused pointers
    gs = []
    for k, (table, ids, labels, valid) in enumerate(rows):
        g = torch.empty(ids.shape, device=device, dtype=torch.float32)
        _score_kernel[(num,)](words, inputs, weights[0], table, ids.contiguous(), labels.contiguous(),
                              valid.contiguous(), alpha, hidden, g, error, loss, C=width, J=ids.shape[1], D=dim,
                              BLOCK_D=block, WEIGHTED=weighted, FIRST=k == 0, MAX_EXP=6.0, num_warps=1)
        gs.append(g)
    for k, ((table, ids, _, _), g) in enumerate(zip(rows, gs)):
        _apply_kernel[(num,)](table, ids.contiguous(), g, hidden, words, inputs, weights[1], error, C=width,
                              J=ids.shape[1], D=dim, BLOCK_D=block, WEIGHTED=weighted, INPUTS=k == len(rows) - 1,
                              num_warps=1)
    return loss
