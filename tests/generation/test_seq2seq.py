from __future__ import annotations

import contextlib

import pytest
import torch

import formers
from formers.generation import seq2seq
from formers.generation.seq2seq import beam_search, greedy_search, length_penalty

TINY = dict(embed_dim=16, num_heads=2, ffn_dim=32, num_encoder_layers=1, num_decoder_layers=2,
            src_vocab_size=30, tgt_vocab_size=30, max_seq_len=64)


@pytest.fixture
def model():
    torch.manual_seed(1)
    m = formers.create_model("transformer_tiny", **TINY).eval()
    with torch.no_grad():  # make eos likely enough that some hypotheses end early
        m.decoder.output.bias = None
    return m


def sources():
    src = torch.randint(4, 30, (4, 6))
    mask = torch.ones_like(src, dtype=torch.bool)
    mask[1, 3:] = False
    src[1, 3:] = 0
    return src, mask


def score(model, src, ids):
    """Sum of log-probabilities of ids (+ eos) given src, by full recomputation."""
    c = model.config
    tgt = torch.tensor([[c.bos_id] + ids])
    logp = model(src, tgt).logits.log_softmax(-1)[0]
    target = ids + [c.eos_id]
    return float(sum(logp[t, tok] for t, tok in enumerate(target)))


def greedy_by_recomputation(model, src, steps):
    c = model.config
    ids = []
    for _ in range(steps):
        logits = model(src, torch.tensor([[c.bos_id] + ids])).logits[0, -1]
        logits[[c.pad_id, c.bos_id]] = float("-inf")
        tok = int(logits.argmax())
        if tok == c.eos_id:
            break
        ids.append(tok)
    return ids


def test_greedy_cached_equals_full_recomputation(model):
    src, mask = sources()
    got = greedy_search(model, src, mask, max_new_tokens=12)
    for i in range(4):
        alone = src[i : i + 1, : int(mask[i].sum())]
        assert got[i] == greedy_by_recomputation(model, alone, 12)


def test_greedy_default_limit_is_source_plus_50(model):
    src = torch.randint(4, 30, (1, 3))
    with torch.no_grad():
        model.decoder.output.bias = torch.nn.Parameter(torch.zeros(30))
        model.decoder.output.bias[model.config.eos_id] = -1e4  # never end
    assert len(greedy_search(model, src)[0]) == 3 + 50


def test_beam_of_one_is_greedy(model):
    src, mask = sources()
    assert beam_search(model, src, mask, beam_size=1, alpha=0.0, max_new_tokens=10) == greedy_search(model, src, mask, max_new_tokens=10)


def test_beam_finds_at_least_the_greedy_score(model):
    src, mask = sources()
    greedy = greedy_search(model, src, mask, max_new_tokens=10)
    beams = beam_search(model, src, mask, beam_size=5, alpha=0.0, max_new_tokens=10)
    for i in range(4):
        alone = src[i : i + 1, : int(mask[i].sum())]
        if len(greedy[i]) < 10 and len(beams[i]) < 10:  # both ended with eos: comparable full scores
            assert score(model, alone, beams[i]) >= score(model, alone, greedy[i]) - 1e-4


def test_beam_batched_equals_alone(model):
    src, mask = sources()
    batched = beam_search(model, src, mask, beam_size=3, max_new_tokens=10)
    for i in range(4):
        alone = src[i : i + 1, : int(mask[i].sum())]
        assert batched[i] == beam_search(model, alone, beam_size=3, max_new_tokens=10)[0]


