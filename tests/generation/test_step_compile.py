"""The compiled decoding step's matrix-vector rewrite: the same product as ``addmm``, used only where it applies."""

from __future__ import annotations

import warnings

import pytest
import torch

import formers
from formers.generation.causal_lm import generate
from formers.generation.sampling import row_keys, uniform_table
from formers.generation.step_compile import _addmm_one_row, compile_step, one_row_addmm


@pytest.mark.parametrize("rows", [1, 3])
def test_one_row_addmm_equals_addmm_in_float32(rows):
    gen = torch.Generator().manual_seed(0)
    bias, mat1, mat2 = (torch.randn(s, generator=gen) for s in ((24,), (rows, 40), (40, 24)))
    torch.testing.assert_close(one_row_addmm(bias, mat1, mat2), torch.addmm(bias, mat1, mat2), rtol=1e-5, atol=1e-5)


def test_one_row_addmm_accumulates_bfloat16_in_float32():
    gen = torch.Generator().manual_seed(1)
    bias, mat1, mat2 = (torch.randn(s, generator=gen) for s in ((64,), (1, 768), (768, 64)))
    exact = torch.addmm(*(t.bfloat16().double() for t in (bias, mat1, mat2)))
    out = one_row_addmm(bias.bfloat16(), mat1.bfloat16(), mat2.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), exact, rtol=8e-3, atol=8e-3)  # one bfloat16 rounding of the result


def test_the_rewrite_applies_to_one_row_on_a_gpu_only():
    bias, one, two, mat2 = torch.zeros(4), torch.ones(1, 3), torch.ones(2, 3), torch.ones(3, 4)
    assert _addmm_one_row(bias, one, mat2) is NotImplemented  # on the CPU
    assert _addmm_one_row(bias, two, mat2) is NotImplemented
    meta = [t.to("meta") for t in (bias, one, mat2)]
    assert _addmm_one_row(*meta) is NotImplemented
    assert _addmm_one_row(bias, one, mat2, beta=2) is NotImplemented


def departs_at_a_float32_tie(model, prompt, eager: list[int], fast: list[int], options: dict) -> bool:
    """Whether ``fast`` equals ``eager`` up to a step where eager's choice was within float32 rounding of another:
    two of the top-(k + 1) logits within 1e-5, or the draw within 1e-6 of a boundary of the cumulative distribution.
    A compiled step sums in another order than the eager one (differences of about 1e-7 here), so a near-uniform
    random model's tokens may part there, and only there."""
    if eager == fast:
        return True
    step = next(i for i, (a, b) in enumerate(zip(eager, fast)) if a != b)
    with torch.no_grad():
        prefix = torch.tensor([eager[:step]], device=prompt.device, dtype=torch.long)
        logits = model(torch.cat([prompt, prefix], 1)).logits[0, -1]
    top = torch.sort(logits.double(), descending=True).values[: options.get("top_k", 1) + 1]
    if float((top[:-1] - top[1:]).min()) < 1e-5:
        return True
    if not options.get("do_sample"):
        return False
    uniform = float(uniform_table(row_keys(options["seed"], 1), step + 1, "cpu")[0, step])
    probs = torch.softmax(top[:-1], 0)
    cdf = probs.cumsum(0)
    nucleus = int((cdf - probs < options.get("top_p", 1.0))[1:].sum())
    return float((cdf[: nucleus + 1] / cdf[nucleus] - uniform).abs().min()) < 1e-6


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", [True, None])
@pytest.mark.parametrize("options", [dict(), dict(do_sample=True, seed=5, top_k=20, top_p=0.9)])
@pytest.mark.parametrize("seed", range(3))
def test_compiled_batch_one_steps_equal_eager_in_float32_on_cuda(options, compile, seed):
    torch.manual_seed(seed)
    model = formers.create_model("gpt_mini", embed_dim=64, num_heads=4, num_layers=2, vocab_size=300, max_seq_len=96,
                                 eos_id=None).cuda().eval()
    ids = torch.randint(4, 300, (1, 7), device="cuda")
    eager = generate(model, ids, 40, fast=False, **options)[0].tolist()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="torch.compile could not compile")  # no fallback
        fast = generate(model, ids, 40, compile=compile, **options)[0].tolist()
    assert departs_at_a_float32_tie(model, ids, eager, fast, options), (eager, fast)
    assert any(decoder.checked and decoder.compile and decoder.compiled  # compiled (compile=None: one row on CUDA)
               for decoder in model.__dict__["_static_decoders"].decoders.values())


