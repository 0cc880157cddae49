"""The one-kernel decoding step's attention: equal to the math path, and the static decoders' tokens through it.

Without a GPU the Triton kernel runs in Triton's interpreter (``TRITON_INTERPRET=1``, set before Triton is
imported, hence the subprocesses); on CUDA the same checks run compiled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from formers.layers import attention
from formers.layers.attention import (
    KVCache,
    uses_decode_kernel,
)
from formers.layers.decode_attention import decode_attention, triton_available

needs_triton = pytest.mark.skipif(
    not triton_available(), reason="needs Triton (`pip install triton`; torch installs it on Linux x86-64)"
)

CASES = textwrap.dedent("""
    import torch
    from formers.layers.attention import scaled_dot_product_attention
    from formers.layers.decode_attention import BLOCK_T

    def cases(device, dtype):
        \"\"\"(kernel inputs, reference output, reference cache) for bias / no bias / window / a first block all masked.\"\"\"
        g = torch.Generator().manual_seed(0)
        b, h, t, dh = 2, 3, BLOCK_T + 6, 16  # two blocks, the second partly outside
        for name, with_bias, window in [("bias", True, None), ("no bias", False, None), ("window", True, 40),
                                        ("first block masked", True, "masked")]:
            kv = torch.randn(2, b, h, t, dh, generator=g).to(device, dtype)
            qkv = torch.randn(b, 3, h, dh, generator=g).to(device, dtype)
            slot = torch.tensor([37 if window != "masked" else BLOCK_T + 2], device=device)
            bias = torch.zeros(b, 1, 1, t, device=device, dtype=dtype)
            bias[0, ..., 5:9] = float("-inf")
            bias[1, ..., 50:] = float("-inf") if window != "masked" else 0.0
            if window == "masked":
                bias[..., :BLOCK_T] = float("-inf")
            ref_kv = kv.clone()
            ref_kv[0, :, :, slot.item()] = qkv[:, 1]
            ref_kv[1, :, :, slot.item()] = qkv[:, 2]
            n = window if isinstance(window, int) else t
            ref = scaled_dot_product_attention(
                qkv[:, 0, :, None].float(), ref_kv[0][:, :, :n].float(), ref_kv[1][:, :, :n].float(),
                attn_bias=bias[..., :n].float() if with_bias else None, backend="math")[:, :, 0]
            yield name, (qkv[:, 0], qkv[:, 1], qkv[:, 2], kv, slot, bias if with_bias else None, dh**-0.5, n), ref, ref_kv
""")


def run_interpreted(script: str) -> dict:
    """Runs ``script`` with Triton's interpreter on the CPU; its last stdout line is JSON."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_triton
def test_kernel_equals_the_math_path_and_writes_the_slot_interpreted():
    script = CASES + textwrap.dedent("""
        import json
        from formers.layers import decode_attention as da
        out = {}
        for name, (q, k, v, kv, slot, bias, scale, n), ref, ref_kv in cases("cpu", torch.float32):
            got = da._launch(da.decode_attention_kernel, q, k, v, kv, slot.reshape(()), bias, n, scale)
            out[name] = [(got - ref).abs().max().item(), torch.equal(kv, ref_kv)]
        print(json.dumps(out))
    """)
    results = run_interpreted(script)
    assert set(results) == {"bias", "no bias", "window", "first block masked"}
    for name, (error, cache_written) in results.items():
        assert error < 1e-5, name
        assert cache_written, name


@needs_triton
def test_static_decoders_through_the_kernel_equal_their_eager_loops_interpreted():
    """GPT's and the Transformer's static steps with the kernel forced on (on the CPU, interpreted)."""
    script = textwrap.dedent("""
        import json, torch, formers
        from formers.layers import attention
        from formers.generation.seq2seq import beam_search, greedy_search
        calls = []
        attention.decode_kernel_applies = lambda x, dh, dv: x.shape[1] == 1 and dh == dv
        kernel = attention.decode_attention
        attention.decode_attention = lambda *a, **k: calls.append(1) or kernel(*a, **k)
        torch.manual_seed(0)
        gpt = formers.create_model("gpt2", num_layers=2, num_heads=2, embed_dim=32, vocab_size=97, max_seq_len=64,
                                   dropout=0.0, attn_dropout=0.0, eos_id=None).eval()
        ids = torch.randint(0, 97, (3, 5))
        pad = torch.ones(3, 5, dtype=torch.bool)
        pad[1, :2] = False
        out = {}
        out["gpt fast"] = gpt.generate(ids, 12, padding_mask=pad, fast=True, compile=False).tolist()
        out["gpt calls"] = len(calls)
        out["gpt eager"] = gpt.generate(ids, 12, padding_mask=pad, fast=False).tolist()
        torch.manual_seed(1)
        tr = formers.create_model("transformer_tiny", embed_dim=32, num_heads=2, ffn_dim=32, num_encoder_layers=1,
                                  num_decoder_layers=2, src_vocab_size=30, tgt_vocab_size=30, max_seq_len=64).eval()
        src = torch.randint(4, 30, (3, 6))
        mask = torch.ones_like(src, dtype=torch.bool)
        mask[1, 3:] = False
        del calls[:]
        out["beam fast"] = beam_search(tr, src, mask, beam_size=3, max_new_tokens=10, fast=True)
        out["greedy fast"] = greedy_search(tr, src, mask, max_new_tokens=10, fast=True)
        out["transformer calls"] = len(calls)
        out["beam eager"] = beam_search(tr, src, mask, beam_size=3, max_new_tokens=10, fast=False)
        out["greedy eager"] = greedy_search(tr, src, mask, max_new_tokens=10, fast=False)
        print(json.dumps(out))
    """)
    out = run_interpreted(script)
    assert out["gpt calls"] >= 2 * 11  # 2 layers x the 11 single-token steps after the prompt
    assert out["gpt fast"] == out["gpt eager"]
    assert out["transformer calls"] > 0
    assert out["beam fast"] == out["beam eager"]
    assert out["greedy fast"] == out["greedy eager"]


