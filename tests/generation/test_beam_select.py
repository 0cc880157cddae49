"""The beam bookkeeping kernel (formers.generation.beam_select) against its plain-torch reference: interpreted on the
CPU (with the candidates' kernel, formers.generation.beam_top), on CUDA where there is one, and its once-per-device
check."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from formers.generation import beam_select
from formers.generation.beam_select import (
    first_mismatch,
    random_search,
    select_reference,
)
from formers.layers.decode_attention import triton_available

needs_triton = pytest.mark.skipif(
    not triton_available(), reason="needs Triton (`pip install triton`; torch installs it on Linux x86-64)"
)


@needs_triton
def test_kernel_equals_the_reference_interpreted():
    script = textwrap.dedent("""
        import json, torch, formers
        from formers.generation import beam_top, seq2seq
        from formers.generation.beam_select import first_mismatch
        from formers.generation.seq2seq import beam_search
        mismatch = first_mismatch(torch.device("cpu"), cases=12) or beam_top.first_mismatch(torch.device("cpu"))
        # whole searches: the static path with both kernels (bookkeeping, candidates) and the eager host loop with
        # the candidates' kernel, against the eager loop in plain torch
        same = []
        for seed in range(3):
            torch.manual_seed(seed)
            model = formers.create_model("transformer_tiny", embed_dim=16, num_heads=2, ffn_dim=32, src_vocab_size=30,
                                         tgt_vocab_size=30, max_seq_len=64, num_encoder_layers=1,
                                         num_decoder_layers=2).eval()
            src = torch.randint(4, 30, (3, 5))
            plain = beam_search(model, src, beam_size=3, max_new_tokens=9, fast=False)
            seq2seq.verify_row_top = lambda device: True
            beam_search(model, src, beam_size=3, max_new_tokens=9, fast=True)  # builds the cached step
            steps = list(model.__dict__["_static_decoders"].decoders.values())
            for step in steps:
                step.select_kernel = True
            fast = beam_search(model, src, beam_size=3, max_new_tokens=9, fast=True)
            same.append(fast == beam_search(model, src, beam_size=3, max_new_tokens=9, fast=False) == plain)
            seq2seq.verify_row_top = lambda device: False
        print(json.dumps([mismatch, same]))
    """)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(sys.path), CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    mismatch, same = json.loads(done.stdout.strip().splitlines()[-1])
    assert mismatch is None and same == [True, True, True]


def test_the_random_cases_reach_every_branch():
    """The check's cases end hypotheses at eos and at the limit, improve and keep bests, and finish sentences."""
    improved = ended_at_limit = finished = 0
    for seed in range(24):
        k = (1, 2, 3, 4, 5, 8)[seed % 6]
        search, top_scores, top_idx = random_search(k, 1 + seed % 5, 5 + 7 * (seed % 4), 11, "cpu", seed)
        before_score, before_done = search.best_score.clone(), search.done.clone()
        at_limit = (search.count + 1 >= search.limits) & ~search.done
        select_reference(search, top_scores, top_idx, 11)
        improved += int((search.best_score != before_score).sum())
        ended_at_limit += int(at_limit.sum())
        finished += int((search.done & ~before_done).sum())
    assert improved > 5 and ended_at_limit > 5 and finished > 5


def test_a_failing_kernel_is_not_used_on_that_device(monkeypatch):
    monkeypatch.setattr(beam_select, "VERIFIED", {})
    monkeypatch.setattr(beam_select, "UNAVAILABLE", None)
    monkeypatch.setattr(beam_select, "triton", object())  # as if installed
    monkeypatch.setattr(beam_select, "first_mismatch", lambda device, k, width, cases: "case 3: history differs")
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    with pytest.warns(RuntimeWarning, match="beam bookkeeping failed its check on cuda:0 .case 3: history differs"):
        assert not beam_select.verify_select_kernel(torch.device("cuda", 0), 4, 41)
    assert beam_select.VERIFIED == {(0, 4, 64): False}
    assert not beam_select.verify_select_kernel(torch.device("cpu"), 4, 41)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@needs_triton
def test_kernel_equals_the_reference_on_cuda():
    assert first_mismatch(torch.device("cuda")) is None
    assert beam_select.verify_select_kernel(torch.device("cuda"), 4, 65)
