"""The one-kernel decoding step's attention: equal to the math path, and the static decoders' tokens through it.

Without a GPU the Triton kernel runs in Triton's interpreter (``TRITON_INTERPRET=1``, set before Triton is
imported, hence the subprocesses); on CUDA the same checks run compiled.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from formers.layers import attention
from formers.layers import decode_attention as decode_attention_module
from formers.layers.attention import (
    KVCache,
    scaled_dot_product_attention,
    uses_decode_kernel,
)
from formers.layers.decode_attention import (
    check_cases,
    decode_attention,
    first_mismatch,
    triton_available,
)

needs_triton = pytest.mark.skipif(
    not triton_available(), reason="needs Triton (`pip install triton`; torch installs it on Linux x86-64)"
)

def run_interpreted(script: str) -> dict:
    """Runs ``script`` with Triton's interpreter on the CPU; its last stdout line is JSON."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_triton
def test_kernel_equals_the_reference_and_writes_the_slot_interpreted():
    script = textwrap.dedent("""
        import json, torch
        from formers.layers import decode_attention as da
        launch = lambda q, k, v, kv, slot, bias, scale, n, origin, parts, locks=None: da._launch(
            (da.decode_attention_kernel, da.combine_parts_kernel), q, k, v, kv, slot, bias, origin, n, scale,
            parts=parts, locks=locks)
        cases = [name for name, *_ in da.check_cases(torch.device("cpu"), torch.float32)]
        cpu = torch.device("cpu")
        mismatches = [da.first_mismatch(cpu, launch, (torch.float32,), fused=fused) for fused in (False, True)]
        print(json.dumps([cases, mismatches]))
    """)
    cases, mismatches = run_interpreted(script)
    assert cases == ["bias", "no bias", "window", "first block masked", "origin", "many rows", "packed", "cross",
                     "cross, many rows"]
    assert mismatches == [None, None]  # parts combined by a second kernel, and by the last part to finish


def test_first_mismatch_reports_parts_combined_by_the_last_that_leave_a_lock_set():
    """The fused mode's check covers the lock table: a launcher that leaves a count behind is caught."""
    calls = []

    def sloppy(q, k, v, kv, slot, bias, scale, n, origin, parts, locks=None):
        calls.append(locks is not None)
        kv.copy_(expected_kv)  # what the kernel would have written
        locks[0] = 1
        return expected

    name, args, expected, expected_kv = next(check_cases(torch.device("cpu"), torch.float32))
    mismatch = decode_attention_module.first_mismatch(torch.device("cpu"), sloppy, (torch.float32,), fused=True)
    assert mismatch == "bias, parts, combined by the last, torch.float32: locks not left at zero" and calls == [True]


def test_lock_tables_only_where_the_in_kernel_combining_is_on_and_verified(monkeypatch):
    verified = {}
    monkeypatch.setattr(decode_attention_module, "verify_fused_combine", lambda device, dtype: verified.get(dtype))
    bf16 = torch.bfloat16
    monkeypatch.setattr(decode_attention_module, "FUSED_COMBINE", True)
    assert decode_attention_module.lock_table(2, 3, torch.device("cpu"), bf16) is None  # CPU: no kernel
    assert decode_attention_module.lock_table(2, 3, torch.device("cuda"), bf16) is None  # not verified there
    verified[bf16] = True
    monkeypatch.setattr(torch, "zeros", lambda n, dtype, device: ("zeros", n, dtype, str(device)))  # no GPU here
    assert decode_attention_module.lock_table(2, 3, torch.device("cuda"), bf16) == ("zeros", 6, torch.int32, "cuda")
    monkeypatch.setattr(decode_attention_module, "FUSED_COMBINE", False)
    assert decode_attention_module.lock_table(2, 3, torch.device("cuda"), bf16) is None


def test_check_cases_agree_with_the_math_attention_path():
    """The self-check's expected values (plain torch) are those of the library's reference attention."""
    for name, (q, k, v, kv, slot, bias, scale, n, origin), expected, expected_kv in check_cases(
        torch.device("cpu"), torch.float32
    ):
        if slot is None:  # cross-attention: G query rows per memory row, through the grouped attention module path
            group = q.shape[0] // kv.shape[1]
            rows = torch.arange(q.shape[0]) // group
            ref = scaled_dot_product_attention(q[:, :, None], kv[0, rows], kv[1, rows], attn_bias=bias[rows],
                                               scale=scale, backend="math")[:, :, 0]
            torch.testing.assert_close(expected, ref, rtol=0, atol=1e-6, msg=name)
            assert torch.equal(kv, expected_kv)
            continue
        if k is None:  # packed (B, 3, H, Dh)
            q, k, v = q.unbind(1)
        logical = expected_kv.clone()
        if origin is not None:  # row r's slot s is row origin[r, s]'s, except the slot the step writes
            for r in range(kv.shape[1]):
                rows = origin[r].clone()
                rows[slot.item()] = r
                logical[:, r] = expected_kv[:, rows, :, torch.arange(kv.shape[3])].permute(1, 2, 0, 3)
        n = min(n, slot.item() + 1)  # slots after the step's are not written yet: never read
        keys, values = logical[0, :, :, :n], logical[1, :, :, :n]
        ref = scaled_dot_product_attention(q[:, :, None], keys, values, attn_bias=None if bias is None else
                                           bias[..., :n], scale=scale, backend="math")[:, :, 0]
        torch.testing.assert_close(expected, ref, rtol=0, atol=1e-6, msg=name)
        assert torch.equal(expected_kv[0, :, :, slot.item()], k) and torch.equal(expected_kv[1, :, :, slot.item()], v)


