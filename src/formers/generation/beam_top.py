"""A beam step's candidates: each beam's best 2K next tokens with their log-probabilities, in plain torch or one
Triton kernel.

Beam search keeps, per sentence, the 2K best of ``score[beam] + log_softmax(logits[beam])[token]`` over its K beams
and V tokens (:func:`beam_candidates`). Those 2K are among the 2K best of each beam's own row (a candidate beaten by
2K others in its row is beaten by them overall), and log-softmax keeps a row's order, so each row is cut to its top
2K first and only the survivors become log-probabilities, ``logit - logsumexp(row)``. :func:`row_top_reference`
does that cut in torch (a float32 copy, a ``topk`` and a ``logsumexp`` over the row); :func:`row_top_kernel` reads
the logits once, in their own dtype, with a program per row that keeps a running top-2K and an online logsumexp (the
banned ids masked on the way), and writes only the (rows, 2K) results. In a captured beam-4 step of the
``multi30k-en-de`` model the candidate selection it replaces took about 165 of 727 us (a float32 copy, the
log-softmax, the scores' addition and a ``topk`` over (B, K * V): ``benchmarks/results/beam_cross_kernel_h100.json``).

The kernel orders a row's best by value, then by lower token id; :func:`verify_row_top` checks it once per CUDA
device against the reference (same tokens, log-probabilities within 1e-5) before beam search uses it; a
failure warns once and the reference serves there. The CPU and other devices use the reference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from formers.layers.decode_attention import UNAVAILABLE, triton
from formers.layers.kernel_checks import checked_once

BLOCK = 1024  # logits a program reads per iteration

if triton is not None:
    import triton.language as tl

    @triton.jit
    def beam_top_kernel(
        x_ptr, s_x, banned_ptr, n_banned, logp_ptr, tok_ptr, vocab,
        W: tl.constexpr, WP: tl.constexpr, NB: tl.constexpr, BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        inf = float("inf")
        big = 2147483647
        lane = tl.arange(0, WP)  # the running top W (WP: a power of two >= W; lanes past W never change)
        real = lane < W
        top_v = tl.where(real, -inf, inf)  # padded lanes hold +inf: never the smallest, never replaced
        top_i = tl.where(real, big - lane, 0)  # unfilled lanes: distinct ids above any real one
        jb = tl.arange(0, NB)
        banned = tl.load(banned_ptr + jb, mask=jb < n_banned, other=-1)
        m = tl.max(tl.full([2], -inf, tl.float32), axis=0)  # running max and sum of exp(x - max): the logsumexp
        s = tl.sum(tl.zeros([2], tl.float32), axis=0)
        for start in range(0, vocab, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * s_x + offs, mask=offs < vocab, other=-inf).to(tl.float32)
            hit = tl.max((offs[:, None] == banned[None, :]).to(tl.int32), axis=1)
            x = tl.where(hit > 0, -inf, x)
            new_m = tl.maximum(m, tl.max(x, axis=0))
            shift = tl.where(new_m == -inf, 0.0, new_m)  # a row all -inf so far: exp(-inf) = 0, no nan
            s = s * tl.exp(m - shift) + tl.sum(tl.exp(x - shift), axis=0)
            m = new_m
            # the block's values above the running W-th best, best first (lower id first on ties), replace the
            # smallest kept one (the highest id among equal smallest ones): the kept set is the top W by
            # (value, then lower id) of everything read so far
            n = tl.minimum(tl.sum((x > tl.min(top_v, axis=0)).to(tl.int32), axis=0), W)
            for _ in range(n):
                best = tl.max(x, axis=0)
                at = tl.min(tl.where(x == best, offs, big), axis=0)
                low = tl.min(top_v, axis=0)
                slot = tl.max(tl.where(top_v == low, top_i, -1), axis=0)
                replace = (top_v == low) & (top_i == slot) & (top_v < best)  # (vectors only: the interpreter)
                top_v = tl.where(replace, best, top_v)
                top_i = tl.where(replace, at, top_i)
                x = tl.where(offs == at, -inf, x)
        lse = m + tl.log(s)
        for r in tl.static_range(W):  # written out best first, lower id first on ties
            best = tl.max(tl.where(real, top_v, -inf), axis=0)
            at = tl.min(tl.where(real & (top_v == best), top_i, big), axis=0)
            tl.store(logp_ptr + row * W + r, best - lse)
            tl.store(tok_ptr + row * W + r, tl.where(best == -inf, 0, at).to(tl.int64))  # -inf: no choice, id 0
            gone = real & (top_v == best) & (top_i == at)
            top_v = tl.where(gone, -inf, top_v)
            top_i = tl.where(gone, big, top_i)


def _masked_float(logits: Tensor, banned: Tensor | None) -> Tensor:
    """``logits`` in float32 with the ``banned`` ids at -inf, set on the float32 copy where there is one."""
    x = logits.float()
    if banned is None:
        return x
    return x.index_fill(1, banned, float("-inf")) if x is logits else x.index_fill_(1, banned, float("-inf"))


def row_top_reference(logits: Tensor, banned: Tensor | None, width: int) -> tuple[Tensor, Tensor]:
    """Each row's ``width`` best tokens and their log-probabilities, in plain torch (the readable definition).

    Args:
        logits: (R, V) any float dtype.
        banned: ids that can never be chosen (set to -inf), or None.
        width: how many per row (<= V).

    Returns:
        ``(logp, tokens)``: (R, width) float32 log-softmax values, best first, and their (R, width) long ids.
    """
    x = _masked_float(logits, banned)
    values, tokens = x.topk(width, dim=-1)
    return values - torch.logsumexp(x, dim=-1, keepdim=True), tokens


def row_top_kernel(logits: Tensor, banned: Tensor | None, width: int) -> tuple[Tensor, Tensor]:
    """:func:`row_top_reference` in one Triton kernel, a program per row; same tokens (ties: lower id first)."""
    rows, vocab = logits.shape
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    if banned is None:
        banned = torch.empty(0, dtype=torch.long, device=logits.device)
    logp = torch.empty(rows, width, dtype=torch.float32, device=logits.device)
    tokens = torch.empty(rows, width, dtype=torch.long, device=logits.device)
    beam_top_kernel[(rows,)](
        logits, logits.stride(0), banned, banned.numel(), logp, tokens, vocab,
        W=width, WP=triton.next_power_of_2(width), NB=max(2, triton.next_power_of_2(banned.numel())), BLOCK=BLOCK,
    )
    return logp, tokens


def beam_candidates(
    logits: Tensor, scores: Tensor, k: int, banned: Tensor | None = None, kernel: bool = False
) -> tuple[Tensor, Tensor]:
    """A beam step's 2K best continuations per sentence: scores + log-softmax(logits), top 2K over K * V.

    Args:
        logits: (B * K, V) the beams' next-token logits (any float dtype).
        scores: (B, K) float32 running log-probabilities of the beams (-inf: a dead beam).
        k: beams per sentence.
        banned: ids never chosen (-inf), or None.
        kernel: cut the rows with :func:`row_top_kernel` (CUDA, once :func:`verify_row_top` passed) instead of
            :func:`row_top_reference`.

    Returns:
        ``(top_scores, top_idx)``: (B, 2K) float32 candidate scores, best first, and their (B, 2K) indices into the
        flattened (K, V) candidates (beam * V + token). The eager and static searches both call this, so they choose
        alike.
    """
    b, vocab = scores.shape[0], logits.shape[-1]
    width = min(2 * k, vocab)
    logp, tokens = (row_top_kernel if kernel else row_top_reference)(logits, banned, width)  # (B*K, W) each
    candidates = (scores.reshape(b * k, 1) + logp).view(b, k * width)  # (B, K*W)
    top_scores, pos = candidates.topk(min(2 * k, k * width), dim=1)  # (B, 2K) positions in the K*W candidates
    top_tokens = tokens.view(b, k * width).gather(1, pos)
    return top_scores, torch.div(pos, width, rounding_mode="floor") * vocab + top_tokens


def check_cases(device: torch.device) -> list[tuple[str, Tensor, Tensor | None, int]]:
    """(name, logits, banned, width) covering the kernel's branches: several blocks and a partial one, banned ids in
    and out of the top, rows with fewer finite values than the width, tied values, float32 and bfloat16 (whose values
    here are distinct, so the reference's order is the kernel's)."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for rows, vocab, width in [(3, 2 * BLOCK + 37, 8), (5, 37, 4), (2, 9, 8), (1, 3 * BLOCK, 10), (4, 5, 2)]:
        x = torch.randn(rows, vocab, generator=g, dtype=torch.float64).float() * 4
        banned = torch.tensor([0, int(x[0].argmax())])  # the first row's best is banned
        cases.append((f"{rows}x{vocab} top {width}", x, banned, width))
    few = torch.full((2, 40), float("-inf"))
    few[0, [3, 17, 30]] = torch.tensor([1.0, 2.0, 0.5])
    cases.append(("fewer finite values than the width", few, None, 6))
    tied = torch.randn(3, 300, generator=g).round()  # integers: many ties, the width cuts through them
    cases.append(("ties", tied, torch.tensor([5]), 8))
    distinct = (torch.randperm(255, generator=g)[None, :] - 127).float() / 8  # exact in bfloat16
    cases.append(("bfloat16", torch.cat([distinct, distinct.flip(1)]).bfloat16(), torch.tensor([7, 8]), 8))
    return [(name, x.to(device), None if banned is None else banned.to(device), w) for name, x, banned, w in cases]


