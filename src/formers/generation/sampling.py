"""Choosing the next token: option checks, the filtered distribution, and seeded draws made on the device.

Every decoding path (the eager loop of :mod:`formers.generation.causal_lm` and the static, CUDA-graph one of
:mod:`formers.generation.static_lm`) picks tokens with :func:`next_tokens`, so for the same logits and the same
uniform numbers they pick the same tokens.

Seeded draws are counter-based: the uniform number of row b at step s is a hash of (the row's seed, its stream,
s), computed with integer tensor ops on the device (:func:`uniform_table`). Nothing carries generator state from
one step to the next, so a CUDA graph can replay a step without the host, the whole table of a generation is made
once up front, and the numbers do not depend on the device. With one int seed the rows are streams 0..B-1 of that
seed; with one seed per row, each row is stream 0 of its own seed, i.e. exactly as if generated alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from formers.layers import check_int, check_number

SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes
_MASK32 = 0xFFFFFFFF


def check_flag(value: object, name: str) -> None:
    """Raises a TypeError unless ``value`` is True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def check_sampling_options(
    max_new_tokens: int, do_sample: bool, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    """Raises a TypeError/ValueError naming the first bad option; every option is checked, sampling or not."""
    check_int(max_new_tokens, "max_new_tokens", minimum=1)
    check_flag(do_sample, "do_sample")
    check_number(temperature, "temperature", greater_than=0)
    check_int(top_k, "top_k", minimum=1, allow_none=True)
    check_number(top_p, "top_p", greater_than=0, maximum=1, allow_none=True)


def check_eos_id(eos_id: int | None, vocab_size: int) -> None:
    """Raises unless ``eos_id`` is None or an id of the vocabulary."""
    if eos_id is not None:
        check_int(eos_id, "eos_id", 0, vocab_size - 1)


def row_keys(seed: int | Sequence[int] | None, batch: int) -> list[tuple[int, int]]:
    """(64-bit seed, stream) of each row: one int seed -> streams 0..B-1; one seed per row -> stream 0 each.

    None draws one seed from torch's global generator, so ``torch.manual_seed`` makes unseeded runs repeat.
    """
    if seed is None:
        seed = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))
    if isinstance(seed, int) and not isinstance(seed, bool):
        check_int(seed, "seed", *SEED_RANGE)
        return [(seed, b) for b in range(batch)]
    expected = f"seed must be an int or a list of {batch} ints (one per row), got {seed!r}"
    if not isinstance(seed, Sequence) or isinstance(seed, str):
        raise TypeError(f"{expected} ({type(seed).__name__})")
    seeds = list(seed)
    if len(seeds) != batch:
        raise ValueError(expected)
    for i, s in enumerate(seeds):
        check_int(s, f"seed[{i}]", *SEED_RANGE)
    return [(s, 0) for s in seeds]


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32) held in int64, without overflowing int64 (c split in 16-bit halves)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    """A bijective 32-bit integer hash (Wellons' "lowbias32") on int64 tensors holding 32-bit values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniform_table(keys: list[tuple[int, int]], num_steps: int, device: torch.device | str) -> Tensor:
    """Uniform numbers (B, num_steps) float64 in [0, 1 - 2**-32], one per row and step, made on ``device``.

    Row b's numbers depend only on ``keys[b]`` (seed, stream) and the step index, never on the device or batch.
    """
    seeds = [s % 2**64 for s, _ in keys]
    lo = torch.tensor([s & _MASK32 for s in seeds], dtype=torch.long, device=device)[:, None]  # (B, 1)
    hi = torch.tensor([s >> 32 for s in seeds], dtype=torch.long, device=device)[:, None]  # (B, 1)
    stream = torch.tensor([t & _MASK32 for _, t in keys], dtype=torch.long, device=device)[:, None]  # (B, 1)
    step = torch.arange(num_steps, dtype=torch.long, device=device)[None, :]  # (1, N)
    h = _mix32(lo ^ 0x9E3779B9)
    h = _mix32(h ^ hi)
    h = _mix32(h ^ stream)
    h = _mix32(_mix32(h ^ step) ^ 0x68E31DA4)  # (B, N)
    return h.double() / 2.0**32


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Sampling distribution (B, V) float32 from logits (B, V): temperature, then top-k, then nucleus (top-p).

    Top-p keeps the smallest set of most likely tokens whose probability reaches ``top_p`` (at least one).
    """
    logits = logits.float()
    # Shifted so that the largest is 0 and divided by at least float32's smallest normal number: a tiny temperature
    # sends the others to -inf (greedy), never to inf - inf or 0 / 0 = NaN.
    temperature = max(temperature, torch.finfo(torch.float32).tiny)
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature  # (B, V)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of the more likely tokens
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.softmax(logits, dim=-1)


def next_tokens(
    logits: Tensor,
    uniform: Tensor | None,
    temperature: float | Tensor = 1.0,
    top_k: int | None = None,
    top_p: float | Tensor | None = None,
) -> Tensor:
    """The next token of each row (B,) long: the argmax of ``logits`` (B, V), or a draw with ``uniform`` (B,).

    A draw inverts the cumulative distribution of the candidates: the top-k tokens in descending order when
    ``top_k`` is set (only those are sorted: no sort of the whole vocabulary), else the whole vocabulary (sorted
    only when ``top_p`` needs it). The distribution is :func:`filter_logits`'s; only ties at the k-th logit differ.
    Fixed shapes and no host reads: the same function runs eagerly and inside a CUDA graph. ``temperature`` and
    ``top_p`` may be 0-d float64 tensors (a static decoder's buffers, so that a graph serves every value). A tensor
    always applies, so pass one only where its value would (a temperature other than 1, a top-p below 1): then it
    picks the tokens its value passed as a float picks.
    """
    if uniform is None:
        return logits.argmax(dim=-1)
    vocab = logits.shape[-1]
    nucleus = top_p is not None and (isinstance(top_p, Tensor) or top_p < 1.0)
    if top_k is not None and top_k < vocab:
        values, order = torch.topk(logits, top_k, dim=-1)  # (B, K) descending (in the logits' dtype: the same order)
    elif nucleus:
        values, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    else:
        values, order = logits, None
    values = values.double()  # exact for float32 and bfloat16 logits; the candidates' few values only, with top-k
    if isinstance(temperature, Tensor) or temperature != 1.0:  # shifted first, as in filter_logits
        largest = values[:, :1] if order is not None else values.amax(dim=-1, keepdim=True)  # (B, 1)
        tiny = torch.finfo(torch.float32).tiny
        divisor = temperature.clamp(min=tiny) if isinstance(temperature, Tensor) else max(temperature, tiny)
        values = (values - largest) / divisor  # (B, N)
    probs = torch.softmax(values, dim=-1)
    cdf = probs.cumsum(dim=-1)  # (B, N)
    if nucleus:
        # Candidates are in descending order, so the nucleus (mass before a token < top_p, never empty) is a prefix
        # of them: a target below the cdf at its last token lands inside it, and the whole cdf can be searched.
        last = (cdf - probs < top_p)[:, 1:].sum(dim=-1, keepdim=True)  # (B, 1) index of the nucleus' last token
        mass = cdf.gather(1, last)  # (B, 1)
    else:
        mass = cdf[:, -1:]
    target = uniform.to(cdf.device, torch.float64)[:, None] * mass  # (B, 1), strictly below the kept mass
    pick = torch.searchsorted(cdf, target, right=True).clamp(max=cdf.shape[-1] - 1)  # (B, 1)
    return pick[:, 0] if order is None else order.gather(1, pick)[:, 0]