@pytest.fixture()
def checks_as_if_on_cuda(monkeypatch):
    """The once-per-device checks with Triton as if installed, device 0 current and no GPU needed; nothing
    recorded yet."""
    monkeypatch.setattr(decode_attention_module, "VERIFIED", {})
    monkeypatch.setattr(decode_attention_module, "FUSED_VERIFIED", {})
    monkeypatch.setattr(decode_attention_module, "triton", object())
    monkeypatch.setattr(decode_attention_module, "UNAVAILABLE", None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())


def test_a_failing_kernel_is_not_used_on_that_device(monkeypatch, checks_as_if_on_cuda):
    """The once-per-device check: an error or a wrong result warns and keeps the general path."""
    checked = []
    monkeypatch.setattr(decode_attention_module, "first_mismatch",
                        lambda device, attend, dtypes, fused: checked.append(dtypes) or "bias: output off by 1")
    bf16, fp32 = torch.bfloat16, torch.float32
    with pytest.warns(RuntimeWarning, match="failed its check on cuda:0 .bias: output off by 1.; decoding uses"):
        assert not decode_attention_module.verify_decode_kernel(torch.device("cuda"), bf16)
    assert decode_attention_module.VERIFIED == {(0, bf16): False} and checked == [(bf16,)]

    def broken(device, attend, dtypes, fused):
        raise RuntimeError("no driver")

    monkeypatch.setattr(decode_attention_module, "first_mismatch", broken)
    with pytest.warns(RuntimeWarning, match=r"cuda:1 \(RuntimeError: no driver\)"):
        assert not decode_attention_module.verify_decode_kernel(torch.device("cuda", 1), bf16)
    monkeypatch.setattr(decode_attention_module, "first_mismatch", lambda device, attend, dtypes, fused: None)
    assert decode_attention_module.verify_decode_kernel(torch.device("cuda", 2), fp32)
    assert decode_attention_module.VERIFIED == {(0, bf16): False, (1, bf16): False, (2, fp32): True}
    assert not decode_attention_module.verify_decode_kernel(torch.device("cuda", 2), torch.float64)  # no tolerance
    assert not decode_attention_module.verify_decode_kernel(torch.device("cpu"), fp32)
    assert len(decode_attention_module.VERIFIED) == 3


@needs_triton
def test_static_decoders_through_the_kernel_equal_their_eager_loops_interpreted():
    """GPT's and the Transformer's static steps with the kernel forced on (on the CPU, interpreted)."""
    script = textwrap.dedent("""
        import json, torch, formers
        from formers.layers import attention
        from formers.generation.seq2seq import beam_search, greedy_search
        torch.manual_seed(0)
        gpt = formers.create_model("gpt2", num_layers=2, num_heads=2, embed_dim=32, vocab_size=97, max_seq_len=64,
                                   dropout=0.0, attn_dropout=0.0, eos_id=None).eval()
        ids = torch.randint(0, 97, (3, 5))
        pad = torch.ones(3, 5, dtype=torch.bool)
        pad[1, :2] = False
        torch.manual_seed(1)
        tr = formers.create_model("transformer_tiny", embed_dim=32, num_heads=2, ffn_dim=32, num_encoder_layers=1,
                                  num_decoder_layers=2, src_vocab_size=30, tgt_vocab_size=30, max_seq_len=64).eval()
        src = torch.randint(4, 30, (3, 6))
        mask = torch.ones_like(src, dtype=torch.bool)
        mask[1, 3:] = False
        out = {}  # the eager loops without the kernel (as on a CPU), then the static steps with it forced on
        out["gpt eager"] = gpt.generate(ids, 12, padding_mask=pad, fast=False).tolist()
        out["beam eager"] = beam_search(tr, src, mask, beam_size=3, max_new_tokens=10, fast=False)
        out["greedy eager"] = greedy_search(tr, src, mask, max_new_tokens=10, fast=False)
        calls = []
        attention.decode_kernel_applies = lambda x, dh, dv, dtype: x.shape[1] == 1 and dh == dv
        kernel = attention.decode_attention
        attention.decode_attention = lambda *a, **k: calls.append("cross" if a[4] is None else "self") or kernel(*a, **k)
        out["gpt fast"] = gpt.generate(ids, 12, padding_mask=pad, fast=True, compile=False).tolist()
        out["gpt calls"] = calls.count("self")
        del calls[:]
        out["beam fast"] = beam_search(tr, src, mask, beam_size=3, max_new_tokens=10, fast=True)
        out["beam calls"] = {kind: calls.count(kind) for kind in ("self", "cross")}
        del calls[:]
        out["greedy fast"] = greedy_search(tr, src, mask, max_new_tokens=10, fast=True)
        out["greedy calls"] = {kind: calls.count(kind) for kind in ("self", "cross")}
        print(json.dumps(out))
    """)
    out = run_interpreted(script)
    assert out["gpt calls"] >= 2 * 11  # 2 layers x the 11 single-token steps after the prompt
    assert out["gpt fast"] == out["gpt eager"]
    # the Transformer's decoder steps: self-attention and (the memory read once per sentence) cross-attention
    assert min(out["beam calls"].values()) >= 2 and min(out["greedy calls"].values()) >= 2, out
    assert out["beam fast"] == out["beam eager"]
    assert out["greedy fast"] == out["greedy eager"]