def test_length_penalty_formula_and_errors(model):
    assert length_penalty(1, 0.6) == pytest.approx(1.0)
    assert length_penalty(7, 0.6) == pytest.approx(2.0**0.6)
    src, mask = sources()
    with pytest.raises(ValueError, match=r"beam_size must be an int in \[1, 30\], got 0"):
        beam_search(model, src, beam_size=0)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 1 or None, got 0"):
        greedy_search(model, src, max_new_tokens=0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(alpha=float("nan")), ValueError, r"alpha \(length penalty\) must be >= 0 \(a finite number\), got nan"),
        (dict(alpha=float("inf")), ValueError, r"alpha \(length penalty\) must be >= 0 .*, got inf"),
        (dict(alpha=-0.1), ValueError, r"alpha \(length penalty\) must be >= 0 .*, got -0.1"),
        (dict(alpha=True), TypeError, r"alpha \(length penalty\) must be >= 0 .*, got True \(bool\)"),
        (dict(beam_size=2.0), TypeError, r"beam_size must be an int in \[1, 30\], got 2.0 \(float\)"),
        (dict(beam_size=True), TypeError, "beam_size must be an int in .*, got True"),
        (dict(beam_size=31), ValueError, r"beam_size must be an int in \[1, 30\], got 31"),
        (dict(max_new_tokens=1.5), TypeError, r"max_new_tokens must be an int >= 1 or None, got 1.5 \(float\)"),
    ],
)
def test_bad_search_options_raise_before_the_model_runs(model, kwargs, error, match, monkeypatch):
    monkeypatch.setattr(model, "encode", lambda *a, **k: pytest.fail("the model ran before validation"))
    src, mask = sources()
    with pytest.raises(error, match=match):
        beam_search(model, src, mask, **kwargs)
    if "max_new_tokens" in kwargs:
        with pytest.raises(error, match=match):
            greedy_search(model, src, mask, **kwargs)


def test_a_huge_max_new_tokens_is_capped_by_max_seq_len(model):
    src, mask = sources()
    assert greedy_search(model, src, mask, max_new_tokens=10**30) == greedy_search(model, src, mask, max_new_tokens=64)


def test_static_state_paths_equal_eager_and_reuse_one_step_per_shape(model):
    src, mask = sources()
    for fast_kwargs in (dict(fast=True), dict(fast=True, check_every=1)):
        assert greedy_search(model, src, mask, **fast_kwargs) == greedy_search(model, src, mask, fast=False)
    for k, alpha, limit, check_every in ((1, 0.6, None, 4), (3, 0.6, None, 1), (3, 0.0, 5, 2), (4, 2.0, 9, 3)):
        options = dict(beam_size=k, alpha=alpha, max_new_tokens=limit)
        eager = beam_search(model, src, mask, fast=False, **options)
        assert beam_search(model, src, mask, fast=True, check_every=check_every, **options) == eager
    cache = model.__dict__["_static_decoders"]
    n = len(cache.decoders)
    other = torch.randint(4, 30, (4, 6))  # same shapes: the cached steps are reloaded with the new memory
    assert greedy_search(model, other, fast=True) == greedy_search(model, other, fast=False)
    assert beam_search(model, other, beam_size=3, fast=True) == beam_search(model, other, beam_size=3, fast=False)
    assert len(cache.decoders) == n
    with pytest.raises(TypeError, match="fast must be True, False or None, got 'yes'"):
        greedy_search(model, src, mask, fast="yes")
    with pytest.raises(ValueError, match="check_every must be an int >= 1, got 0"):
        beam_search(model, src, mask, check_every=0)


@pytest.mark.parametrize("window", [None, 4], ids=["default-window", "window-4"])
def test_device_beam_search_equals_the_host_loop_on_many_random_models(window, monkeypatch):
    """Also with windows of 4 slots: many windows per search, each step reading and copying only filled slots."""
    if window is not None:
        monkeypatch.setattr(seq2seq, "REORDER_WINDOW", window)
    ended = 0
    for seed in range(12):
        torch.manual_seed(seed)
        vocab = (12, 30)[seed % 2]
        m = formers.create_model("transformer_tiny", **{**TINY, "src_vocab_size": vocab, "tgt_vocab_size": vocab})
        with torch.no_grad():
            m.decoder.output.bias = None
            for p in m.parameters():
                p.mul_(1 + 2 * (seed % 3 == 0))  # sharper distributions: hypotheses end at different steps
        src = torch.randint(4, vocab, (1 + seed % 4, 7))
        assert greedy_search(m.eval(), src, fast=True) == greedy_search(m, src, fast=False)
        for k, alpha, limit in ((2, 0.6, None), (4, 0.0, 6), (4, 1e6, 12)):
            eager = beam_search(m.eval(), src, beam_size=k, alpha=alpha, max_new_tokens=limit, fast=False)
            assert beam_search(m, src, beam_size=k, alpha=alpha, max_new_tokens=limit, fast=True) == eager
            ended += sum(len(h) < (limit or 57) - 1 for h in eager)
    assert ended > 10  # the comparison covered hypotheses ending before the limit