def canonical(logits: Tensor, banned: Tensor | None, width: int) -> tuple[Tensor, Tensor]:
    """:func:`row_top_reference` with ties ordered as the kernel orders them, by value and then lower id (a stable
    descending sort), and the ids of -inf values, which carry no choice, as 0."""
    x = _masked_float(logits, banned)
    order = torch.sort(x, dim=1, descending=True, stable=True).indices[:, :width]
    values = x.gather(1, order)
    order = torch.where(values.isfinite(), order, 0)
    return values - torch.logsumexp(x, dim=-1, keepdim=True), order


def first_mismatch(device: torch.device) -> str | None:
    """Runs :func:`row_top_kernel` against the reference on :func:`check_cases`; the first difference, or None."""
    for name, x, banned, width in check_cases(device):
        want_logp, want_tok = canonical(x, banned, width)
        logp, tok = row_top_kernel(x, banned, width)
        if not torch.equal(tok, want_tok):
            return f"{name}: tokens {tok.tolist()} against {want_tok.tolist()}"
        finite = want_logp.isfinite()
        if not torch.equal(logp.isfinite(), finite) or not torch.allclose(logp[finite], want_logp[finite], rtol=1e-5,
                                                                           atol=1e-5):
            return f"{name}: log-probabilities differ by {float((logp - want_logp)[finite].abs().max()):.3g}"
    return None


VERIFIED: dict[tuple, bool] = {}
"""(CUDA device index,) -> whether :func:`row_top_kernel` reproduced the reference there."""


def verify_row_top(device: torch.device) -> bool:
    """Checks the kernel once per CUDA device (:func:`first_mismatch`; called before a search is captured, never
    inside); a failure warns once and the reference serves there."""
    return checked_once(VERIFIED, device, first_mismatch, UNAVAILABLE, triton is not None,
                        "the one-kernel beam candidates", "beam search uses the plain-torch candidates there")