def test_only_single_position_static_steps_without_masks_take_the_kernel(monkeypatch):
    monkeypatch.setattr(attention, "decode_kernel_applies", lambda x, dh, dv, dtype: x.shape[1] == 1 and dh == dv)
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

    assert not decode_kernel_applies(torch.zeros(1, 1, 8), 64, 64, torch.float32)  # CPU
    if torch.cuda.is_available():
        x = torch.zeros(1, 1, 8, device="cuda")
        assert decode_attention_module.verify_decode_kernel(x.device, torch.float32) == triton_available()
        assert decode_kernel_applies(x, 64, 64, torch.float32) == triton_available()
        assert not decode_kernel_applies(x, 48, 48, torch.float32)  # not a power of two
        assert not decode_kernel_applies(x, 64, 32, torch.float32)
        assert not decode_kernel_applies(torch.zeros(1, 2, 8, device="cuda"), 64, 64, torch.float32)  # two positions
        assert not decode_kernel_applies(x, 64, 64, torch.float64)  # never checked


@needs_triton
def test_bad_shapes_are_refused_before_any_kernel_runs():
    kv = torch.zeros(2, 2, 3, 16, 8)
    q = torch.zeros(2, 3, 8)
    slot = torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"q, k, v must be \(B, H, Dh\) and kv"):
        decode_attention(q, q, q, kv[0], slot, None, 1.0)  # a cache without its keys/values axis
    with pytest.raises(ValueError, match=r"q, k, v must be \(B, H, Dh\) and kv"):
        decode_attention(q, q, torch.zeros(2, 3, 4), kv, slot, None, 1.0)
    with pytest.raises(ValueError, match="contiguous head dimensions"):
        decode_attention(q, torch.zeros(2, 8, 3).transpose(1, 2), q, kv, slot, None, 1.0)
    with pytest.raises(ValueError, match="bias covers 8 slots, fewer than the 16 attended"):
        decode_attention(q, q, q, kv, slot, torch.zeros(2, 1, 1, 8), 1.0)
    with pytest.raises(ValueError, match=r"origin must be a long \(B, >= 16\) table .* got torch.int32 \(2, 16\)"):
        decode_attention(q, q, q, kv, slot, None, 1.0, origin=torch.zeros(2, 16, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"got torch.int64 \(2, 8\)"):
        decode_attention(q, q, q, kv, slot, None, 1.0, origin=torch.zeros(2, 8, dtype=torch.long))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@needs_triton
def test_kernel_equals_the_reference_on_cuda_eager_and_compiled():
    device = torch.device("cuda")
    assert first_mismatch(device, decode_attention) is None
    with torch._dynamo.config.patch(recompile_limit=64):  # a compile per case and dtype (sizes, None or not)
        assert first_mismatch(device, torch.compile(decode_attention, fullgraph=True)) is None
    assert decode_attention_module.verify_decode_kernel(device, torch.bfloat16)


def test_without_the_kernel_a_direct_call_says_why(monkeypatch):
    monkeypatch.setattr(decode_attention_module, "UNAVAILABLE", "Triton is not installed")
    q = torch.zeros(1, 1, 16)
    with pytest.raises(RuntimeError, match="kernel cannot run here: Triton is not installed"):
        decode_attention(q, q, q, torch.zeros(2, 1, 1, 4, 16), torch.zeros(1, dtype=torch.long), None, 1.0)


def test_a_failed_in_kernel_combining_check_keeps_the_second_kernel(monkeypatch, checks_as_if_on_cuda):
    asked = []
    monkeypatch.setattr(decode_attention_module, "first_mismatch",
                        lambda device, attend, dtypes, fused: asked.append(fused) or "bias: locks not left")
    with pytest.warns(RuntimeWarning, match="parts combined in-kernel failed its check on cuda:0 .bias: locks not "
                                            "left.; its parts are combined by a second kernel there"):
        assert not decode_attention_module.verify_fused_combine(torch.device("cuda"), torch.bfloat16)
    assert decode_attention_module.FUSED_VERIFIED == {(0, torch.bfloat16): False} and asked == [True]
