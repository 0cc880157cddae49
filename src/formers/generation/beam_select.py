"""A beam-search step's bookkeeping after its top-2K candidates, on the device: the plain-torch reference and one
Triton kernel.

Given each sentence's 2K best candidates (scores and flat indices), the bookkeeping picks the K surviving beams
(skipping eos), records hypotheses that end (eos ones by rank, then the beams cut at the limit), keeps each sentence's
best finished one, marks sentences done and reorders the beams' token histories. In plain torch that is about 80
small kernels, each a few microseconds on a GPU whatever its size, of the 242 in a captured ``transformer_base`` beam
step (``benchmarks/results/beam_reorder_h200.json``). :func:`select_kernel` does all of it in one
Triton kernel, a program per sentence, with the same arithmetic (float32 scores, float64 length-penalty division,
first maximum on ties), so its decisions are the reference's; :func:`verify_select_kernel` checks that once per CUDA
device before :class:`~formers.generation.seq2seq._DeviceBeam` uses it.

Both read and write the buffers of a search object (``_DeviceBeam``): ``scores`` (B, K) float32, ``history``
(B*K, T) long, ``limits`` (B,) long, ``penalty`` (T+1,) float64, ``best_score`` (B,) float64, ``best_hyp`` (B, T) long,
``best_len``, ``num_finished`` (B,) long, ``done`` (B,) bool, ``token`` (B*K, 1) long, ``count`` () long (the step;
not advanced here), and ``k``, ``eos``, ``pad``.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor

from formers.layers.decode_attention import UNAVAILABLE, triton
from formers.layers.kernel_checks import checked_once

if triton is not None:
    import triton.language as tl

    @triton.jit
    def beam_select_kernel(
        top_scores_ptr, top_idx_ptr, scores_ptr, token_ptr, history_ptr, best_hyp_ptr, best_score_ptr,
        best_len_ptr, num_finished_ptr, done_ptr, limits_ptr, penalty_ptr, count_ptr, rows_ptr,
        s_history, s_best, vocab, eos, pad, width,
        K: tl.constexpr, C: tl.constexpr, KP: tl.constexpr, TP: tl.constexpr,
    ):
        b = tl.program_id(0).to(tl.int64)
        rank = tl.arange(0, C)  # candidates, 2K of them (C: a power of two >= 2K)
        inside = rank < 2 * K
        inf = float("-inf")
        score = tl.load(top_scores_ptr + b * 2 * K + rank, mask=inside, other=inf)  # (C,) float32
        index = tl.load(top_idx_ptr + b * 2 * K + rank, mask=inside, other=0)
        beam, tok = index // vocab, index % vocab
        active = tl.load(done_ptr + b).to(tl.int32) == 0
        valid = (score > inf) & active & inside
        is_eos = tok == eos
        ended = valid & is_eos & (rank < K)  # an eos outside the top K would not have survived as a beam
        live_candidate = valid & (tok != eos)
        position = tl.cumsum(live_candidate.to(tl.int32), axis=0) - 1  # index among the live candidates
        kept = live_candidate & (position < K)
        live = tl.sum(kept.to(tl.int64), axis=0)

        j = tl.arange(0, KP)  # new beams (KP: a power of two >= K)
        match = kept[None, :] & (position[None, :] == j[:, None])  # (KP, C): the candidate that becomes beam j
        found = tl.sum(match.to(tl.int32), axis=1) > 0
        new_score = tl.max(tl.where(match, score[None, :], inf), axis=1)  # (KP,)
        new_beam = tl.sum(tl.where(match, beam[None, :], 0), axis=1)
        new_tok = tl.where(found, tl.sum(tl.where(match, tok[None, :], 0), axis=1), pad)

        # Hypotheses ending here: the first best of [eos ones by rank, beams cut at the limit by rank] replaces the
        # running best only if strictly better.
        step = tl.load(count_ptr)
        at_limit = (step + 1 >= tl.load(limits_ptr + b)) & active
        scaled = score.to(tl.float64) / tl.load(penalty_ptr + step + 1)
        from_eos_scores = tl.where(ended, scaled, inf)
        at_limit_scores = tl.where(kept & at_limit, scaled, inf)
        best_eos, best_cut = tl.max(from_eos_scores, axis=0), tl.max(at_limit_scores, axis=0)
        from_eos = best_eos >= best_cut
        best = tl.where(from_eos, best_eos, best_cut)
        which = tl.where(from_eos, tl.argmax(from_eos_scores, axis=0, tie_break_left=True),
                         tl.argmax(at_limit_scores, axis=0, tie_break_left=True))
        improve = best > tl.load(best_score_ptr + b)
        source = b * K + tl.sum(tl.where(rank == which, beam, 0), axis=0)  # the row of its prefix
        last_tok = tl.sum(tl.where(rank == which, tok, 0), axis=0)

        col = tl.arange(0, TP)
        in_row = col < width
        hyp = tl.load(history_ptr + source * s_history + col, mask=in_row, other=0)
        rows = b * K + new_beam  # (KP,) surviving beams
        own = j < K
        moved = tl.load(history_ptr + rows[:, None] * s_history + col[None, :], mask=own[:, None] & in_row[None, :],
                        other=0)  # (KP, TP) the survivors' histories, read before any row is rewritten
        tl.debug_barrier()
        hyp = tl.where(col == step, last_tok, hyp)  # an eos hypothesis stops before this column
        improve_row = improve.to(tl.int32) != 0  # (a scalar boolean & a vector fails in Triton's interpreter)
        tl.store(best_hyp_ptr + b * s_best + col, hyp, mask=in_row & improve_row)
        tl.store(best_len_ptr + b, step + (~from_eos).to(tl.int64), mask=improve)
        tl.store(best_score_ptr + b, best, mask=improve)
        finished = tl.load(num_finished_ptr + b) + tl.sum(ended.to(tl.int64), axis=0) + tl.where(at_limit, live, 0)
        tl.store(num_finished_ptr + b, finished)
        # As fairseq: a sentence is done once K hypotheses have ended.
        done = (~active) | at_limit | (active & (live == 0)) | (finished >= K)
        tl.store(done_ptr + b, done.to(tl.int1))
        moved = tl.where(col[None, :] == step, new_tok[:, None], moved)
        tl.store(history_ptr + (b * K + j)[:, None] * s_history + col[None, :], moved,
                 mask=own[:, None] & in_row[None, :])
        tl.store(token_ptr + b * K + j, new_tok, mask=own)
        tl.store(scores_ptr + b * K + j, new_score, mask=own)
        tl.store(rows_ptr + b * K + j, rows, mask=own)


def select_reference(search, top_scores: Tensor, top_idx: Tensor, vocab: int) -> Tensor:
    """The bookkeeping in plain torch (the readable definition). Returns the surviving beams' rows (B*K,)."""
    b, k, inf, device = search.scores.shape[0], search.k, float("-inf"), top_scores.device
    beam, tok = top_idx // vocab, top_idx % vocab
    active = ~search.done[:, None]  # (B, 1)
    valid = (top_scores > inf) & active
    is_eos = tok == search.eos
    rank = torch.arange(2 * k, device=device)[None, :]
    ended = valid & is_eos & (rank < k)  # an eos outside the top K would not have survived as a beam
    live_candidate = valid & ~is_eos
    position = live_candidate.long().cumsum(dim=1) - 1  # (B, 2K) index among the live candidates
    kept = live_candidate & (position < k)
    live = kept.sum(dim=1)  # (B,)
    slot = torch.where(kept, position, k)  # (B, 2K); column K collects the rest and is dropped
    new_scores = torch.full((b, k + 1), inf, device=device).scatter(1, slot, top_scores)[:, :k]
    new_beam = torch.zeros(b, k + 1, dtype=torch.long, device=device).scatter(1, slot, beam)[:, :k]
    new_tok = torch.full((b, k + 1), search.pad, dtype=torch.long, device=device).scatter(1, slot, tok)[:, :k]

    # Hypotheses ending here, in the order the host loop appends them: eos ones by rank, then the beams cut at the
    # limit by rank. The first of the best replaces the running best only if strictly better.
    step = search.count
    at_limit = (step + 1 >= search.limits) & active[:, 0]  # (B,)
    penalty = search.penalty.index_select(0, (step + 1)[None])  # (1,) float64
    scaled = top_scores.double() / penalty  # (B, 2K)
    ended_scores = torch.cat(
        [scaled.masked_fill(~ended, inf), scaled.masked_fill(~(kept & at_limit[:, None]), inf)], dim=1
    )  # (B, 4K)
    best, which = ended_scores.max(dim=1)  # first maximum
    improve = best > search.best_score  # (B,)
    from_eos = which < 2 * k
    base = torch.arange(b, device=device)[:, None] * k  # (B, 1) first row of each sentence
    source = base[:, 0] + beam.gather(1, (which % (2 * k))[:, None])[:, 0]  # (B,) row of its prefix
    hyp = search.history.index_select(0, source)  # (B, T): the prefix's ids in columns [0, step)
    last_tok = tok.gather(1, (which % (2 * k))[:, None])  # (B, 1)
    hyp = hyp.index_copy(1, step[None], last_tok)  # an eos hypothesis stops before this column
    search.best_hyp.copy_(torch.where(improve[:, None], hyp, search.best_hyp))
    search.best_len.copy_(torch.where(improve, step + (~from_eos).long(), search.best_len))
    search.best_score.copy_(torch.where(improve, best, search.best_score))
    search.num_finished += ended.sum(dim=1) + torch.where(at_limit, live, 0)
    # As fairseq: a sentence is done once K hypotheses have ended.
    search.done |= at_limit | (active[:, 0] & (live == 0)) | (search.num_finished >= k)

    rows = (base + new_beam).view(-1)  # (B*K,) surviving beams
    search.history.copy_(search.history.index_select(0, rows))
    search.history.index_copy_(1, step[None], new_tok.reshape(-1, 1))
    search.token.copy_(new_tok.reshape(-1, 1))
    search.scores.copy_(new_scores)
    return rows


