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

from formers.layers import check_padding_mask, check_token_ids

Streamer = Callable[[list[int]], None]
"""Called after every step with the B new token ids (rows that had already ended get the fill id)."""


def _check_options(
    max_new_tokens: int, do_sample: bool, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if do_sample and not temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")


def _generators(seed: int | Sequence[int] | None, batch: int) -> list[torch.Generator] | None:
    """None (global RNG), one generator for the batch (an int seed), or one per row (a sequence of seeds)."""
    if seed is None:
        return None
    if isinstance(seed, int) and not isinstance(seed, bool):
        return [torch.Generator().manual_seed(seed)]
    seeds = list(seed)
    if len(seeds) != batch or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seed must be an int or a list of {batch} ints (one per row), got {seed!r}")
    return [torch.Generator().manual_seed(s) for s in seeds]


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Sampling distribution (B, V) float32 from logits (B, V): temperature, then top-k, then nucleus (top-p).

    Top-p keeps the smallest set of most likely tokens whose probability reaches ``top_p`` (at least one).
    """
    logits = logits.float() / temperature
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
        truncate: when prompt + ``max_new_tokens`` exceeds ``max_seq_len``, drop the oldest prompt tokens
            instead of raising.
        as_lists: return B lists of ids without the fill and without the final ``eos_id``.

    Returns:
        New ids (B, T_new), T_new <= ``max_new_tokens`` (stops early once every row has ended); rows that
        ended earlier are filled with ``pad_id`` (else ``eos_id``, else 0). Or lists with ``as_lists``.
    """
    c = model.config
    _check_options(max_new_tokens, do_sample, temperature, top_k, top_p)
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or 0 in input_ids.shape:
        shape = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a non-empty (batch, seq_len) tensor of token ids, got {shape}")
    check_token_ids(input_ids, c.vocab_size, "input_ids")
    check_padding_mask(padding_mask, input_ids, "padding_mask")
    eos_id = c.eos_id if eos_id is None else eos_id
    if eos_id is not None and not 0 <= eos_id < c.vocab_size:
        raise ValueError(f"eos_id={eos_id} is outside the vocabulary [0, {c.vocab_size})")
    batch, prompt_len = input_ids.shape
    room = c.max_seq_len - max_new_tokens
    if prompt_len > room:
        if not truncate or room < 1:
            raise ValueError(
                f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} exceeds max_seq_len={c.max_seq_len}; "
                "shorten the prompt, lower max_new_tokens, or pass truncate=True to drop the oldest prompt tokens"
                + ("" if room >= 1 else " (max_new_tokens alone leaves no room for a prompt)")
            )
        input_ids = input_ids[:, -room:]
        padding_mask = padding_mask[:, -room:] if padding_mask is not None else None
        check_padding_mask(padding_mask, input_ids, "padding_mask (after truncation)")
        prompt_len = room
    generators = _generators(seed, batch) if do_sample else None
    fill = next((t for t in (c.pad_id, eos_id) if t is not None), 0)

    was_training = model.training
    model.eval()
    try:
        state = model.init_cache(batch, prompt_len + max_new_tokens)
        logits = model(input_ids, padding_mask, cache=state).logits[:, -1]  # (B, V)
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
            logits = model(tokens[:, None], cache=state).logits[:, -1]  # (B, V)
    finally:
        model.train(was_training)
    if as_lists:
        return [row[:n] for row, n in zip(rows, kept)]
    return torch.stack(columns, dim=1)  # (B, T_new)
