"""GPT-2 124M speed, formers against Hugging Face ``transformers`` in one run (training throughput and decoding).

Training: formers ``gpt2`` and ``GPT2LMHeadModel(GPT2Config())`` (SDPA attention), both with dropout 0 and the
SAME weights (converted with ``formers.interop.gpt2``), the same random batches (B x 1024), bf16 autocast, fused
AdamW with the same hyper-parameters, and ``torch.compile`` of model + loss for both (formers eager too). A step is
forward, backward, optimizer step and zeroing the gradients; step times come from CUDA events around each step after
warm-up, and the compiled runs are timed alternately, twice each. MFU counts 6 N + 12 L D T flops per token (N: the
parameters without the position table; the tied head counted once) against 989 TFLOP/s (H100 dense bf16).

The runs:

- ``formers_compiled``: formers' own training loss, ``model(x, targets=y).loss`` (what ``formers train`` runs: the
  output projection and the loss in chunks of rows, :func:`formers.layers.linear_cross_entropy`; no logits).
- ``formers_compiled_logits_loss``: ``model(x, targets=y, return_logits=True).loss``, the loss before the chunked
  one: the full bf16 logits, and compiled, a cross-entropy that keeps no float32 copy of them
  (:func:`formers.layers.cross_entropy`).
- ``hf_compiled``: Hugging Face's logits, then ``F.cross_entropy(logits.float(), y)``.
- ``formers_compiled_outside_loss``: formers' logits through that same outside loss (the loss's share of the gap).
- ``hf_compiled_causal``: Hugging Face with the causal mask tensor skipped while compiling (:func:`hf_is_causal`), so
  SDPA gets ``is_causal=True`` and picks flash, as Hugging Face does in eager mode. ``transformers`` 5.17
  materializes the mask whenever dynamo traces it, and PyTorch then picks the memory-efficient kernel.
- ``hf_compiled_causal_cudnn``: that, with cuDNN attention first in the SDPA priority, the kernel formers' attention
  picks: Hugging Face with formers' attention kernel. ``--hf-default-only`` skips these two runs.

Each run records the attention kernels one of its steps launches and the memory a step allocates.

Generation: batch 1, a 16-token random prompt, 256 new tokens, greedy, bf16 weights, no end token (all 256 are
generated). Hugging Face ``generate`` with its default dynamic cache, then with ``cache_implementation="static"``
(which ``transformers`` compiles itself); formers' eager ``generate`` and its CUDA-graph
:class:`~formers.generation.graphed.GraphedGreedyDecoder`. The fast path's tokens are checked against
formers' eager greedy tokens (float32, and bf16 reported).

``--attention-variants pytorch_order,contiguous,cudnn_op`` also times formers compiled with each attention variant
patched in (PyTorch's own kernel order; q/k/v made contiguous; the cuDNN kernel called directly).
``--batch-sweep 32,64`` times formers compiled at those batch sizes too (llm.c's GPT-2 runs use 64 x 1024), and
``--tuned`` with inductor's ``coordinate_descent_tuning`` (each generated kernel's launch configuration tuned by
timing its neighbours), at the main batch size and at each swept one: ``formers_compiled_b<B>[_tuned]`` rows.

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/gpt2_speed.py`` (``--smoke``: a tiny CPU run of
the same code). Writes ``benchmarks/results/gpt2_speed_h100.json`` (and ``$OUT/`` when set) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import formers
from formers.generation.causal_lm import generate
from formers.generation.graphed import GraphedGreedyDecoder
from formers.interop.gpt2 import convert_gpt2_state_dict
from formers.layers import value_checks

PEAK_FLOPS = 989e12  # H100 SXM dense bf16
RESULTS = Path(__file__).resolve().parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build_pair(device: torch.device, smoke: bool, dtype: torch.dtype = torch.float32):
    """HF GPT2LMHeadModel (random init, sdpa, dropout 0) and a formers GPT holding the same weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    size = {"n_layer": 2, "n_head": 2, "n_embd": 64, "vocab_size": 512, "n_positions": 128, "bos_token_id": 0, "eos_token_id": 0}
    size = size if smoke else {}
    hf_config = GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **size)
    hf = GPT2LMHeadModel._from_config(hf_config, attn_implementation="sdpa")
    small = (
        {"num_layers": 2, "num_heads": 2, "embed_dim": 64, "vocab_size": 512, "max_seq_len": 128, "eos_id": None}
        if smoke else {}
    )
    ours = formers.create_model("gpt2", dropout=0.0, attn_dropout=0.0, **small)
    missing, unexpected = ours.load_state_dict(convert_gpt2_state_dict(hf.state_dict(), ours.config), strict=False)
    assert set(missing) <= {"output.weight"} and not unexpected, (missing, unexpected)  # the head is tied
    return ours.to(device, dtype), hf.to(device, dtype)


