"""The static-cache (CUDA-graph) path of generate returns the eager path's tokens: greedy, sampled, padded, stopped."""

from __future__ import annotations

import copy

import pytest
import torch

import formers
from formers.generation.causal_lm import generate
from formers.generation.static_lm import (
    CAPACITY_BUCKETS,
    DecoderCache,
    StepKind,
    capacity_bucket,
    clear_decoders,
    held_bytes,
)


def make(**extra):
    config = dict(embed_dim=16, num_heads=2, num_layers=2, vocab_size=40, max_seq_len=48, eos_id=None)
    model = formers.create_model("gpt_mini", **{**config, **extra})
    with torch.no_grad():  # larger weights than GPT-2's init so that continuations vary
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def prompts(device="cpu"):
    ids = torch.randint(4, 40, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, :2] = False
    mask[2, :4] = False
    ids[~mask] = 0
    return ids.to(device), mask.to(device)


SAMPLINGS = [
    dict(),
    dict(do_sample=True, seed=7),
    dict(do_sample=True, seed=[3, 4, 5], temperature=0.7, top_k=8),
    dict(do_sample=True, seed=11, top_p=0.8),
    dict(do_sample=True, seed=12, top_k=10, top_p=0.9, temperature=1.3),
]


@pytest.mark.parametrize("options", SAMPLINGS)
def test_fast_path_equals_eager_on_a_padded_batch(options):
    model = make()
    ids, mask = prompts()
    eager = generate(model, ids, 20, padding_mask=mask, fast=False, **options)
    fast = generate(model, ids, 20, padding_mask=mask, fast=True, check_every=3, **options)
    assert fast.tolist() == eager.tolist()
    assert model.generate(ids, 20, padding_mask=mask, fast=True, **options).tolist() == eager.tolist()


def test_sampled_rows_equal_rows_alone_and_seeds_matter():
    model = make()
    ids, mask = prompts()
    opts = dict(do_sample=True, top_k=12)
    rows = generate(model, ids, 15, padding_mask=mask, seed=[1, 2, 3], fast=True, **opts)
    for i in range(3):
        n = int(mask[i].sum())
        alone = generate(model, ids[i : i + 1, -n:], 15, seed=[i + 1], fast=True, **opts)
        assert alone.tolist() == rows[i : i + 1].tolist()
    assert rows.tolist() != generate(model, ids, 15, padding_mask=mask, seed=[1, 2, 4], fast=True, **opts).tolist()
    torch.manual_seed(5)  # no seed: one drawn from the global generator, so manual_seed repeats a run
    a = generate(model, ids, 15, padding_mask=mask, fast=True, **opts)
    torch.manual_seed(5)
    assert generate(model, ids, 15, padding_mask=mask, fast=False, **opts).tolist() == a.tolist()


@pytest.mark.parametrize("check_every", [1, 4, 50])
def test_eos_stop_streamer_and_lists_equal_eager(check_every):
    model = make(pad_id=1)
    ids, mask = prompts()
    eos = int(generate(model, ids, 12, padding_mask=mask)[0, 3])  # the first row emits it at step 4
    results = {}
    for fast in (False, True):
        seen = []
        stop = lambda row: len(row) >= 9
        kwargs = dict(padding_mask=mask, eos_id=eos, stop=stop, streamer=seen.append, fast=fast, check_every=check_every)
        out = generate(model, ids, 30, do_sample=True, seed=2, top_k=5, **kwargs)
        lists = generate(model, ids, 30, do_sample=True, seed=2, top_k=5, as_lists=True, **kwargs)
        results[fast] = (out.tolist(), lists, seen)
    assert results[True] == results[False]
    out, lists, seen = results[True]
    assert len(out[0]) <= 9 and seen[: len(out[0])] == [list(c) for c in zip(*out)]


def test_decoders_are_cached_per_bucket_and_dropped_when_parameters_move():
    model = make()
    ids, mask = prompts()
    generate(model, ids, 10, padding_mask=mask, fast=True)
    cache = model.__dict__["_static_decoders"]
    (decoder,) = cache.decoders.values()
    assert decoder.max_len == capacity_bucket(16, 48) == 48  # 64 capped at max_seq_len
    generate(model, ids[:, 2:], 12, padding_mask=mask[:, 2:], fast=True, do_sample=True, seed=1)
    assert list(cache.decoders.values()) == [decoder]  # same batch and bucket: reused
    generate(model, ids[:1], 10, fast=True)
    assert len(cache.decoders) == 2
    assert copy.deepcopy(model).__dict__["_static_decoders"].decoders == {}
    model.double()  # new parameter tensors: every decoder is dropped, the next call builds a float64 one
    out = generate(model, ids, 10, padding_mask=mask, fast=True)
    assert out.tolist() == generate(model, ids, 10, padding_mask=mask, fast=False).tolist()
    assert [d.state.caches[0].k.dtype for d in cache.decoders.values()] == [torch.float64]
    clear_decoders(model)
    assert "_static_decoders" not in model.__dict__


