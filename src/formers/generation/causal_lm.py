"""Text generation for decoder-only language models: greedy and sampled (temperature, top-k, nucleus) on a KV cache.

The prompt is run once (prefill) into a pre-allocated cache, then one token per step. Batched prompts of different
lengths are LEFT padded (``padding_mask``, True = real token); every row then continues exactly as it would
alone. A row ends at ``eos_id`` (the token is kept in the tensor output) or when ``stop`` says so; ended rows are
filled with ``pad_id`` (else ``eos_id``) while the others continue, and generation stops when all have ended.

Sampling draws one uniform number per row and step from a ``torch.Generator`` and inverts the row's cumulative
distribution, so ``seed`` makes runs reproducible on any device. With one seed per row (a list), each row's
samples equal those of the row generated alone with its seed.

Works with any model that has ``config.vocab_size``/``max_seq_len``/``eos_id``/``pad_id``, ``init_cache`` and
``forward(input_ids, padding_mask, cache=...)`` returning ``.logits`` (:class:`formers.models.gpt.GPT`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from formers.layers import check_int, check_number, check_padding_mask, check_token_ids

Streamer = Callable[[list[int]], None]
"""Called after every step with the B new token ids (rows that had already ended get the fill id)."""


SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes


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


def _generators(seed: int | Sequence[int] | None, batch: int) -> list[torch.Generator] | None:
    """None (global RNG), one generator for the batch (an int seed), or one per row (a sequence of seeds)."""
    if seed is None:
        return None
    if isinstance(seed, int) and not isinstance(seed, bool):
        check_int(seed, "seed", *SEED_RANGE)
        return [torch.Generator().manual_seed(seed)]
    expected = f"seed must be an int or a list of {batch} ints (one per row), got {seed!r}"
    if not isinstance(seed, Sequence) or isinstance(seed, str):
        raise TypeError(f"{expected} ({type(seed).__name__})")
    seeds = list(seed)
    if len(seeds) != batch:
        raise ValueError(expected)
    for i, s in enumerate(seeds):
        check_int(s, f"seed[{i}]", *SEED_RANGE)
    return [torch.Generator().manual_seed(s) for s in seeds]


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


def _sample(probs: Tensor, generators: list[torch.Generator] | None) -> Tensor:
    """One token per row (B,) from ``probs`` (B, V) by inverting the cumulative distribution."""
    batch = probs.shape[0]
    if generators is None:
        u = torch.rand(batch, dtype=torch.float64)
    elif len(generators) == 1:
        u = torch.rand(batch, generator=generators[0], dtype=torch.float64)
    else:
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])  # (B,)
    cdf = probs.double().cumsum(dim=-1)  # (B, V)
    target = (u.to(probs.device) * cdf[:, -1])[:, None]  # (B, 1), strictly below the total mass
    return torch.searchsorted(cdf, target, right=True)[:, 0].clamp(max=probs.shape[-1] - 1)


def check_eos_id(eos_id: int | None, vocab_size: int) -> None:
    """Raises unless ``eos_id`` is None or an id of the vocabulary."""
    if eos_id is not None:
        check_int(eos_id, "eos_id", 0, vocab_size - 1)


@torch.inference_mode()
def generate(
    model: nn.Module,
    input_ids: Tensor,
    max_new_tokens: int,
    padding_mask: Tensor | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    seed: int | Sequence[int] | None = None,
    stop: Callable[[list[int]], bool] | None = None,
    streamer: Streamer | None = None,
    truncate: bool = False,
    as_lists: bool = False,
) -> Tensor | list[list[int]]:
    """Continues prompts with a causal language model (run in eval mode; the mode is restored after).

    Args:
        model: a decoder-only model such as :class:`formers.models.gpt.GPT`.
        input_ids: prompts (B, T), left padded when their lengths differ.
        max_new_tokens: most tokens generated per row (>= 1).
        padding_mask: (B, T) bool, True = real token (required for padded batches).
        do_sample: sample from the filtered distribution instead of taking the most likely token.
        temperature: logits divisor when sampling (> 0).
        top_k: sample among the k most likely tokens only.
        top_p: nucleus sampling: among the most likely tokens holding probability ``top_p`` (in (0, 1]).
        eos_id: end-of-sequence id ending a row; None uses ``model.config.eos_id`` (None there: never).
        seed: an int (one generator for the batch) or one int per row (each row as if generated alone);
            None uses the global RNG.
        stop: called with a row's generated ids after each step (after ``streamer``); True ends that row.
        streamer: called after each step with the B new ids (see :data:`Streamer`).
        truncate: when prompt + ``max_new_tokens`` exceeds ``max_seq_len``, condition every token on the last
            ``max_seq_len`` tokens (a sliding window, as nanoGPT's ``idx[:, -block_size:]``) instead of raising: the
            prompt keeps its latest ``max_seq_len`` tokens, and once the cache is full each step re-reads the window.
        as_lists: return B lists of ids without the fill and without the final ``eos_id``.

    Returns:
        New ids (B, T_new), T_new <= ``max_new_tokens`` (stops early once every row has ended); rows that
        ended earlier are filled with ``pad_id`` (else ``eos_id``, else 0). Or lists with ``as_lists``.
    """
    c = model.config
    check_sampling_options(max_new_tokens, do_sample, temperature, top_k, top_p)
    for flag, name in ((truncate, "truncate"), (as_lists, "as_lists")):
        check_flag(flag, name)
    for fn, name in ((stop, "stop"), (streamer, "streamer")):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be a callable or None, got {type(fn).__name__}")
    if not isinstance(input_ids, Tensor):
        got = type(input_ids).__name__
        raise TypeError(f"input_ids must be a (batch, seq_len) torch.Tensor of token ids, got {got}")
    if input_ids.dim() != 2 or 0 in input_ids.shape:
        raise ValueError(
            f"input_ids must be a non-empty (batch, seq_len) tensor of token ids, got {tuple(input_ids.shape)}"
        )
    check_token_ids(input_ids, c.vocab_size, "input_ids")
    check_padding_mask(padding_mask, input_ids, "padding_mask")
    eos_id = c.eos_id if eos_id is None else eos_id
    check_eos_id(eos_id, c.vocab_size)
    batch, prompt_len = input_ids.shape
    sliding = prompt_len + max_new_tokens > c.max_seq_len
    if sliding and not truncate:
        raise ValueError(
            f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} exceeds max_seq_len={c.max_seq_len}; "
            "shorten the prompt, lower max_new_tokens, or pass truncate=True to generate on a sliding window of the "
            f"last {c.max_seq_len} tokens"
        )
    if prompt_len > c.max_seq_len:
        input_ids = input_ids[:, -c.max_seq_len :]
        padding_mask = padding_mask[:, -c.max_seq_len :] if padding_mask is not None else None
        check_padding_mask(padding_mask, input_ids, "padding_mask (after truncation)")
        prompt_len = c.max_seq_len
    generators = _generators(seed, batch) if do_sample else None
    fill = next((t for t in (c.pad_id, eos_id) if t is not None), 0)

    was_training = model.training
    model.eval()
    try:
        capacity = min(prompt_len + max_new_tokens, c.max_seq_len)
        state = model.init_cache(batch, capacity)
        logits = model(input_ids, padding_mask, cache=state).logits[:, -1]  # (B, V)
        cached = prompt_len
        ended = [False] * batch
        kept = [0] * batch  # tokens each row returns as a list
        rows: list[list[int]] = [[] for _ in range(batch)]
        columns: list[Tensor] = []
        for step in range(max_new_tokens):
            if do_sample:
                tokens = _sample(filter_logits(logits, temperature, top_k, top_p), generators)
            else:
                tokens = logits.argmax(dim=-1)  # (B,)
            ended_mask = torch.tensor(ended, device=tokens.device)
            tokens = tokens.masked_fill(ended_mask, fill)
            columns.append(tokens)
            new = tokens.tolist()
            if streamer is not None:
                streamer(new)
            for b, tok in enumerate(new):
                if ended[b]:
                    continue
                rows[b].append(tok)
                if eos_id is not None and tok == eos_id:
                    ended[b] = True
                    continue
                kept[b] += 1
                if stop is not None and stop(rows[b]):
                    ended[b] = True
            if all(ended) or step == max_new_tokens - 1:
                break
            if sliding:  # the window: the last max_seq_len tokens (B, <= max_seq_len)
                input_ids = torch.cat([input_ids, tokens[:, None]], dim=1)[:, -c.max_seq_len :]
                if padding_mask is not None:
                    real = torch.ones_like(padding_mask[:, :1])  # (B, 1)
                    padding_mask = torch.cat([padding_mask, real], dim=1)[:, -c.max_seq_len :]
            if cached < capacity:
                logits = model(tokens[:, None], cache=state).logits[:, -1]  # (B, V)
                cached += 1
            else:  # the cache is full: positions shift, so the whole window is read again
                state = model.init_cache(batch, capacity)
                logits = model(input_ids, padding_mask, cache=state).logits[:, -1]  # (B, V)
    finally:
        model.train(was_training)
    if as_lists:
        return [row[:n] for row, n in zip(rows, kept)]
    return torch.stack(columns, dim=1)  # (B, T_new)