def test_only_single_position_static_steps_without_masks_take_the_kernel(monkeypatch):
    monkeypatch.setattr(attention, "decode_kernel_applies", lambda x, dh, dv: x.shape[1] == 1 and dh == dv)
    x = torch.zeros(2, 1, 8)
    static = KVCache(2, 2, 16, 4, torch.float32, torch.device("cpu"), static=True)
    dynamic = KVCache(2, 2, 16, 4, torch.float32, torch.device("cpu"))
    row_bias = torch.zeros(2, 1, 1, 16)
    args = dict(dropout_p=0.0, backend="sdpa", head_dim=4, value_head_dim=4)
    assert uses_decode_kernel(x, static, None, row_bias, **args)
    assert uses_decode_kernel(x, static, None, None, **args)
    assert not uses_decode_kernel(x, dynamic, None, row_bias, **args)
    assert not uses_decode_kernel(x, None, None, None, **args)
    assert not uses_decode_kernel(x, static, torch.ones(2, 1, 1, 16, dtype=torch.bool), None, **args)
    assert not uses_decode_kernel(x, static, None, torch.zeros(2, 2, 1, 16), **args)  # a bias per head
    assert not uses_decode_kernel(x, static, None, None, **{**args, "dropout_p": 0.1})
    assert not uses_decode_kernel(x, static, None, None, **{**args, "backend": "math"})
    monkeypatch.setattr(attention.attention_record, "LISTENERS", [object()])  # attention maps need the weights
    assert not uses_decode_kernel(x, static, None, None, **args)


def test_the_real_gate_refuses_cpu_tensors_autograd_and_odd_head_sizes():
    from formers.layers.decode_attention import decode_kernel_applies

    assert not decode_kernel_applies(torch.zeros(1, 1, 8), 64, 64)  # CPU
    if torch.cuda.is_available():
        x = torch.zeros(1, 1, 8, device="cuda")
        assert decode_kernel_applies(x, 64, 64) == triton_available()
        assert not decode_kernel_applies(x, 48, 48)  # not a power of two
        assert not decode_kernel_applies(x, 64, 32)
        assert not decode_kernel_applies(torch.zeros(1, 2, 8, device="cuda"), 64, 64)  # two positions


def test_bad_shapes_are_refused_before_any_kernel_runs():
    kv = torch.zeros(2, 2, 3, 16, 8)
    q = torch.zeros(2, 3, 8)
    slot = torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"q, k, v must be \(B, H, Dh\) and kv"):
        decode_attention(q, q, torch.zeros(2, 3, 4), kv, slot, None, 1.0)
    with pytest.raises(ValueError, match="contiguous head dimensions"):
        decode_attention(q, torch.zeros(2, 8, 3).transpose(1, 2), q, kv, slot, None, 1.0)
    with pytest.raises(ValueError, match="bias covers 8 slots, fewer than the 16 attended"):
        decode_attention(q, q, q, kv, slot, torch.zeros(2, 1, 1, 8), 1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_equals_the_math_path_on_cuda(dtype):
    namespace: dict = {}
    exec(compile(CASES, "cases", "exec"), namespace)  # the interpreted test's cases, on the GPU
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    for name, inputs, ref, ref_kv in namespace["cases"]("cuda", dtype):
        got = decode_attention(*inputs)
        assert (got.float() - ref).abs().max().item() < tolerance, name
        assert torch.equal(inputs[3], ref_kv), name
    compiled = torch.compile(decode_attention, fullgraph=True)
    for name, inputs, ref, ref_kv in namespace["cases"]("cuda", dtype):
        assert (compiled(*inputs).float() - ref).abs().max().item() < tolerance, name
        assert torch.equal(inputs[3], ref_kv), name