def lstm(seed=0):
    torch.manual_seed(seed)
    rnn = formers.create_model("lstm_seq2seq_tiny", src_vocab_size=30, tgt_vocab_size=30)
    with torch.no_grad():  # sharper distributions: hypotheses end at different steps
        for p in rnn.parameters():
            p.mul_(3)
    return rnn.eval()


@pytest.mark.parametrize("seed", range(3))
def test_rnn_static_steps_equal_its_eager_decoding(seed):
    rnn = lstm(seed)
    src, mask = sources()
    assert greedy_search(rnn, src, mask, fast=True) == greedy_search(rnn, src, mask, fast=False)
    ended = 0
    for k, alpha, limit in ((2, 0.6, None), (4, 0.0, 6), (3, 1.0, 12)):
        eager = beam_search(rnn, src, mask, beam_size=k, alpha=alpha, max_new_tokens=limit, fast=False)
        assert beam_search(rnn, src, mask, beam_size=k, alpha=alpha, max_new_tokens=limit, fast=True) == eager
        ended += sum(len(h) < (limit or 56) for h in eager)
    assert ended > 0


def test_rnn_static_state_resets_and_reorders_in_place():
    rnn = lstm()
    src, mask = sources()
    memory, mask = rnn.encode(src, mask)
    state = rnn.init_state(memory, mask, 10, static=True)
    addresses = [t.data_ptr() for t in (state.hidden, state.cell, state.memory, state.keys, state.memory_mask)]
    start = state.hidden.clone()
    rnn.decode(torch.full((4, 1), rnn.config.bos_id), None, None, state=state)
    assert not torch.equal(state.hidden, start) and state.length == 0
    state.reorder(torch.tensor([3, 2, 1, 0]))
    state.reset()
    torch.testing.assert_close(state.hidden, start, rtol=0, atol=0)
    assert [t.data_ptr() for t in (state.hidden, state.cell, state.memory, state.keys, state.memory_mask)] == addresses
    with pytest.raises(ValueError, match="reset\\(\\) needs a static state"):
        rnn.init_state(memory, mask, 10).reset()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_steps_equal_eager_on_cuda(model):
    model = model.cuda()
    src, mask = (t.cuda() for t in sources())
    for _ in range(2):  # the second call replays the graphs captured by the first
        assert greedy_search(model, src, mask) == greedy_search(model, src, mask, fast=False)
        assert beam_search(model, src, mask, beam_size=3) == beam_search(model, src, mask, beam_size=3, fast=False)
    steps = list(model.__dict__["_static_decoders"].decoders.values())
    assert len(steps) == 2 and all(s.graph is not None for s in steps)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("seed", range(3))
