"""One decoding step's self-attention over a static KV cache, in one GPU kernel.

A batch-1 decoding step of a small model is a chain of small kernels, each costing a few microseconds whatever its
work. Attention of one new query per row took five of them per layer in GPT-2's compiled step on an H100: the
query's copy for cuDNN, the key and value writes into the cache, cuDNN's attention and the copy of its output (12 us
of a 33 us layer). :func:`decode_attention` does all of it in one Triton kernel, a program per (row, head): it writes
the new key and value at the step's slot, then attends the query to every slot written so far with an online
softmax in float32 (Milakov & Gimelshein 2018, as FlashAttention does), the new slot's key and value taken from the
registers rather than read back. The same kernel serves decoding's cross-attention (``slot`` None): nothing is
written, and the beams of a sentence, consecutive rows, all read its one copy of the encoder's keys and values. A
batch-1 step has only as many programs as heads (12 for GPT-2, on 132 SMs), each
walking the whole cache: with fewer than :data:`PROGRAMS` (row, head) pairs the cache is read in parts by programs
side by side, each keeping its own running max, sum and accumulator, and a second small kernel combines them
(FlashDecoding, Dao et al. 2023; :func:`split_size`). Beam search's rows may read their earlier slots from other rows through a table
(``origin``), so that reordering beams moves no keys or values.

It computes the same function as :func:`formers.layers.attention.scaled_dot_product_attention` with an additive
bias (the math path is the reference its tests compare against) and is used by
:class:`~formers.layers.attention.SelfAttention` and :class:`~formers.layers.attention.MultiHeadAttention` for
single-position steps on a static cache on CUDA (:func:`decode_kernel_applies`), on a device where it passed
:func:`verify_decode_kernel`. It is a ``torch.library`` Triton op: ``torch.compile`` traces into it and schedules the
kernel between its own, and a CUDA graph captures it like any kernel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from formers.layers.kernel_checks import checked_once

try:  # the kernel's compiler; torch installs it on Linux x86-64
    import triton
    import triton.language as tl
except ImportError:
    triton = None

BLOCK_T = 64  # cache slots per inner iteration
NUM_WARPS = 4  # warps per (row, head) program, Triton's default; benchmarks/decode_attention_variants.py times others
PROGRAMS = 128  # fewer (row, head) programs than this (an H100 has 132 SMs): each reads a part of the cache
# this many (row, head) programs or more (a beam batch): BLOCK_T_MANY slots, NUM_WARPS_MANY warps each, so that more
# programs share an SM; beam-4 self-attention of 604 rows x 4 heads of 128, 21 slots, on an H100: 10.2 us against
# 32.8 us with the defaults (benchmarks/results/decode_attention_variants_h100.json)
MANY_PROGRAMS, BLOCK_T_MANY, NUM_WARPS_MANY = 1024, 32, 1
# static caches hand the kernel a lock table (lock_table), so that the last part of a (row, head) combines the parts
# in the same kernel: 12 kernels fewer in GPT-2's batch-1 step. Timed on an H100: 2,793 -> 2,835 tokens/s, within the
# spread of repeated runs (benchmarks/results/generate_step_variants_h100_combine.json): off
FUSED_COMBINE = False

UNAVAILABLE: str | None = "Triton is not installed" if triton is None else None
"""Why the kernel cannot run in this process (set below if registering its op fails), or None."""


def triton_available() -> bool:
    """Whether the kernel can run in this process: Triton imported and the op registered (:data:`UNAVAILABLE`)."""
    return UNAVAILABLE is None


if triton is not None:

    # num_slots changes with a beam search's window: one compiled kernel for all of them, so that a window's first
    # step, captured in a CUDA graph without a warm-up, never compiles
    @triton.jit(do_not_specialize=["num_slots"])
    def decode_attention_kernel(
        q_ptr, k_ptr, v_ptr, kv_ptr, bias_ptr, slot_ptr, origin_ptr, out_ptr, part_ptr, stats_ptr, lock_ptr,
        s_q_b, s_q_h, s_k_b, s_k_h, s_v_b, s_v_h, off_k, off_v,
        s_kv_part, s_kv_b, s_kv_h, s_kv_t,
        s_bias_b, s_bias_t, s_origin_b,
        s_out_b, s_out_h,
        num_heads, num_slots, scale, group,
        HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ORIGIN: tl.constexpr,
        SPLIT: tl.constexpr, HAS_NEW: tl.constexpr, FUSED_COMBINE: tl.constexpr, PARTS: tl.constexpr,
    ):
        row = (tl.program_id(0) // num_heads).to(tl.int64)  # 64-bit offsets: large beam batches
        head = (tl.program_id(0) % num_heads).to(tl.int64)
        part = tl.program_id(1)  # which SPLIT slots this program reads (SPLIT 0: all of them, one part)
        d = tl.arange(0, HEAD_DIM)  # (Dh,)
        q = tl.load(q_ptr + row * s_q_b + head * s_q_h + d).to(tl.float32)  # (Dh,)
        own = row // group  # the row of kv and bias this row reads (group > 1: a beam reads its sentence's memory)
        head_base = kv_ptr + head * s_kv_h  # with origin, slot t of this row lives in row origin[row, t] of it
        k_base = head_base + own * s_kv_b
        if HAS_NEW:  # self-attention: this step's key and value go to the slot, which it also attends
            slot = tl.load(slot_ptr)
            k_new = tl.load(k_ptr + off_k + row * s_k_b + head * s_k_h + d)
            v_new = tl.load(v_ptr + off_v + row * s_v_b + head * s_v_h + d)
            if part == 0:  # one program of the (row, head) writes the step's key and value
                tl.store(k_base + slot * s_kv_t + d, k_new.to(kv_ptr.dtype.element_ty))
                tl.store(k_base + s_kv_part + slot * s_kv_t + d, v_new.to(kv_ptr.dtype.element_ty))
            # every program takes the new slot's key/value from its registers: no read-after-write across programs
            k_new = k_new.to(kv_ptr.dtype.element_ty).to(tl.float32)
            v_new = v_new.to(kv_ptr.dtype.element_ty).to(tl.float32)
            last = tl.minimum(num_slots, slot + 1)  # slots after this step's are not written yet: not read
        else:  # cross-attention: every key of the memory, nothing written
            last = num_slots.to(tl.int64)
        top = tl.full((), float("-inf"), tl.float32)  # running max of the scores
        total = tl.zeros((), tl.float32)  # running sum of exp(score - top)
        acc = tl.zeros((HEAD_DIM,), tl.float32)  # running sum of exp(score - top) * value
        first = 0
        if SPLIT > 0:
            first = (part * SPLIT).to(tl.int64)
            last = tl.minimum(last, first + SPLIT)
        for start in range(first, last, BLOCK):  # no iteration for a part wholly after the step's slot
            t = start + tl.arange(0, BLOCK)  # (BLOCK,)
            inside = t < last
            if HAS_ORIGIN:
                source = tl.load(origin_ptr + row * s_origin_b + t, mask=inside, other=0).to(tl.int64)  # (BLOCK,)
                k_block = head_base + source[:, None] * s_kv_b
            else:
                k_block = k_base
            offsets = t[:, None] * s_kv_t + d[None, :]  # (BLOCK, Dh)
            k = tl.load(k_block + offsets, mask=inside[:, None], other=0.0).to(tl.float32)
            if HAS_NEW:
                fresh = (t == slot)[:, None]  # (BLOCK, 1)
                k = tl.where(fresh, k_new[None, :], k)
            score = (tl.sum(k * q[None, :], axis=1) * scale).to(tl.float32)  # (BLOCK,); inductor passes scale as fp64
            if HAS_BIAS:
                score += tl.load(bias_ptr + own * s_bias_b + t * s_bias_t, mask=inside, other=0.0).to(tl.float32)
            score = tl.where(inside, score, float("-inf"))
            new_top = tl.maximum(top, tl.max(score, axis=0))
            shift = tl.where(new_top == float("-inf"), 0.0, new_top)  # every slot so far masked: keep zeros
            p = tl.exp(score - shift)  # (BLOCK,)
            decay = tl.exp(top - shift)
            v = tl.load(k_block + s_kv_part + offsets, mask=inside[:, None], other=0.0).to(tl.float32)
            if HAS_NEW:
                v = tl.where(fresh, v_new[None, :], v)
            total = total * decay + tl.sum(p, axis=0)
            acc = acc * decay + tl.sum(p[:, None] * v, axis=0)
            top = new_top
        if SPLIT > 0:  # this part's running max, sum and accumulator, for combine_parts_kernel
            at = tl.program_id(0) * tl.num_programs(1) + part
            tl.store(part_ptr + at * HEAD_DIM + d, acc)
            tl.store(stats_ptr + 2 * at, top)
            tl.store(stats_ptr + 2 * at + 1, total)
            if FUSED_COMBINE:  # the (row, head)'s last program to finish combines the parts: no second kernel
                tl.debug_barrier()  # every thread's stores precede the release below
                done = tl.atomic_add(lock_ptr + tl.program_id(0), 1, sem="acq_rel")
                tl.debug_barrier()  # and the other threads' loads below follow the acquire
                if done == tl.num_programs(1) - 1:
                    _combine(part_ptr, stats_ptr, out_ptr + row * s_out_b + head * s_out_h, tl.program_id(0),
                             tl.num_programs(1), HEAD_DIM, PARTS)
                    tl.store(lock_ptr + tl.program_id(0), 0)  # zero again for the next launch
        else:
            tl.store(out_ptr + row * s_out_b + head * s_out_h + d, (acc / total).to(out_ptr.dtype.element_ty))

    @triton.jit
    def _combine(part_ptr, stats_ptr, out_ptr, program, num_parts, HEAD_DIM: tl.constexpr, PARTS: tl.constexpr):
        """Stores at ``out_ptr`` the output of (row, head) ``program`` from its parts' (max, sum, accumulator),
        each rescaled to the largest max. Loads bypass L1: the parts were written by other programs."""
        d = tl.arange(0, HEAD_DIM)
        p = tl.arange(0, PARTS)  # PARTS: at least num_parts, a power of two
        valid = p < num_parts
        at = program * num_parts + p  # (PARTS,)
        top = tl.load(stats_ptr + 2 * at, mask=valid, other=float("-inf"), cache_modifier=".cg")
        total = tl.load(stats_ptr + 2 * at + 1, mask=valid, other=0.0, cache_modifier=".cg")
        acc = tl.load(part_ptr + at[:, None] * HEAD_DIM + d[None, :], mask=valid[:, None], other=0.0,
                      cache_modifier=".cg")  # (PARTS, Dh)
        best = tl.max(top, axis=0)
        weight = tl.where(top == float("-inf"), 0.0, tl.exp(top - best))  # a part with nothing to read: 0
        out = tl.sum(weight[:, None] * acc, axis=0) / tl.sum(weight * total, axis=0)
        tl.store(out_ptr + d, out.to(out_ptr.dtype.element_ty))

    @triton.jit
    def combine_parts_kernel(
        part_ptr, stats_ptr, out_ptr, s_out_b, s_out_h, num_heads, num_parts,
        HEAD_DIM: tl.constexpr, PARTS: tl.constexpr,
    ):
        """A (row, head)'s output from its parts, in a kernel of its own (no lock table to count finished parts)."""
        row = (tl.program_id(0) // num_heads).to(tl.int64)
        head = (tl.program_id(0) % num_heads).to(tl.int64)
        _combine(part_ptr, stats_ptr, out_ptr + row * s_out_b + head * s_out_h, tl.program_id(0), num_parts,
                 HEAD_DIM, PARTS)


def split_size(rows: int, heads: int, num_slots: int, block: int = BLOCK_T, parts: int | None = None) -> int:
    """Slots per program for a launch over ``rows`` x ``heads``: 0 (one program per (row, head) reads them all) when
    there are :data:`PROGRAMS` such programs or more; else the cache is split into up to ``parts`` runs of whole
    blocks (default: enough for about :data:`PROGRAMS` programs), read side by side and combined
    (FlashDecoding, Dao et al. 2023)."""
    if parts is None:
        parts = -(-PROGRAMS // (rows * heads))
    blocks = -(-num_slots // block)
    if parts <= 1 or blocks <= 1:
        return 0
    return -(-blocks // min(parts, blocks)) * block


def launch_config(rows: int, heads: int) -> tuple[int, int]:
    """(slots per inner iteration, warps per program) for a launch over ``rows`` x ``heads``."""
    if rows * heads >= MANY_PROGRAMS:
        return BLOCK_T_MANY, NUM_WARPS_MANY
    return BLOCK_T, NUM_WARPS


VERIFIED: dict[tuple[int, torch.dtype], bool] = {}
"""(CUDA device index, cache dtype) -> whether the kernel reproduced the reference (:func:`verify_decode_kernel`)."""
FUSED_VERIFIED: dict[tuple[int, torch.dtype], bool] = {}
"""The same for the parts combined by the last of them (:func:`verify_fused_combine`)."""


def decode_kernel_applies(x: Tensor, head_dim: int, value_head_dim: int, cache_dtype: torch.dtype) -> bool:
    """Whether :func:`decode_attention` can run a step on ``x`` (B, 1, D) with a cache of ``cache_dtype``: a CUDA
    device where the kernel has been verified for that dtype, equal power-of-two head widths (Triton's vectors), and
    no autograd (the kernel has no backward)."""
    return (
        x.is_cuda
        and x.shape[1] == 1
        and head_dim == value_head_dim
        and head_dim & (head_dim - 1) == 0
        and head_dim >= 16
        and not (torch.is_grad_enabled() and x.requires_grad)
        and VERIFIED.get((x.device.index, cache_dtype), False)
    )


def verify_decode_kernel(device: torch.device, dtype: torch.dtype) -> bool:
    """Runs the kernel once per CUDA device and cache dtype on :func:`check_cases` against the reference and records
    the outcome in :data:`VERIFIED`; a failure (an error or a different result) warns once, and the general attention
    path stays. Called eagerly by static caches when they are made (never inside a compiled or captured step), so
    that a Triton or driver problem costs speed, not correctness. Dtypes without a tolerance (float64) are not used."""
    return _verify(device, dtype, VERIFIED, False, "decoding uses the general attention path there")


def verify_fused_combine(device: torch.device, dtype: torch.dtype) -> bool:
    """:func:`verify_decode_kernel` for the parts combined by the last of them (``locks``), in
    :data:`FUSED_VERIFIED`; a failure leaves the combining to a second kernel."""
    return _verify(device, dtype, FUSED_VERIFIED, True, "its parts are combined by a second kernel there")


def _verify(device: torch.device, dtype: torch.dtype, record: dict, fused: bool, otherwise: str) -> bool:
    if dtype not in TOLERANCES:
        return False
    what = "the one-kernel decoding attention" + (" with the parts combined in-kernel" if fused else "")
    check = lambda d: first_mismatch(d, decode_attention, (dtype,), fused=fused)  # noqa: E731
    return checked_once(record, device, check, UNAVAILABLE, triton is not None, what, otherwise, (dtype,))


def check_cases(device: torch.device, dtype: torch.dtype) -> Iterator[tuple[str, tuple, Tensor, Tensor]]:
    """Inputs covering the kernel's branches, with the expected output and cache (written out in plain torch).

    Yields:
        (name, :func:`decode_attention` arguments, expected (B, H, Dh) in float32, expected cache).
    """
    g = torch.Generator().manual_seed(0)
    # four blocks of slots, the last partly outside: read in one part, or in four (parts after the step's slot
    # read nothing; "no bias" writes in the third); "many rows": the launch settings of MANY_PROGRAMS programs;
    # "packed": q, k and v as one (B, 3, H, Dh) tensor
    t, dh = 3 * BLOCK_T + 6, 16
    for name, with_bias, window in [("bias", True, None), ("no bias", False, None), ("window", True, 40),
                                    ("first block masked", True, "masked"), ("origin", True, "origin"),
                                    ("many rows", True, "origin"), ("packed", True, None)]:
        b, h = (MANY_PROGRAMS // 8, 8) if name == "many rows" else (2, 3)
        kv = torch.randn(2, b, h, t, dh, generator=g).to(device, dtype)
        qkv = torch.randn(b, 3, h, dh, generator=g).to(device, dtype)
        slot = {"masked": BLOCK_T + 2, False: 2 * BLOCK_T + 9}.get(window if with_bias else False, 37)
        bias = torch.zeros(b, 1, 1, t, dtype=dtype)
        bias[0, ..., 5:9] = float("-inf")
        if window == "masked":
            bias[..., :BLOCK_T] = float("-inf")
        else:
            bias[1, ..., 50:] = float("-inf")
        bias = bias.to(device)
        origin = torch.randint(0, b, (b, t), generator=g).to(device) if window == "origin" else None
        expected_kv = kv.clone()
        expected_kv[:, :, :, slot] = qkv[:, 1:].transpose(0, 1)  # (2, B, H, Dh)
        num_slots = window if isinstance(window, int) else t
        n = min(num_slots, slot + 1)  # the kernel reads no slot after this step's
        logical = expected_kv
        if origin is not None:  # row r's slot s is row origin[r, s]'s, except the slot written now
            rows = origin.clone()
            rows[:, slot] = torch.arange(b, device=device)
            logical = expected_kv[:, rows, :, torch.arange(t, device=device)[None, :]]  # (B, T, 2, H, Dh)
            logical = logical.permute(2, 0, 3, 1, 4)  # (2, B, H, T, Dh)
        q, keys, values = qkv[:, 0].float(), logical[0, :, :, :n].float(), logical[1, :, :, :n].float()
        scores = (q[:, :, None, :] * keys).sum(-1) * dh**-0.5  # (B, H, n)
        if with_bias:
            scores = scores + bias[:, 0, :, :n].float()
        expected = (scores.softmax(-1)[..., None] * values).sum(-2)  # (B, H, Dh)
        q, k, v = (qkv, None, None) if name == "packed" else (qkv[:, 0], qkv[:, 1], qkv[:, 2])
        args = (q, k, v, kv, torch.tensor([slot], device=device), bias if with_bias else None, dh**-0.5, num_slots,
                origin)
        yield name, args, expected, expected_kv
    # cross-attention (slot None): G rows per memory row; in parts, and with the launch of MANY_PROGRAMS programs
    for name, sources, group, h, length in (("cross", 2, 3, 3, t), ("cross, many rows", MANY_PROGRAMS // 32, 4, 8, 70)):
        kv = torch.randn(2, sources, h, length, dh, generator=g).to(device, dtype)
        q = torch.randn(sources * group, h, dh, generator=g).to(device, dtype)
        bias = torch.zeros(sources, 1, 1, length, dtype=dtype)
        bias[0, ..., 3:7] = float("-inf")
        bias[-1, ..., 30:] = float("-inf")
        bias = bias.to(device)
        rows = torch.arange(sources * group, device=device) // group
        scores = (q.float()[:, :, None, :] * kv[0, rows].float()).sum(-1) * dh**-0.5 + bias[rows, 0].float()
        expected = (scores.softmax(-1)[..., None] * kv[1, rows].float()).sum(-2)  # (B * G, H, Dh)
        yield name, (q, None, None, kv, None, bias, dh**-0.5, None, None), expected, kv.clone()


TOLERANCES = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}


def first_mismatch(
    device: torch.device, attend: Callable[..., Tensor], dtypes: tuple[torch.dtype, ...] = tuple(TOLERANCES),
    fused: bool = False,
) -> str | None:
    """Runs ``attend`` (:func:`decode_attention` or a launcher with its arguments, ``parts`` and ``locks``) on
    :func:`check_cases` in each of ``dtypes``, reading the cache in one part and in several, the parts combined by
    a second kernel; or, ``fused``, in several parts combined by the last of them (self-attention, with ``locks``).
    The first case whose output, cache or locks differ, or None."""
    for dtype in dtypes:
        tolerance = TOLERANCES[dtype]
        for parts in ((None,) if fused else (1, None)):
            for name, args, expected, expected_kv in check_cases(device, dtype):
                q, kv, slot, num_slots = args[0], args[3], args[4], args[7] or args[3].shape[3]
                split = split_size(q.shape[0], kv.shape[2], num_slots)
                if parts == 1 and not split:
                    continue  # read in one part either way: checked once
                if fused and (not split or slot is None):
                    continue  # nothing to combine, or cross-attention (no locks)
                name = f"{name}, {'one part' if parts == 1 else 'parts, combined by the last' if fused else 'parts'}"
                locks = torch.zeros(kv.shape[1] * kv.shape[2], dtype=torch.int32, device=device) if fused else None
                error = (attend(*args, parts=parts, locks=locks).float() - expected).abs().max().item()
                if not error <= tolerance:
                    return f"{name}, {dtype}: output off by {error:.3g}"
                if not torch.equal(args[3], expected_kv):
                    return f"{name}, {dtype}: cache not written as expected"
                if locks is not None and locks.any():
                    return f"{name}, {dtype}: locks not left at zero"
    return None


def _launch(
    kernels: tuple, q: Tensor, k: Tensor | None, v: Tensor | None, kv: Tensor, slot: Tensor | None,
    bias: Tensor | None, origin: Tensor | None, num_slots: int | None, scale: float, block: int | None = None,
    num_warps: int | None = None, parts: int | None = None, locks: Tensor | None = None,
) -> Tensor:
    """Runs ``kernels`` (the attention and combining Triton kernels, or inductor's wrappers of them) over a program
    per (row, head, part of the cache) (:func:`split_size`), ``block`` slots per inner iteration with ``num_warps``
    warps (default: :func:`launch_config`). ``slot`` None: cross-attention (nothing written; q (B * G, H, Dh), row
    r reads row r // G of ``kv`` (2, B, H, S, Dh) and of ``bias``). ``locks`` (>= B * H int32 zeros, left zero): the
    last part of each (row, head) to finish combines the parts, with no second kernel."""
    attend, combine = kernels
    group = 1
    if slot is None:  # cross-attention: q only
        offsets, pointers = (0, 0), (q, q, q)
        k = v = q
        group, num_slots = q.shape[0] // kv.shape[1], kv.shape[3]
    elif k is None:  # q is (B, 3, H, Dh): queries, keys and values of one projection, passed as one tensor
        packed = q
        q, k, v = packed[:, 0], packed[:, 1], packed[:, 2]
        offsets = (packed.stride(1), 2 * packed.stride(1))
        pointers = (packed, packed, packed)
    else:
        offsets, pointers = (0, 0), (q, k, v)
    b, h, dh = q.shape
    chosen = launch_config(b, h)
    block, num_warps = block or chosen[0], num_warps or chosen[1]
    out = torch.empty(b, h, dh, dtype=q.dtype, device=q.device)  # (B, H, Dh)
    split = split_size(b, h, num_slots, block, parts)
    num_parts = -(-num_slots // split) if split else 1
    # the combining code's width: a bound on the parts that depends on the launch's shape only, not on num_slots
    # (a beam search's growing window compiles no new kernel)
    most_parts = max(2, triton.next_power_of_2(parts or -(-PROGRAMS // (b * h))))
    # each part's accumulator (B * H * parts, Dh) and running max and sum (B * H * parts, 2), in float32
    part = torch.empty(b * h * num_parts if split else 1, dh, dtype=torch.float32, device=q.device)
    stats = torch.empty(b * h * num_parts if split else 1, 2, dtype=torch.float32, device=q.device)
    if bias is not None:
        bias = bias.expand(kv.shape[1], 1, 1, bias.shape[-1])  # (B / group, 1, 1, >= num_slots)
    # Triton launches on the current device: make it the tensors' one (inductor's code sets it itself)
    on_device = q.is_cuda and not torch.compiler.is_compiling()
    with torch.cuda.device(q.device) if on_device else contextlib.nullcontext():
        attend[(b * h, num_parts)](
            *pointers, kv, bias if bias is not None else kv, slot if slot is not None else kv,
            origin if origin is not None else kv, out, part, stats, locks if locks is not None else kv,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), *offsets,
            kv.stride(0), kv.stride(1), kv.stride(2), kv.stride(3),
            bias.stride(0) if bias is not None else 0, bias.stride(3) if bias is not None else 0,
            origin.stride(0) if origin is not None else 0,
            out.stride(0), out.stride(1),
            h, num_slots, scale, group,
            HEAD_DIM=dh, BLOCK=block, HAS_BIAS=bias is not None, HAS_ORIGIN=origin is not None, SPLIT=split,
            HAS_NEW=slot is not None, FUSED_COMBINE=locks is not None, PARTS=most_parts,
            **({} if num_warps == 4 else {"num_warps": num_warps}),  # 4: Triton's default (inductor's wrapper too)
        )
        if split and locks is None:
            combine[(b * h,)](part, stats, out, out.stride(0), out.stride(1), h, num_parts, HEAD_DIM=dh,
                              PARTS=most_parts)
    return out


if triton is not None:
    try:
        from torch.library import triton_op, wrap_triton

        @triton_op("formers::decode_attention", mutates_args={"kv", "locks"})
        def _decode_attention_op(
            q: Tensor, k: Tensor | None, v: Tensor | None, kv: Tensor, slot: Tensor, bias: Tensor | None,
            origin: Tensor | None, num_slots: int, scale: float, parts: int | None, locks: Tensor | None,
        ) -> Tensor:
            """The kernel as a ``torch.library`` op mutating ``kv`` (and ``locks``, left zero): ``torch.compile``
            traces into it (inductor sees the Triton kernel); eager mode calls it directly."""
            kernels = (wrap_triton(decode_attention_kernel), wrap_triton(combine_parts_kernel))
            return _launch(kernels, q, k, v, kv, slot, bias, origin, num_slots, scale, parts=parts, locks=locks)

        @triton_op("formers::cross_decode_attention", mutates_args=())
        def _cross_attention_op(q: Tensor, kv: Tensor, bias: Tensor | None, scale: float, parts: int | None) -> Tensor:
            """The kernel's cross-attention form (nothing written) as a ``torch.library`` op."""
            kernels = (wrap_triton(decode_attention_kernel), wrap_triton(combine_parts_kernel))
            return _launch(kernels, q, None, None, kv, None, bias, None, kv.shape[3], scale, parts=parts)

    except Exception as error:  # an older torch: the general attention path serves instead
        UNAVAILABLE = f"registering the op failed ({type(error).__name__}: {error})"


def decode_attention(
    q: Tensor,
    k: Tensor | None,
    v: Tensor | None,
    kv: Tensor,
    slot: Tensor | None,
    bias: Tensor | None,
    scale: float,
    num_slots: int | None = None,
    origin: Tensor | None = None,
    parts: int | None = None,
    locks: Tensor | None = None,
) -> Tensor:
    """Writes one step's keys and values into a static cache and attends its queries over the cache; or, with
    ``slot`` None, attends single-position queries over precomputed keys and values (decoding's cross-attention).

    Args:
        q: the step's queries (B, H, Dh); k, v: its keys and values (B, H, Dh) (any strides, contiguous Dh). Or
            ``k`` and ``v`` None and ``q`` (B, 3, H, Dh), the three of one fused projection: compiled, the
            projection's output then reaches the kernel as one buffer rather than as three copies.
        kv: the cache (2, B, H, T_max, Dh), keys then values; written in place at ``slot``.
        slot: a one-element long tensor on the device, the slot this step writes. None: cross-attention, ``k``,
            ``v``, ``origin`` and ``num_slots`` None, ``kv`` (2, B, H, S, Dh) the memory's keys and values (not
            written), ``q`` (B * G, H, Dh) with row r reading row r // G of ``kv`` and of ``bias`` (a sentence's G
            beams read its memory once), every one of the S positions.
        bias: additive float bias broadcastable to (B, 1, 1, T) with T >= ``num_slots`` (-inf: may not attend), or
            None.
        scale: multiplier of q . k.
        num_slots: attend to slots ``[0, num_slots)`` only (a static cache's window); default all T_max. Slots
            after ``slot`` are never read (not written yet: a static cache masks them anyway).
        origin: (B, >= num_slots) long, the row of ``kv`` that holds each row's slot (beam search's reordering as
            a table, :attr:`~formers.layers.attention.KVCache.origin`), or None: every row's own. The new key and
            value go to the row's own slot whatever it says.
        parts: read the cache in up to this many parts side by side (:func:`split_size`); default: enough parts
            for about :data:`PROGRAMS` programs, 1 for large batches.
        locks: int32 zeros, at least B * H of them (self-attention only; :func:`lock_table`): with several parts,
            the last part of each (row, head) to finish combines them in the same kernel, and counts it back to
            zero, instead of a second kernel doing it. Their buffer must not be shared by launches that may run
            at the same time.

    Returns:
        (B, H, Dh) attention outputs, in ``q``'s dtype.
    """
    if UNAVAILABLE is not None:
        raise RuntimeError(f"the decoding attention kernel cannot run here: {UNAVAILABLE}")
    if parts is not None and parts < 1:
        raise ValueError(f"parts must be at least 1 (or None: chosen), got {parts}")
    if slot is None:
        if k is not None or v is not None or origin is not None or num_slots is not None:
            raise ValueError("cross-attention (slot None) takes q, kv and bias only: k, v, origin and num_slots are "
                             "None")
        return _cross(q, kv, bias, scale, parts)
    shape = (kv.shape[1], kv.shape[2], kv.shape[4]) if kv.dim() == 5 else None
    if (k is None) != (v is None):
        raise ValueError("k and v must both be tensors, or both None with q packed as (B, 3, H, Dh)")
    if k is None:
        if shape is None or kv.shape[0] != 2 or tuple(q.shape) != (shape[0], 3, *shape[1:]):
            raise ValueError(f"packed q must be (B, 3, H, Dh) and kv (2, B, H, T, Dh), got {tuple(q.shape)} and "
                             f"{tuple(kv.shape)}")
    elif shape is None or kv.shape[0] != 2 or any(tuple(x.shape) != shape for x in (q, k, v)):
        raise ValueError(f"q, k, v must be (B, H, Dh) and kv (2, B, H, T, Dh), got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)} and {tuple(kv.shape)}")
    if any(x.stride(-1) != 1 for x in (q, k, v, kv) if x is not None):
        raise ValueError("q, k, v and kv need contiguous head dimensions")
    num_slots = kv.shape[3] if num_slots is None else num_slots
    if bias is not None and bias.shape[-1] < num_slots:
        raise ValueError(f"bias covers {bias.shape[-1]} slots, fewer than the {num_slots} attended")
    pairs = kv.shape[1] * kv.shape[2]  # (row, head) pairs
    if locks is not None and (locks.dtype != torch.int32 or locks.dim() != 1 or locks.numel() < pairs
                              or locks.device != kv.device):
        raise ValueError(f"locks must be an int32 vector of at least {pairs} (B * H) zeros on "
                         f"{kv.device}, got {locks.dtype} {tuple(locks.shape)} on {locks.device}")
    if origin is not None and (origin.dim() != 2 or origin.shape[0] != kv.shape[1] or origin.shape[1] < num_slots
                               or origin.stride(1) != 1 or origin.dtype != torch.long):
        raise ValueError(f"origin must be a long (B, >= {num_slots}) table with contiguous rows for B = "
                         f"{kv.shape[1]}, got {origin.dtype} {tuple(origin.shape)}")
    return _decode_attention_op(q, k, v, kv, slot.reshape(()), bias, origin, num_slots, float(scale), parts, locks)


def lock_table(rows: int, heads: int, device: torch.device, dtype: torch.dtype) -> Tensor | None:
    """The ``locks`` a static cache of ``dtype`` passes to :func:`decode_attention` (zeros, one per (row, head)) with
    :data:`FUSED_COMBINE` on a CUDA device where that passed :func:`verify_fused_combine`, else None."""
    if not FUSED_COMBINE or torch.device(device).type != "cuda" or not verify_fused_combine(device, dtype):
        return None
    return torch.zeros(rows * heads, dtype=torch.int32, device=device)


def _cross(q: Tensor, kv: Tensor, bias: Tensor | None, scale: float, parts: int | None) -> Tensor:
    """:func:`decode_attention`'s cross-attention form, its shapes checked."""
    if kv.dim() != 5 or kv.shape[0] != 2 or q.dim() != 3 or q.shape[1:] != (kv.shape[2], kv.shape[4]) or (
        q.shape[0] % kv.shape[1]
    ):
        raise ValueError(f"cross-attention needs q (B * G, H, Dh) and kv (2, B, H, S, Dh), got {tuple(q.shape)} and "
                         f"{tuple(kv.shape)}")
    if q.stride(-1) != 1 or kv.stride(-1) != 1:
        raise ValueError("q and kv need contiguous head dimensions")
    if bias is not None and (bias.shape[-1] < kv.shape[3] or bias.shape[0] not in (1, kv.shape[1])):
        raise ValueError(f"bias must be (1 or {kv.shape[1]}, 1, 1, >= {kv.shape[3]}), got {tuple(bias.shape)}")
    return _cross_attention_op(q, kv, bias, float(scale), parts)