def test_a_departure_counts_only_at_a_tie():
    torch.manual_seed(0)
    model = formers.create_model("gpt_mini", embed_dim=64, num_heads=4, num_layers=2, vocab_size=300, max_seq_len=96,
                                 eos_id=None).eval()
    ids = torch.randint(4, 300, (1, 7))
    for options in (dict(), dict(do_sample=True, seed=5, top_k=20, top_p=0.9)):
        eager = generate(model, ids, 12, fast=False, **options)[0].tolist()
        assert departs_at_a_float32_tie(model, ids, eager, list(eager), options)
        wrong = eager[:5] + [(eager[5] + 1) % 300] + eager[6:]  # no tie at step 5 of this model
        assert not departs_at_a_float32_tie(model, ids, eager, wrong, options)


def test_more_steps_compile_than_dynamo_keeps_versions_of_one_function(monkeypatch):
    from formers.generation import step_compile

    monkeypatch.setattr(step_compile, "_inductor_for_steps", "eager")  # dynamo's tracing and limits, no codegen

    class Stepper:
        def __init__(self):
            self.state = torch.zeros(3)

        def step(self, scale: float) -> None:
            self.state.add_(scale)

    scales = [float(s) for s in range(torch._dynamo.config.recompile_limit + 3)]
    steppers = [Stepper() for _ in range(3)]
    for stepper in steppers:  # a decoder each
        for scale in scales:  # a sampling configuration each: its constants traced into the graph
            compile_step(stepper.step)(scale)
    assert all(stepper.state.tolist() == [sum(scales)] * 3 for stepper in steppers)


def test_compile_none_compiles_single_rows_on_cuda_only(monkeypatch):
    import torch.utils._triton as triton_check

    from formers.generation import step_compile

    monkeypatch.setattr(triton_check, "has_triton", lambda: True)
    assert step_compile.auto_compile(torch.device("cuda"), 1)
    assert not step_compile.auto_compile(torch.device("cuda"), step_compile.AUTO_COMPILE_MAX_BATCH + 1)
    assert not step_compile.auto_compile(torch.device("cpu"), 1)
    monkeypatch.setattr(triton_check, "has_triton", lambda: False)
    assert not step_compile.auto_compile(torch.device("cuda"), 1)


def test_a_step_that_fails_to_compile_falls_back_with_a_warning_or_raises(monkeypatch):
    from formers.generation import static_lm
    from formers.generation.stopping import Rows

    def broken(step):
        def run(*args):
            raise RuntimeError("no compiler here")
        return run

    monkeypatch.setattr(static_lm, "compile_step", broken)
    model = formers.create_model("gpt_mini", embed_dim=16, num_heads=2, num_layers=2, vocab_size=40, max_seq_len=48,
                                 eos_id=None).eval()
    ids = torch.randint(4, 40, (1, 5))
    eager = generate(model, ids, 10, fast=False)
    greedy = static_lm.Sampling(False, 1.0, None, None)
    for fallback in (True, False):
        decoder = static_lm.StaticLMDecoder(model, 1, 16, use_graph=False, compile=True, compile_fallback=fallback)
        rows = Rows(1, None, 0, None, None)
        if fallback:
            with pytest.warns(RuntimeWarning, match="could not compile the decoding step .*no compiler here"):
                static_lm.run_static(decoder, ids, None, 10, greedy, None, rows)
            assert rows.result(False, ids.device).tolist() == eager.tolist()
        else:
            with pytest.raises(RuntimeError, match="no compiler here"):
                static_lm.run_static(decoder, ids, None, 10, greedy, None, rows)


def test_compile_true_on_the_eager_loop_is_refused_not_ignored():
    model = formers.create_model("gpt_mini", embed_dim=16, num_heads=2, num_layers=1, vocab_size=40, max_seq_len=16,
                                 eos_id=None).eval()
    ids = torch.randint(4, 40, (1, 5))
    for kwargs in (dict(), dict(fast=False), dict(fast=None, truncate=True)):
        with pytest.raises(ValueError, match="compile=True compiles the fast path's step, but this call runs the eager"):
            generate(model, ids, 14 if kwargs.get("truncate") else 4, compile=True, **kwargs)
    assert generate(model, ids, 4, compile=None).shape == (1, 4)  # None: nothing to compile on the CPU