class Holder:
    """A stand-in decoder holding tensors (and the model, whose weights are not counted)."""

    def __init__(self, nbytes: int, model=None) -> None:
        self.state = {"caches": [torch.zeros(nbytes // 4)], "model": model}


def test_held_bytes_counts_each_storage_once_and_not_the_model():
    model = make()
    kv = torch.zeros(2, 3, 100)  # 2,400 bytes
    holder = Holder(400, model)
    holder.views = (kv[0], kv[1], [kv, {"again": kv[:, 1]}])  # views of one storage: counted once
    holder.cycle = holder  # an object reached twice: visited once
    assert held_bytes(holder) == 400 + 2400
    assert held_bytes(Holder(0)) == 0


def test_decoder_cache_drops_the_least_recently_used_beyond_its_count_and_budget():
    model, cache = make(), DecoderCache()
    get = lambda key, nbytes, **kw: cache.get(model, (key,), lambda: Holder(nbytes), **kw)  # noqa: E731
    a, b = get("a", 400, limit=3), get("b", 400, limit=3)
    assert get("a", 400, limit=3) is a  # kept: a is now the most recently used
    get("c", 400, limit=3)
    get("d", 400, limit=3)  # a fourth shape: the least recently used (b) goes first
    assert [k[0] for k in cache.decoders] == ["a", "c", "d"] and b not in cache.decoders.values()
    get("e", 1000, limit=8, budget=2000)  # 400 + 400 + 400 + 1,000 > 2,000: a goes, then 1,800 fit
    assert [k[0] for k in cache.decoders] == ["c", "d", "e"] and sum(cache.sizes.values()) == 1800
    get("f", 4000, limit=8, budget=2000)  # larger than the budget alone: only it stays
    assert [k[0] for k in cache.decoders] == ["f"] and list(cache.sizes.values()) == [4000]


def test_capacity_buckets():
    assert capacity_bucket(1, 1024) == 64 and capacity_bucket(65, 1024) == 96 and capacity_bucket(272, 1024) == 384
    assert capacity_bucket(1000, 1024) == 1024 and capacity_bucket(5000, 8192) == 6144
    assert all(b / a <= 1.5 for a, b in zip(CAPACITY_BUCKETS[1:], CAPACITY_BUCKETS[2:]))


def test_auto_is_eager_on_cpu_and_fast_true_refuses_a_sliding_window():
    model = make()
    ids = torch.randint(4, 40, (1, 40))
    generate(model, ids, 4)
    assert "_static_decoders" not in model.__dict__  # CPU: the eager loop
    with pytest.raises(ValueError, match="fast=True cannot slide the window: prompt length 40 \\+ max_new_tokens 20"):
        generate(model, ids, 20, truncate=True, fast=True)
    with pytest.raises(TypeError, match="fast must be True or False, got 1"):
        generate(model, ids, 2, fast=1)
    with pytest.raises(ValueError, match="check_every must be an int >= 1, got 0"):
        generate(model, ids, 2, check_every=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("options", SAMPLINGS)
def test_cuda_graph_path_equals_eager_on_cuda(options):
    model = make(pad_id=1).cuda()
    ids, mask = prompts("cuda")
    eager = generate(model, ids, 24, padding_mask=mask, fast=False, **options)
    for _ in range(2):  # the second call replays the graph captured by the first
        seen = []
        fast = model.generate(ids, 24, padding_mask=mask, streamer=seen.append, check_every=5, **options)
        assert fast.tolist() == eager.tolist()
        assert seen == fast.T.tolist()
    (decoder,) = model.__dict__["_static_decoders"].decoders.values()
    assert decoder.use_graph and len(decoder.graphs) == 1
    (prefill,) = decoder.prefills.values()  # the prompt pass captured once and replayed by the second call
    assert prefill is not None and prefill[2] is not None  # a graph reading a padding mask buffer
    eos = int(eager[0, 5])
    assert model.generate(ids, 24, padding_mask=mask, eos_id=eos, **options).tolist() == generate(
        model, ids, 24, padding_mask=mask, eos_id=eos, fast=False, **options
    ).tolist()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_path_in_bfloat16_is_deterministic_and_in_range():
    model = make().cuda().bfloat16()
    ids, mask = prompts("cuda")
    fast = model.generate(ids, 16, padding_mask=mask, do_sample=True, seed=3, top_k=10, top_p=0.9)
    assert fast.shape == (3, 16) and int(fast.min()) >= 0 and int(fast.max()) < 40
    again = model.generate(ids, 16, padding_mask=mask, do_sample=True, seed=3, top_k=10, top_p=0.9)
    assert again.tolist() == fast.tolist()


def test_autocast_gets_its_own_decoder():
    model = make()
    ids, mask = prompts()
    generate(model, ids, 8, padding_mask=mask, fast=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 steps: repeatable, not equal to float32 ones
        fast = generate(model, ids, 8, padding_mask=mask, fast=True, do_sample=True, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert generate(model, ids, 8, padding_mask=mask, fast=True, do_sample=True, seed=1).tolist() == fast.tolist()
    keys = list(model.__dict__["_static_decoders"].decoders)
    assert [k[-1] for k in keys] == [(False, None), (True, torch.bfloat16)]


@pytest.mark.slow
def test_compiled_sampling_step_equals_eager_on_cpu():
    model = make()
    ids, mask = prompts()
    options = dict(do_sample=True, seed=3, top_k=8, top_p=0.9)
    eager = generate(model, ids, 12, padding_mask=mask, fast=False, **options)
    assert generate(model, ids, 12, padding_mask=mask, fast=True, compile=True, **options).tolist() == eager.tolist()


@pytest.mark.parametrize("compile", [False, True])
def test_new_temperatures_and_top_p_reuse_the_decoders_step_and_equal_eager(compile):
    model = make()
    ids, mask = prompts()
    for temperature, top_p in ((0.7, 0.8), (1.3, 0.95), (0.5, 0.6)):
        options = dict(do_sample=True, seed=5, top_k=10, temperature=temperature, top_p=top_p)
        eager = generate(model, ids, 10, padding_mask=mask, fast=False, **options)
        fast = generate(model, ids, 10, padding_mask=mask, fast=True, compile=compile, **options)
        assert fast.tolist() == eager.tolist()
    (decoder,) = model.__dict__["_static_decoders"].decoders.values()
    assert decoder.checked == {StepKind(True, True, 10, True)}  # one step for the three calls
    assert len(decoder.compiled) == int(compile)
    assert (decoder.compiled_body is not None) == compile
    generate(model, ids, 10, padding_mask=mask, fast=True, compile=compile, do_sample=True, seed=5, top_k=10)
    assert decoder.checked == {StepKind(True, True, 10, True), StepKind(True, False, 10, False)}


@pytest.mark.parametrize("shared", [True, False])
def test_kinds_of_step_share_one_compiled_model_part_and_compile_only_their_token_choice(monkeypatch, shared):
    # Greedy, then two kinds of sampling, on one decoder: the model's part of the step is compiled once (a sampled
    # call after a greedy one does not compile the model again), each kind compiles its own token choice, and every
    # call's tokens equal the eager loop's. Dynamo traces and guards as usual; the "eager" backend skips codegen.
    from formers.generation import static_lm, step_compile

    monkeypatch.setattr(step_compile, "_inductor_for_steps", "eager")
    compiled = []

    def counted(step):
        compiled.append(step.__name__)
        return step_compile.compile_step(step)

    monkeypatch.setattr(static_lm, "compile_step", counted)
    monkeypatch.setattr(static_lm, "SHARED_BODY", shared)  # False: the whole step per kind (benchmarks compare)
    model = make()
    ids, mask = prompts()
    calls = (dict(), dict(do_sample=True, seed=5, top_k=10), dict(do_sample=True, seed=6, top_p=0.9), dict())
    for options in calls:
        fast = generate(model, ids, 10, padding_mask=mask, fast=True, compile=True, **options)
        assert fast.tolist() == generate(model, ids, 10, padding_mask=mask, fast=False, **options).tolist()
    (decoder,) = model.__dict__["_static_decoders"].decoders.values()
    assert compiled == (["_body", "_emit", "_emit", "_emit"] if shared else ["_step", "_step", "_step"])
    assert len(decoder.compiled) == 3 and decoder.compile and (decoder.compiled_body is not None) == shared


def test_a_token_choice_that_fails_to_compile_falls_back_on_the_logits_of_the_compiled_model_part(monkeypatch):
    # The model's part has run (the cache holds the step) when the token choice fails: the fallback picks the token
    # from those logits instead of running the model again, so the tokens still equal the eager loop's.
    from formers.generation import static_lm, step_compile

    monkeypatch.setattr(step_compile, "_inductor_for_steps", "eager")

    def choice_fails(step):
        if step.__name__ == "_body":
            return step_compile.compile_step(step)

        def fail(*args):
            raise RuntimeError("no compiler for the choice")

        return fail

    monkeypatch.setattr(static_lm, "compile_step", choice_fails)
    from formers.generation.stopping import Rows

    model = make()
    ids, mask = prompts()
    eager = generate(model, ids, 10, padding_mask=mask, fast=False)
    decoder = static_lm.StaticLMDecoder(model, 3, 16, use_graph=False, compile=True, compile_fallback=True)
    rows = Rows(3, None, 0, None, None)
    with pytest.warns(RuntimeWarning, match="could not compile the decoding step .*no compiler for the choice"):
        static_lm.run_static(decoder, ids, mask, 10, static_lm.Sampling(False, 1.0, None, None), None, rows)
    assert rows.result(False, ids.device).tolist() == eager.tolist()
    assert not decoder.compile and decoder.compiled_body is not None


def test_a_model_without_a_static_cache_decodes_eagerly_and_refuses_fast_true(monkeypatch):
    model = make()
    ids = torch.randint(4, 40, (2, 5))
    expected = generate(model, ids, 6)
    dynamic_only = model.init_cache
    monkeypatch.setattr(model, "init_cache", lambda batch_size, max_len=None: dynamic_only(batch_size, max_len))
    assert generate(model, ids, 6).tolist() == expected.tolist()
    with pytest.raises(ValueError, match="fast=True needs a model whose init_cache takes static=True"):
        generate(model, ids, 6, fast=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_stop_streamer_lists_and_compiled_steps_equal_eager(compile):
    model = make(pad_id=1).cuda()
    ids, mask = prompts("cuda")
    options = dict(do_sample=True, seed=[4, 5, 6], top_k=10, top_p=0.9)
    eos = int(generate(model, ids, 12, padding_mask=mask, fast=False, **options)[0, 3])
    results = []
    for fast in (False, True):
        seen = []
        kwargs = dict(padding_mask=mask, eos_id=eos, stop=lambda row: len(row) >= 10, streamer=seen.append, **options)
        lists = generate(model, ids, 30, fast=fast, compile=compile and fast, as_lists=True, check_every=4, **kwargs)
        results.append((lists, seen))
    assert results[0] == results[1]


def test_compiled_step_recompiles_for_a_new_sampling_and_batch_and_equals_eager():
    # A second decoder (other sampling, other batch) recompiles the step; dynamo's automatic dynamic shapes then
    # tripped over the cache's aliased views (inductor: "Expected !size_bytes_is_heap_allocated_"), so the step is
    # compiled for static shapes.
    model = make()
    ids = torch.randint(4, 40, (3, 6))
    for rows, options in ((3, {}), (3, dict(do_sample=True, seed=[1, 2, 3], top_k=10)), (1, {})):
        fast = generate(model, ids[:rows], 8, fast=True, compile=True, **options)
        assert fast.tolist() == generate(model, ids[:rows], 8, fast=False, **options).tolist()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", [False, True])
@pytest.mark.parametrize("fused, burst", [(True, 1), (False, 16), (True, 16)])
def test_in_kernel_combining_and_multi_step_graphs_equal_eager(monkeypatch, compile, fused, burst):
    """The two batch-1 steps that are off until timed: attention's parts combined by the last of them (a 128-slot
    cache read in 2 parts by 32-wide heads), and 16 steps captured as one graph (bursts of 16, then single steps)."""
    from formers.generation import static_lm
    from formers.layers import attention, decode_attention

    monkeypatch.setattr(decode_attention, "FUSED_COMBINE", fused)
    monkeypatch.setattr(static_lm, "BURST", burst)
    model = make(embed_dim=64, num_heads=2, max_seq_len=256, pad_id=1).cuda()
    ids, mask = prompts("cuda")
    options = dict(do_sample=True, seed=[3, 4, 5], top_k=10)
    eager = generate(model, ids, 100, padding_mask=mask, fast=False, **options)
    for _ in range(2):  # the second call replays the graphs captured by the first
        fast = generate(model, ids, 100, padding_mask=mask, fast=True, compile=compile, check_every=16, **options)
        assert fast.tolist() == eager.tolist()
    (decoder,) = model.__dict__["_static_decoders"].decoders.values()
    assert len(decoder.graphs) == (2 if burst > 1 else 1)
    locks = decoder.state.caches[0].locks
    assert (locks is not None) == fused and (locks is None or not locks.any())
    assert isinstance(decoder.state.caches[0], attention.KVCache)