def test_the_one_kernel_beam_step_equals_eager_on_cuda(seed, monkeypatch):
    """Head width 32: every decoder layer's self-attention takes the one-kernel path, reading the beams' slots through
    the row table (no keys or values copied on reordering) and only the filled slots (no windows), and its
    cross-attention the kernel's read-only form (a sentence's beams reading its memory once); against the eager
    loops with neither kernel."""
    from formers.layers import attention
    from formers.layers import decode_attention as da

    torch.manual_seed(seed)
    wide = formers.create_model("transformer_tiny", **{**TINY, "embed_dim": 64, "ffn_dim": 64}).eval().cuda()
    src, mask = (t.cuda() for t in sources())
    calls, kernel = [], attention.decode_attention
    monkeypatch.setattr(attention, "decode_attention",
                        lambda *a, **k: calls.append("cross" if a[4] is None else "self") or kernel(*a, **k))
    fast = [[beam_search(wide, src, mask, beam_size=3), greedy_search(wide, src, mask)] for _ in range(2)]
    monkeypatch.setattr(attention, "decode_kernel_applies", lambda *args: False)
    eager = [beam_search(wide, src, mask, beam_size=3, fast=False), greedy_search(wide, src, mask, fast=False)]
    assert fast == [eager, eager]  # the second call replays the graphs captured by the first
    assert {"self", "cross"} <= set(calls)
    assert da.VERIFIED[torch.cuda.current_device(), torch.float32]
    steps = list(wide.__dict__["_static_decoders"].decoders.values())
    assert steps and all(not s.state.windowed and not s.windows for s in steps)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rnn_cuda_graph_steps_equal_eager_on_cuda():
    rnn = lstm().cuda()
    src, mask = (t.cuda() for t in sources())
    for _ in range(2):
        assert greedy_search(rnn, src, mask) == greedy_search(rnn, src, mask, fast=False)
        assert beam_search(rnn, src, mask, beam_size=3) == beam_search(rnn, src, mask, beam_size=3, fast=False)
    steps = list(rnn.__dict__["_static_decoders"].decoders.values())
    assert len(steps) == 2 and all(s.graph is not None and not s.windows for s in steps)


def test_a_static_beam_step_makes_its_masks_and_reorders_its_caches_once_for_every_layer(count_ops):
    """Masks become additive biases once per step and one gather of the shared row table reorders every layer's keys
    and values: a layer adds only its own GEMMs, norms, attention and cache writes to a step (what a captured step's
    length is made of)."""
    counts = {}
    src, mask = sources()
    for layers in (2, 4):
        torch.manual_seed(1)
        m = formers.create_model("transformer_tiny", **{**TINY, "num_decoder_layers": layers}).eval()
        with torch.no_grad():
            memory, src_mask = m.encode(src, mask)
            rows = torch.arange(4).repeat_interleave(3)
            state = m.init_state(memory[rows], src_mask[rows], max_len=16, static=True)
            search = seq2seq._DeviceBeam(m, state, seq2seq._banned(m), 3, use_graph=False)
            search.configure([10] * 4, 0.6)
            search.start(state)
            with count_ops() as ops:
                search._step()
        counts[layers] = ops.seen
    per_layer = {op: (counts[4][op] - counts[2][op]) // 2 for op in counts[4] if counts[4][op] != counts[2][op]}
    for op in ("where", "tril", "ones", "index_select", "copy_", "bitwise_and"):
        assert op not in per_layer, per_layer
    assert per_layer["index_copy_"] == 2, per_layer


def test_a_step_that_cannot_be_captured_runs_uncaptured_with_a_warning(model, monkeypatch):
    class Refuses:  # a capture (light_capture or torch.cuda.graph) as it fails for an op that cannot be captured
        def __init__(self, graph, pool=None):
            pass

        def __enter__(self):
            raise RuntimeError("operation not permitted when stream is capturing")

        def __exit__(self, *exc):
            return False

    class Stream:  # the side stream of the warm-up, on the CPU
        def wait_stream(self, other):
            pass

    monkeypatch.setattr(seq2seq, "_capture", Refuses)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", Stream)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: None)
    src, mask = sources()
    with torch.inference_mode():
        memory, src_mask = model.encode(src, mask)
        step, fresh = seq2seq._static_step(model, memory, src_mask, 12, beam=None)
        step.use_graph = True  # as on CUDA
        with pytest.warns(RuntimeWarning, match="decoding step could not be captured as a CUDA graph .*not permitted"):
            step.start(fresh)
        assert not step.use_graph and step.graph is None
        step.run(12)
    eager = greedy_search(model, src, mask, max_new_tokens=12, fast=False)
    assert [row[: len(e)] for row, e in zip(step.out.tolist(), eager)] == eager