def test_store_activations_follows_each_activation_with_a_store_of_the_same_values():
    """The FX pass behind STORE_ACTIVATIONS (on by default): every activation call of dynamo's graph is followed by
    ``formers::stored``, which changes no value."""
    from formers.generation import step_compile

    graphs = []

    def backend(gm, example_inputs):
        graphs.append((step_compile.store_activations(gm), gm))
        return gm.forward

    ffn = formers.layers.FeedForward(8, 16, "gelu_tanh").eval()
    x = torch.randn(2, 8)
    compiled = torch.compile(lambda t: ffn(torch.relu(t)), backend=backend, fullgraph=True)
    torch.testing.assert_close(compiled(x), ffn(torch.relu(x)), rtol=0, atol=0)
    (count, gm), = graphs
    stored = [n for n in gm.graph.nodes if n.target is torch.ops.formers.stored.default]
    assert count == 2 and len(stored) == 2
    assert all(n.args[0].target in step_compile.ACTIVATIONS and len(n.args[0].users) == 1 for n in stored)


@pytest.mark.slow
def test_a_step_compiled_with_stored_activations_gives_the_eager_tokens(monkeypatch):
    from formers.generation import step_compile

    monkeypatch.setattr(step_compile, "STORE_ACTIVATIONS", True)
    model = formers.create_model("gpt2", num_layers=2, num_heads=2, embed_dim=32, vocab_size=97, max_seq_len=64,
                                 dropout=0.0, eos_id=None).eval()
    ids = torch.randint(0, 97, (1, 5))
    assert torch.equal(generate(model, ids, 10, fast=True, compile=True), generate(model, ids, 10, fast=False))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("affine, bias", [(True, True), (False, False)])
def test_norm_linear_equals_linear_of_layer_norm(dtype, affine, bias):
    from formers.generation.step_compile import norm_linear

    gen = torch.Generator().manual_seed(4)
    x = (torch.randn(1, 1, 48, generator=gen) * 3 + 1).to(dtype)
    g, b = (torch.randn(48, generator=gen).to(dtype) if affine else None for _ in range(2))
    weight, out_bias = torch.randn(20, 48, generator=gen).to(dtype), torch.randn(20, generator=gen).to(dtype)
    out_bias = out_bias if bias else None
    expected = torch.nn.functional.linear(torch.nn.functional.layer_norm(x, (48,), g, b, 1e-5), weight, out_bias)
    got = norm_linear(x, g, b, 1e-5, weight, out_bias)
    assert got.dtype == dtype and got.shape == (1, 1, 20)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2  # bfloat16: one rounding of each product's result
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)


def test_fuse_norms_folds_one_row_norms_into_the_linears_that_read_them():
    """The FX pass behind FUSE_NORMS: ``linear(layer_norm(x))`` of one row becomes one ``norm_linear`` call (the norm
    kept for its other readers); several rows are left alone; the values do not change."""
    from formers.generation import step_compile

    norm, first, second = torch.nn.LayerNorm(16), torch.nn.Linear(16, 8), torch.nn.Linear(16, 4, bias=False)

    def block(x):
        h = norm(x)
        return first(h).sum() + second(h).sum() + h.mean()

    for rows, fused in ((1, 2), (3, 0)):
        graphs = []

        def backend(gm, example_inputs):
            graphs.append((step_compile.fuse_norms(gm), gm))
            return gm.forward

        x = torch.randn(rows, 16)
        with torch.no_grad():
            got = torch.compile(block, backend=backend, fullgraph=True, dynamic=False)(x)
            torch.testing.assert_close(got, block(x), rtol=1e-5, atol=1e-5)
        (count, gm), = graphs
        targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
        assert count == fused and targets.count(step_compile.norm_linear) == fused
        assert targets.count(torch.nn.functional.layer_norm) == 1  # h.mean() still reads the norm
        assert sum(t in step_compile.LINEARS for t in targets) == 2 - fused


def test_fuse_norms_leaves_products_with_many_outputs_apart(monkeypatch):
    from formers.generation import step_compile

    monkeypatch.setattr(step_compile, "FUSE_NORMS_MAX_OUTPUTS", 6)  # the 8-output linear stays, the 4-output one goes
    norm, wide, narrow = torch.nn.LayerNorm(16), torch.nn.Linear(16, 8), torch.nn.Linear(16, 4)
    counts = []

    def backend(gm, example_inputs):
        counts.append(step_compile.fuse_norms(gm))
        return gm.forward

    x = torch.randn(1, 16)
    with torch.no_grad():
        got = torch.compile(lambda t: wide(norm(t)).sum() + narrow(norm(t)).sum(), backend=backend, fullgraph=True)(x)
        torch.testing.assert_close(got, wide(norm(x)).sum() + narrow(norm(x)).sum(), rtol=1e-5, atol=1e-5)
    assert counts == [1]
