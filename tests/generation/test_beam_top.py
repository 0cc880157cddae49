"""A beam step's candidates (formers.generation.beam_top): the per-beam cut before the sentence-wide top-k, and the
one-kernel cut against its plain-torch reference on CUDA where there is one (interpreted on the CPU: in
test_beam_select.py, with the bookkeeping kernel) and its once-per-device check."""

from __future__ import annotations

import contextlib

import pytest
import torch

from formers.generation import beam_top
from formers.layers.decode_attention import triton_available

needs_triton = pytest.mark.skipif(
    not triton_available(), reason="needs Triton (`pip install triton`; torch installs it on Linux x86-64)"
)


@pytest.mark.parametrize("k, vocab", [(4, 50), (2, 3), (1, 7), (5, 9)])
def test_beam_candidates_are_the_top_2k_of_scores_plus_log_softmax_over_every_beam(k, vocab):
    """The per-beam cut to 2K before the sentence-wide top-k loses nothing: same candidates, same order, same scores
    as the plain formula over all K * V (banned ids and dead beams at -inf included; vocabularies below 2K too)."""
    gen = torch.Generator().manual_seed(k * 100 + vocab)
    b = 6
    logits = torch.randn(b * k, vocab, generator=gen, dtype=torch.float64).float() * 3
    logits[:, 0] = float("-inf")  # a banned id
    scores = -torch.rand(b, k, generator=gen) * 5
    scores[0, 1:] = float("-inf")  # the first step: one live beam
    expected_scores, expected_idx = (scores[:, :, None] + logits.log_softmax(-1).view(b, k, vocab)).view(b, -1).topk(
        2 * k, dim=1)
    top_scores, top_idx = beam_top.beam_candidates(logits, scores, k)
    finite = expected_scores.isfinite()
    assert torch.equal(top_idx[finite], expected_idx[finite])
    torch.testing.assert_close(top_scores, expected_scores, rtol=0, atol=1e-5)
    # bf16 logits (autocast) give the float32 scores of their float32 values
    half = logits.bfloat16()
    torch.testing.assert_close(beam_top.beam_candidates(half, scores, k)[0],
                               beam_top.beam_candidates(half.float(), scores, k)[0], rtol=0, atol=0)
    # banned ids given apart: the same as set to -inf beforehand, the caller's logits left alone
    raw = torch.randn(b * k, vocab, generator=gen)
    banned = torch.tensor([0, vocab - 1])
    for dtype in (torch.float32, torch.bfloat16):
        given = raw.to(dtype)
        before = given.clone()
        got = beam_top.beam_candidates(given, scores, k, banned)
        want = beam_top.beam_candidates(given.index_fill(1, banned, float("-inf")), scores, k)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and torch.equal(given, before)


def test_the_check_cases_hold_ties_banned_bests_short_rows_and_bfloat16():
    """The reference agrees with its canonical (tie-ordered) form, and the cases reach what the kernel must handle."""
    names = []
    for name, x, banned, width in beam_top.check_cases(torch.device("cpu")):
        logp, tokens = beam_top.row_top_reference(x, banned, width)
        want_logp, want_tokens = beam_top.canonical(x, banned, width)
        finite = want_logp.isfinite()
        torch.testing.assert_close(logp[finite], want_logp[finite], rtol=0, atol=0)
        if x.float().unique().numel() == x.numel():  # no ties: the reference's order is the canonical one
            assert torch.equal(tokens[finite], want_tokens[finite]), name
        names.append(name)
    assert {"ties", "bfloat16", "fewer finite values than the width"} <= set(names)
    x, banned, width = {n: (x, b, w) for n, x, b, w in beam_top.check_cases(torch.device("cpu"))}["ties"]
    last_kept = x.index_fill(1, banned, float("-inf")).sort(dim=1, descending=True).values[:, width - 1 : width]
    assert ((x == last_kept).sum(dim=1) > 1).all()  # the width cuts through a run of equal values in every row


def test_a_failing_kernel_is_not_used_on_that_device(monkeypatch):
    monkeypatch.setattr(beam_top, "VERIFIED", {})
    monkeypatch.setattr(beam_top, "UNAVAILABLE", None)
    monkeypatch.setattr(beam_top, "triton", object())  # as if installed
    monkeypatch.setattr(beam_top, "first_mismatch", lambda device: "ties: tokens [[1]] against [[2]]")
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    with pytest.warns(RuntimeWarning, match=r"beam candidates failed its check on cuda:0 \(ties: tokens"):
        assert not beam_top.verify_row_top(torch.device("cuda", 0))
    assert beam_top.VERIFIED == {(0,): False}
    assert not beam_top.verify_row_top(torch.device("cuda", 0))  # once: no second check, no second warning
    assert not beam_top.verify_row_top(torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@needs_triton
def test_kernel_equals_the_reference_on_cuda():
    assert beam_top.first_mismatch(torch.device("cuda")) is None
    assert beam_top.verify_row_top(torch.device("cuda"))