def random_batches(batch: int, seq: int, vocab: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Four (inputs, targets) batches of random ids, (batch, seq) each, that a timed run rotates among."""
    gen = torch.Generator(device="cpu").manual_seed(1)
    batches = []
    for _ in range(4):
        data = torch.randint(0, vocab, (batch, seq + 1), generator=gen).to(device)
        batches.append((data[:, :-1].contiguous(), data[:, 1:].contiguous()))
    return batches


def flops_per_token(model, seq_len: int) -> float:
    c = model.config
    n = sum(p.numel() for p in model.parameters()) - model.positions.weight.numel()
    n -= (c.padded_vocab_size - c.vocab_size) * c.embed_dim  # alignment rows are not model FLOPs
    return 6 * n + 12 * c.num_layers * c.embed_dim * seq_len


def outside_loss(logits_of):
    """The loss both libraries can use: ``F.cross_entropy`` on float32 logits, outside the model."""

    def loss_of(model, x, y):
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            logits = logits_of(model, x)  # (B, T, V)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))

    return loss_of


def formers_loss(model, x, y):
    """formers' own training loss (what ``formers train`` runs): ``model(x, targets=y).loss``."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        return model(x, targets=y).loss


def formers_logits_loss(model, x, y):
    """formers' loss from the full logits (before the chunked loss): ``model(x, targets=y, return_logits=True)``."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        return model(x, targets=y, return_logits=True).loss


HF_LOSS = outside_loss(lambda m, x: m(input_ids=x).logits)
CUDNN_FIRST = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def hf_loss_causal(model, x, y):
    """HF_LOSS under its own name (so torch.compile traces it afresh, inside :func:`hf_is_causal`)."""
    return HF_LOSS(model, x, y)


def hf_loss_causal_cudnn(model, x, y):
    """HF_LOSS with cuDNN attention first in the SDPA priority, the order formers' attention uses."""
    with sdpa_kernel(CUDNN_FIRST, set_priority=True):
        return HF_LOSS(model, x, y)


@contextlib.contextmanager
def hf_is_causal():
    """Hugging Face without the causal-mask tensor while compiling: SDPA gets ``is_causal=True`` and no mask.

    ``transformers`` (5.17 here) materializes the causal mask whenever it is traced by dynamo, so under
    ``torch.compile`` SDPA receives a mask and PyTorch picks the memory-efficient kernel; eager runs (and, from
    ``transformers`` 5.2x with torch >= 2.14, compiled runs) skip the mask for unpadded batches and get flash or cuDNN.
    This patch gives the compiled model that eager behaviour, for these unpadded training batches only.
    """
    from transformers import masking_utils

    original = masking_utils._ignore_causal_mask_sdpa

    def skip(padding_mask, q_length, kv_length, q_offset, kv_offset, local_attention_size=None):
        if padding_mask is None and local_attention_size is None and q_length == kv_length:
            return True
        return original(padding_mask, q_length, kv_length, q_offset, kv_offset, local_attention_size)

    masking_utils._ignore_causal_mask_sdpa = skip
    try:
        yield
    finally:
        masking_utils._ignore_causal_mask_sdpa = original


class Trainer:
    """One model's compiled (or eager) loss + fused AdamW step on pre-made batches.

    ``context``: a context-manager factory entered around every call (compilation included).
    """

    def __init__(self, name, model, loss_of, batches, device, compile_it: bool, context=contextlib.nullcontext):
        self.name, self.model, self.batches, self.device = name, model.train(), batches, device
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
            fused=device.type == "cuda",
        )
        self.loss_fn = torch.compile(functools.partial(loss_of, model)) if compile_it else functools.partial(
            loss_of, model
        )
        self.context = context
        self.i = 0
        self.losses: list[float] = []

    def step(self) -> torch.Tensor:
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        with self.context():
            loss = self.loss_fn(x, y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.detach()

    def time(self, steps: int) -> list[float]:
        """Per-step seconds for ``steps`` steps (CUDA events; no host sync inside the loop)."""
        losses = []
        if self.device.type == "cuda":
            events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
            events[0].record()
            for i in range(steps):
                losses.append(self.step())
                events[i + 1].record()
            torch.cuda.synchronize()
            times = [events[i].elapsed_time(events[i + 1]) / 1e3 for i in range(steps)]
        else:
            times = []
            for _ in range(steps):
                t0 = time.perf_counter()
                losses.append(self.step())
                times.append(time.perf_counter() - t0)
        self.losses += [float(v) for v in losses]
        return times


def attention_kernels(tr: Trainer, device: torch.device) -> list[str]:
    """Names of the attention kernels one step of ``tr`` launches (which SDPA backend the model got)."""
    if device.type != "cuda":
        return []
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        tr.step()
        sync(device)
    words = ("fmha", "sdpa", "flash", "attention", "attn")
    names = {e.key for e in prof.key_averages() if any(w in e.key.lower() for w in words)}
    return sorted(n[:160] for n in names)


def step_memory_gb(tr: Trainer, device: torch.device) -> float | None:
    """Peak memory one step of ``tr`` allocates above what was held before it (activations, logits, gradients)."""
    if device.type != "cuda":
        return None
    sync(device)
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    tr.step()
    sync(device)
    return (torch.cuda.max_memory_allocated() - before) / 2**30


def bench_training(args, device, out: dict) -> None:
    torch.manual_seed(0)
    ours, hf = build_pair(device, args.smoke)
    seq = ours.config.max_seq_len if not args.smoke else 64
    batch = args.batch if not args.smoke else 2
    vocab = ours.config.vocab_size
    batches = random_batches(batch, seq, vocab, device)
    fpt = flops_per_token(ours, seq)
    tokens = batch * seq
    out["training"] = {"batch": batch, "seq_len": seq, "flops_per_token": fpt, "peak_flops": PEAK_FLOPS, "runs": {}}

    # Same first loss from the same weights (before any step): the two models compute the same function.
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16), value_checks(False):
        x, y = batches[0]
        l_ours = F.cross_entropy(ours(x).logits.float().view(-1, vocab), y.view(-1)).item()
        l_hf = F.cross_entropy(hf(input_ids=x).logits.float().view(-1, vocab), y.view(-1)).item()
    out["training"]["initial_loss"] = {"formers": l_ours, "hf": l_hf}
    print(f"initial loss formers {l_ours:.5f}  hf {l_hf:.5f}", flush=True)

    compile_it = not args.smoke or args.smoke_compile
    formers_outside = outside_loss(lambda m, x: m(x).logits)
    trainers = {
        "formers_compiled": Trainer("formers_compiled", ours, formers_loss, batches, device, compile_it),
        "hf_compiled": Trainer("hf_compiled", hf, HF_LOSS, batches, device, compile_it),
        "formers_compiled_outside_loss": Trainer(
            "formers_compiled_outside_loss", ours, formers_outside, batches, device, compile_it
        ),
        "formers_compiled_logits_loss": Trainer(
            "formers_compiled_logits_loss", ours, formers_logits_loss, batches, device, compile_it
        ),
    }
    if not args.hf_default_only:
        patched = (("hf_compiled_causal", hf_loss_causal), ("hf_compiled_causal_cudnn", hf_loss_causal_cudnn))
        for name, loss_of in patched:
            trainers[name] = Trainer(name, hf, loss_of, batches, device, compile_it, context=hf_is_causal)
    times: dict[str, list[float]] = {k: [] for k in trainers}
    with value_checks(False):  # no host reads of token ids inside the step (as the training tasks do)
        for name, tr in trainers.items():
            t0 = time.perf_counter()
            for _ in range(args.warmup):
                tr.step()
            sync(device)
            print(f"{name}: warm-up (compile) {time.perf_counter() - t0:.1f}s", flush=True)
            run = out["training"]["runs"].setdefault(name, {})
            run["warmup_s"] = time.perf_counter() - t0
            run["attention_kernels"] = attention_kernels(tr, device)
            run["step_memory_gb"] = step_memory_gb(tr, device)
        for _ in range(2):  # alternate, twice each: the spread shows the noise
            for name, tr in trainers.items():
                times[name] += tr.time(args.steps)
        # formers eager, after the compiled runs (same model object, its own optimizer state continues)
        eager = Trainer("formers_eager", ours, formers_loss, batches, device, False)
        eager.opt = trainers["formers_compiled"].opt
        for _ in range(3):
            eager.step()
        times["formers_eager"] = eager.time(args.steps)
        trainers["formers_eager"] = eager

    for name, ts in times.items():
        med = statistics.median(ts)
        half = len(ts) // 2
        r = out["training"]["runs"].setdefault(name, {})
        r.update({
            "step_ms_median": med * 1e3,
            "step_ms_mean": statistics.mean(ts) * 1e3,
            "step_ms_median_round1": statistics.median(ts[:half]) * 1e3 if name != "formers_eager" else None,
            "step_ms_median_round2": statistics.median(ts[half:]) * 1e3 if name != "formers_eager" else None,
            "loss": "formers' model(x, targets=y).loss (chunked)" if name in ("formers_compiled", "formers_eager")
            else "formers' model(x, targets=y, return_logits=True).loss" if name == "formers_compiled_logits_loss"
            else "F.cross_entropy(logits.float()) outside the model",
            "tokens_per_s": tokens / med,
            "mfu": tokens / med * fpt / PEAK_FLOPS,
            "last_losses": trainers[name].losses[-3:],
        })
    if device.type == "cuda":
        out["training"]["max_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    runs = out["training"]["runs"]
    out["training"]["speedup_formers_compiled_vs_hf_compiled"] = (
        runs["formers_compiled"]["tokens_per_s"] / runs["hf_compiled"]["tokens_per_s"]
    )
    if args.attention_variants:
        bench_attention_variants(args, device, out, ours, batches, fpt)
    if args.batch_sweep or args.tuned:
        bench_step_variants(args, device, out, ours, fpt)
    del trainers, eager, ours, hf
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _attention_variant(name: str):
    """A replacement for ``formers.layers.attention.scaled_dot_product_attention`` (what SelfAttention calls)."""
    from formers.layers import attention

    original = attention.scaled_dot_product_attention
    if name == "pytorch_order":  # PyTorch's own kernel order (flash first), no priority context
        def variant(q, k, v, **kw):
            saved = list(attention.SDPA_PRIORITY)
            attention.SDPA_PRIORITY.clear()
            try:
                return original(q, k, v, **kw)
            finally:
                attention.SDPA_PRIORITY.extend(saved)
    elif name == "contiguous":  # q, k, v copied out of the fused projection's strides first
        def variant(q, k, v, **kw):
            return original(q.contiguous(), k.contiguous(), v.contiguous(), **kw)
    elif name == "cudnn_op":  # the cuDNN kernel called directly (no dispatcher choice)
        def variant(q, k, v, attn_mask=None, attn_bias=None, is_causal=False, dropout_p=0.0, scale=None, **kw):
            if attn_mask is not None or attn_bias is not None or not q.is_cuda or q.shape[-2] != k.shape[-2]:
                return original(q, k, v, attn_mask=attn_mask, attn_bias=attn_bias, is_causal=is_causal,
                                dropout_p=dropout_p, scale=scale, **kw)
            return torch.ops.aten._scaled_dot_product_cudnn_attention(
                q, k, v, None, True, dropout_p, is_causal, False, scale=scale
            )[0]
    else:
        raise ValueError(f"unknown attention variant {name!r}; expected pytorch_order, contiguous or cudnn_op")
    return original, variant


def extra_formers_run(args, device, out: dict, name: str, ours, batches, fpt: float,
                      context=contextlib.nullcontext) -> None:
    """formers compiled once more, from a fresh dynamo state, with ``context`` entered around compiling and timing;
    timed as the main runs and recorded as ``runs[name]`` (with its batch size)."""
    tokens = batches[0][0].numel()
    try:
        with context():
            torch._dynamo.reset()
            tr = Trainer(name, ours, formers_loss, batches, device, not args.smoke or args.smoke_compile)
            with value_checks(False):
                for _ in range(args.warmup):
                    tr.step()
                ts = tr.time(args.steps) + tr.time(args.steps)
        med = statistics.median(ts)
        out["training"]["runs"][name] = {
            "batch": batches[0][0].shape[0], "step_ms_median": med * 1e3, "tokens_per_s": tokens / med,
            "mfu": tokens / med * fpt / PEAK_FLOPS, "last_losses": tr.losses[-3:],
        }
        print(f"{name}: {med * 1e3:.2f} ms/step, {tokens / med:,.0f} tokens/s", flush=True)
    except Exception as e:  # noqa: BLE001 - a variant that fails is recorded; the others still run
        out["training"]["runs"][name] = {"error": f"{type(e).__name__}: {e}"[:1000]}
        traceback.print_exc()
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def bench_attention_variants(args, device, out: dict, ours, batches, fpt: float) -> None:
    """formers compiled again with each attention variant patched in (what would make the step faster?)."""
    from formers.layers import attention

    for name in args.attention_variants.split(","):
        original, variant = _attention_variant(name)

        @contextlib.contextmanager
        def patched(variant=variant, original=original):
            attention.scaled_dot_product_attention = variant
            try:
                yield
            finally:
                attention.scaled_dot_product_attention = original

        extra_formers_run(args, device, out, f"formers_compiled_{name}", ours, batches, fpt, patched)


def bench_step_variants(args, device, out: dict, ours, fpt: float) -> None:
    """formers compiled at the ``--batch-sweep`` batch sizes, and with inductor's coordinate-descent tuning of its
    generated kernels (``--tuned``: at the main batch size and at each swept one)."""
    from torch._inductor import config as inductor_config

    seq, main_batch = out["training"]["seq_len"], out["training"]["batch"]
    sizes = [int(b) for b in args.batch_sweep.split(",") if b]
    variants = [(b, False) for b in sizes] + ([(b, True) for b in (main_batch, *sizes)] if args.tuned else [])
    for batch, tuned in variants:
        name = f"formers_compiled_b{batch}" + ("_tuned" if tuned else "")
        batches = random_batches(batch, seq, ours.config.vocab_size, device)
        context = (lambda: inductor_config.patch(coordinate_descent_tuning=True)) if tuned else contextlib.nullcontext
        extra_formers_run(args, device, out, name, ours, batches, fpt, context)


def timed(fn, device, repeats: int) -> tuple[list[float], object]:
    result = None
    ts = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        ts.append(time.perf_counter() - t0)
    return ts, result


def bench_generation(args, device, out: dict) -> None:
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ours, hf = build_pair(device, args.smoke, dtype)
    ours.config.eos_id = None  # no end token: every run generates all new tokens
    ours.eval()
    hf.eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    new = args.new_tokens if not args.smoke else 24
    prompt = torch.randint(0, ours.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(2)).to(device)
    g = out["generation"] = {"prompt_len": 16, "new_tokens": new, "dtype": str(dtype), "runs": {}}

    def record(name, fn, repeats, warmup=1):
        try:
            for _ in range(warmup):
                fn()
            ts, ids = timed(fn, device, repeats)
            med = statistics.median(ts)
            n = ids.shape[1]
            g["runs"][name] = {"s_median": med, "tokens": n, "tokens_per_s": n / med, "times_s": ts}
            print(f"{name}: {n / med:.0f} tokens/s ({n} tokens)", flush=True)
            return ids
        except Exception as e:  # noqa: BLE001 - report and go on (e.g. a static cache this version lacks)
            g["runs"][name] = {"error": f"{type(e).__name__}: {e}"[:800]}
            traceback.print_exc()
            return None

    mask = torch.ones_like(prompt)
    hf_ids = record(
        "hf_generate_dynamic",
        lambda: hf.generate(prompt, attention_mask=mask, max_new_tokens=new, do_sample=False)[:, 16:],
        repeats=3,
    )
    eager_ids = record("formers_generate_eager", lambda: generate(ours, prompt, new), repeats=3)
    decoder = GraphedGreedyDecoder(ours, 1, 16 + new)
    t0 = time.perf_counter()
    decoder.generate(prompt, new)  # captures the graph
    sync(device)
    g["fast_capture_s"] = time.perf_counter() - t0
    fast_ids = record("formers_cuda_graph", lambda: decoder.generate(prompt, new), repeats=10)
    g["fast_equals_eager_bf16"] = fast_ids is not None and eager_ids is not None and fast_ids.tolist() == eager_ids.tolist()
    try:
        decoder_c = GraphedGreedyDecoder(ours, 1, 16 + new, compile=True)
        t0 = time.perf_counter()
        decoder_c.generate(prompt, new)  # compiles, then captures
        sync(device)
        g["fast_compiled_capture_s"] = time.perf_counter() - t0
        fast_c_ids = record("formers_cuda_graph_compiled", lambda: decoder_c.generate(prompt, new), repeats=10)
        g["fast_compiled_equals_eager_bf16"] = fast_c_ids is not None and fast_c_ids.tolist() == eager_ids.tolist()
    except Exception as e:  # noqa: BLE001 - recorded in the results, the other runs go on
        g["runs"]["formers_cuda_graph_compiled"] = {"error": f"{type(e).__name__}: {e}"[:800]}
        traceback.print_exc()
    if hf_ids is not None and eager_ids is not None:  # same weights: informative only (bf16 ties can differ)
        g["formers_equals_hf_tokens_bf16"] = sum(a == b for a, b in zip(hf_ids[0].tolist(), eager_ids[0].tolist()))
    static_ids = record(
        "hf_generate_static_compiled",
        lambda: hf.generate(
            prompt, attention_mask=mask, max_new_tokens=new, do_sample=False, cache_implementation="static"
        )[:, 16:],
        repeats=3,
        warmup=2,
    )
    if static_ids is not None and hf_ids is not None:
        g["hf_static_equals_dynamic"] = static_ids.tolist() == hf_ids.tolist()

    # Exactness in float32: the fast path must give formers' eager greedy tokens.
    ours32 = ours.float()
    eager32 = generate(ours32, prompt, new)
    fast32 = GraphedGreedyDecoder(ours32, 1, 16 + new).generate(prompt, new)
    g["fast_equals_eager_fp32"] = fast32.tolist() == eager32.tolist()
    if "tokens_per_s" in g["runs"].get("formers_cuda_graph_compiled", {}):
        fast32_c = GraphedGreedyDecoder(ours32, 1, 16 + new, compile=True).generate(prompt, new)
        g["fast_compiled_equals_eager_fp32"] = fast32_c.tolist() == eager32.tolist()
    print(f"fast == eager: fp32 {g['fast_equals_eager_fp32']}  bf16 {g['fast_equals_eager_bf16']}", flush=True)

    runs = g["runs"]
    for ours_name in ("formers_cuda_graph", "formers_cuda_graph_compiled"):
        for ref in ("hf_generate_dynamic", "hf_generate_static_compiled"):
            if "tokens_per_s" in runs.get(ref, {}) and "tokens_per_s" in runs.get(ours_name, {}):
                g[f"speedup_{ours_name}_vs_{ref}"] = runs[ours_name]["tokens_per_s"] / runs[ref]["tokens_per_s"]


def table(out: dict) -> str:
    lines = []
    t = out.get("training")
    if t:
        lines.append(f"Training GPT-2 124M, batch {t['batch']} x {t['seq_len']}, bf16 autocast, fused AdamW")
        lines.append(f"{'run':<32}{'step ms':>10}{'tokens/s':>12}{'MFU':>8}{'vs HF compiled':>16}")
        hf = t["runs"].get("hf_compiled", {}).get("tokens_per_s")
        for name, r in t["runs"].items():
            if "tokens_per_s" not in r:
                continue
            ratio = f"{r['tokens_per_s'] / hf:.2f}x" if hf else "-"
            lines.append(
                f"{name:<32}{r['step_ms_median']:>10.1f}{r['tokens_per_s']:>12,.0f}{100 * r['mfu']:>7.1f}%{ratio:>16}"
            )
    g = out.get("generation")
    if g:
        lines.append(
            f"Greedy generation, batch 1, prompt {g['prompt_len']}, {g['new_tokens']} new tokens, {g['dtype']}"
        )
        lines.append(f"{'run':<30}{'tokens/s':>12}{'vs HF dynamic':>15}{'vs HF static':>14}")
        runs = g["runs"]
        ref_d = runs.get("hf_generate_dynamic", {}).get("tokens_per_s")
        ref_s = runs.get("hf_generate_static_compiled", {}).get("tokens_per_s")
        for name, r in runs.items():
            if "tokens_per_s" not in r:
                lines.append(f"{name:<30}  error: {r.get('error', '')[:60]}")
                continue
            a = f"{r['tokens_per_s'] / ref_d:.1f}x" if ref_d else "-"
            b = f"{r['tokens_per_s'] / ref_s:.1f}x" if ref_s else "-"
            lines.append(f"{name:<30}{r['tokens_per_s']:>12,.0f}{a:>15}{b:>14}")
        lines.append(
            f"fast path == eager greedy tokens: fp32 {g.get('fast_equals_eager_fp32')}, "
            f"bf16 {g.get('fast_equals_eager_bf16')}; compiled step: fp32 {g.get('fast_compiled_equals_eager_fp32')}, "
            f"bf16 {g.get('fast_compiled_equals_eager_bf16')}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per round (two rounds per model)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU (checks the script)")
    parser.add_argument("--smoke-compile", action="store_true", help="with --smoke, still torch.compile")
    parser.add_argument(
        "--attention-variants", default="",
        help="comma list of extra compiled formers runs: pytorch_order, contiguous, cudnn_op",
    )
    parser.add_argument(
        "--hf-default-only", action="store_true",
        help="skip the Hugging Face runs given the unmasked causal attention (flash; cuDNN first)",
    )
    parser.add_argument(
        "--batch-sweep", default="",
        help="comma list of further batch sizes to time formers compiled at (e.g. 32,64; llm.c trains at 64)",
    )
    parser.add_argument(
        "--tuned", action="store_true",
        help="also time formers compiled with inductor's coordinate_descent_tuning (main and swept batch sizes)",
    )
    parser.add_argument("--output", default=str(RESULTS / "gpt2_speed_h100.json"))
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    import transformers

    out: dict = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "smoke": args.smoke,
    }
    paths = [Path(args.output)] + ([Path(os.environ["OUT"]) / Path(args.output).name] if os.environ.get("OUT") else [])

    def save() -> None:
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(out, indent=2) + "\n")

    for part, fn in (("training", bench_training), ("generation", bench_generation)):
        if getattr(args, f"skip_{part}"):
            continue
        try:
            fn(args, device, out)
        except Exception as e:  # noqa: BLE001 - recorded in the results, the other part still runs
            out[f"{part}_error"] = f"{type(e).__name__}: {e}"[:2000]
            traceback.print_exc()
        save()
    print(table(out))


if __name__ == "__main__":
    main()