def select_kernel(search, top_scores: Tensor, top_idx: Tensor, vocab: int) -> Tensor:
    """:func:`select_reference` in one Triton kernel (a program per sentence); same results."""
    b, k = search.scores.shape
    width = search.history.shape[1]
    rows = torch.empty(b * k, dtype=torch.long, device=top_scores.device)
    beam_select_kernel[(b,)](
        top_scores.contiguous(), top_idx.contiguous(), search.scores, search.token, search.history, search.best_hyp,
        search.best_score, search.best_len, search.num_finished, search.done, search.limits, search.penalty,
        search.count, rows, search.history.stride(0), search.best_hyp.stride(0), vocab, search.eos, search.pad, width,
        K=k, C=triton.next_power_of_2(2 * k), KP=triton.next_power_of_2(k), TP=triton.next_power_of_2(width),
    )
    return rows


def random_search(
    k: int, batch: int, width: int, vocab: int, device: torch.device, seed: int
) -> tuple[SimpleNamespace, Tensor, Tensor]:
    """A search in the middle of decoding with random buffers, and top-2K candidates with eos among them, ties,
    -inf scores, done sentences and sentences at their limit: the cases :func:`verify_select_kernel` checks."""
    g = torch.Generator().manual_seed(seed)
    eos, pad = 2, 0
    step = int(torch.randint(0, width - 1, (), generator=g))
    scores = torch.randn(batch, 2 * k, generator=g).sort(dim=1, descending=True).values
    scores[0, 1] = scores[0, 0]  # a tie
    scores[1 % batch, k:] = float("-inf")  # fewer finite candidates than 2K
    index = torch.randint(0, k * vocab, (batch, 2 * k), generator=g)
    index[:, 0] = (index[:, 0] // vocab) * vocab + eos  # every sentence's best candidate ends
    search = SimpleNamespace(
        k=k, eos=eos, pad=pad,
        scores=torch.randn(batch, k, generator=g),
        history=torch.randint(0, vocab, (batch * k, width), generator=g),
        limits=torch.randint(step, step + 3, (batch,), generator=g),
        penalty=torch.rand(width + 1, generator=g, dtype=torch.float64) + 0.5,
        best_score=torch.randn(batch, generator=g, dtype=torch.float64).masked_fill(
            torch.rand(batch, generator=g) < 0.5, float("-inf")),
        best_hyp=torch.randint(0, vocab, (batch, width), generator=g),
        best_len=torch.randint(-1, width, (batch,), generator=g),
        num_finished=torch.randint(0, k, (batch,), generator=g),
        done=torch.rand(batch, generator=g) < 0.25,
        token=torch.zeros(batch * k, 1, dtype=torch.long),
        count=torch.tensor(step),
    )
    for name, value in vars(search).items():
        if isinstance(value, Tensor):
            setattr(search, name, value.to(device))
    return search, scores.to(device), index.to(device)


def first_mismatch(device: torch.device, k: int | None = None, width: int | None = None, cases: int = 24) -> str | None:
    """Runs :func:`select_kernel` and :func:`select_reference` on random searches (beams ``k`` and history ``width``
    if given, else a mix); the first difference, or None."""
    for seed in range(cases):
        args = (k or (1, 2, 3, 4, 5, 8)[seed % 6], 1 + seed % 5, width or 5 + 7 * (seed % 4), 11, device, seed)
        ref, top_scores, top_idx = random_search(*args)
        out, _, _ = random_search(*args)
        rows_ref, rows_out = select_reference(ref, top_scores, top_idx, 11), select_kernel(out, top_scores, top_idx, 11)
        if not torch.equal(rows_ref, rows_out):
            return f"case {seed}: rows differ"
        for name, value in vars(ref).items():
            if isinstance(value, Tensor) and not torch.equal(value, getattr(out, name)):
                return f"case {seed}: {name} differs"
    return None


VERIFIED: dict[tuple[int, int, int], bool] = {}
"""(CUDA device index, beams, history width rounded up to a power of two) -> whether :func:`select_kernel` (compiled
for those) reproduced :func:`select_reference` there."""


def verify_select_kernel(device: torch.device, k: int, width: int) -> bool:
    """Checks the kernel once per CUDA device and compiled variant (``k`` beams, histories of ``width`` ids) on random
    searches (:func:`first_mismatch`; called before a search is captured, never inside); a failure warns once and
    the reference serves there."""
    return checked_once(VERIFIED, device, lambda d: first_mismatch(d, k, width, cases=8), UNAVAILABLE,
                        triton is not None, "the one-kernel beam bookkeeping",
                        "beam search uses the plain-torch bookkeeping there", (k, 1 << (width - 1).bit_length()))
