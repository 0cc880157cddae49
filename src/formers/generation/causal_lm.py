"""Text generation for decoder-only language models: greedy and sampled (temperature, top-k, nucleus) on a KV cache.

The prompt is run once (prefill) into a pre-allocated cache, then one token per step. Batched prompts of different
lengths are LEFT padded (``padding_mask``, True = real token); every row then continues exactly as it would
alone. A row ends at ``eos_id`` (the token is kept in the tensor output) or when ``stop`` says so; ended rows are
filled with ``pad_id`` (else ``eos_id``) while the others continue, and generation stops when all have ended.

Sampling draws one uniform number per row and step and inverts the row's cumulative distribution
(:mod:`formers.generation.sampling`); the numbers are a hash of the seed, row and step computed on the device, so
``seed`` makes runs reproducible, with one seed per row (a list) each row's samples equal those of the row
generated alone with its seed, and both paths below draw the same numbers.

Two paths, same tokens: on CUDA the static-cache path (:mod:`formers.generation.static_lm`: fixed shapes, one
step replayed as a CUDA graph, eos/``stop``/streamer handled on the host every ``check_every`` steps) runs by
default; the eager loop here (a growing cache, host work every step) runs on other devices, with ``fast=False``,
and when the window must slide past ``max_seq_len`` (``truncate``), which the static cache cannot do.

Works with any model that has ``config.vocab_size``/``max_seq_len``/``eos_id``/``pad_id``, ``init_cache`` and
``forward(input_ids, padding_mask, cache=...)`` returning ``.logits`` (:class:`formers.models.gpt.GPT`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from formers.generation.sampling import (
    check_eos_id,
    check_flag,
    check_sampling_options,
    filter_logits,
    next_tokens,
    row_keys,
    uniform_table,
)
from formers.generation.static_lm import Sampling, cached_decoder, run_static
from formers.generation.step_compile import auto_compile
from formers.generation.stopping import Rows, Streamer
from formers.layers import check_int, check_padding_mask, check_token_ids

__all__ = ["Streamer", "filter_logits", "generate"]


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
    fast: bool | None = None,
    check_every: int = 16,
    compile: bool | None = None,
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
        seed: an int (the rows are streams 0..B-1 of it) or one int per row (each row as if generated alone);
            None draws a seed from torch's global generator. Draws are made on the device and equal on both paths.
        stop: called with a row's generated ids after each step (after ``streamer``); True ends that row.
        streamer: called with the B new ids of each step (see :data:`Streamer`); on the fast path in bursts of
            ``check_every`` steps.
        truncate: when prompt + ``max_new_tokens`` exceeds ``max_seq_len``, condition every token on the last
            ``max_seq_len`` tokens (a sliding window, as nanoGPT's ``idx[:, -block_size:]``) instead of raising: the
            prompt keeps its latest ``max_seq_len`` tokens, and once the cache is full each step re-reads the window.
        as_lists: return B lists of ids without the fill and without the final ``eos_id``.
        fast: the static-cache path (:mod:`formers.generation.static_lm`; a CUDA graph on CUDA, the same steps
            eagerly elsewhere). None (default): on CUDA whenever it applies, i.e. unless the window slides
            (``truncate`` past ``max_seq_len``) or the model's ``init_cache`` has no ``static`` option, which run
            eagerly. False: always the eager loop. True: the static path, also on CPU; a sliding window raises. Both
            paths return the same tokens.
        check_every: on the fast path, steps between host checks of eos/``stop`` (and streamer bursts).
        compile: on the fast path, also pass the step through ``torch.compile`` before capturing it
            (:mod:`formers.generation.step_compile`: fused kernels, matrix-vector products at memory bandwidth), at
            the cost of compiling once per batch size and capacity bucket (tens of seconds the first time; inductor
            caches the result on disk for later processes). None (default): on CUDA for a single row
            (:func:`~formers.generation.step_compile.auto_compile`), falling back to the uncompiled step with a
            warning if compiling fails; True: always (errors raise); False: never.

    Returns:
        New ids (B, T_new), T_new <= ``max_new_tokens`` (stops early once every row has ended); rows that
        ended earlier are filled with ``pad_id`` (else ``eos_id``, else 0). Or lists with ``as_lists``.
    """
    c = model.config
    check_sampling_options(max_new_tokens, do_sample, temperature, top_k, top_p)
    for flag, name in ((truncate, "truncate"), (as_lists, "as_lists")):
        check_flag(flag, name)
    if fast is not None:
        check_flag(fast, "fast")
    if compile is not None:
        check_flag(compile, "compile")
    check_int(check_every, "check_every", minimum=1)
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
    if sliding and fast:
        raise ValueError(
            f"fast=True cannot slide the window: prompt length {prompt_len} + max_new_tokens {max_new_tokens} "
            f"exceeds max_seq_len={c.max_seq_len}; pass fast=None (eager for this call) or lower max_new_tokens"
        )
    static_ok = "static" in inspect.signature(model.init_cache).parameters
    if fast and not static_ok:
        raise ValueError(f"fast=True needs a model whose init_cache takes static=True; {type(model).__name__} has none")
    keys = row_keys(seed, batch) if do_sample else None
    if fast is None:
        fast = input_ids.device.type == "cuda" and not sliding and static_ok
    if compile and not fast:
        raise ValueError(
            "compile=True compiles the fast path's step, but this call runs the eager loop (fast=False, not on CUDA, "
            "or a sliding window): pass fast=True to compile it, or compile=False"
        )
    if prompt_len > c.max_seq_len:
        input_ids = input_ids[:, -c.max_seq_len :]
        padding_mask = padding_mask[:, -c.max_seq_len :] if padding_mask is not None else None
        check_padding_mask(padding_mask, input_ids, "padding_mask (after truncation)")
        prompt_len = c.max_seq_len
    uniforms = uniform_table(keys, max_new_tokens, input_ids.device) if keys is not None else None  # (B, N)
    fill = next((t for t in (c.pad_id, eos_id) if t is not None), 0)
    rows = Rows(batch, eos_id, fill, stop, streamer)
    # Greedy ignores the sampling options: one captured graph serves every greedy call.
    sampling = Sampling(True, float(temperature), top_k, top_p) if do_sample else Sampling(False, 1.0, None, None)

    was_training = model.training
    model.eval()
    try:
        if fast:
            auto = compile is None
            compile = auto_compile(input_ids.device, batch) if auto else compile
            decoder = cached_decoder(model, batch, prompt_len + max_new_tokens, True, compile, compile_fallback=auto)
            run_static(decoder, input_ids, padding_mask, max_new_tokens, sampling, uniforms, rows, check_every)
        else:
            _run_eager(model, input_ids, padding_mask, max_new_tokens, sampling, uniforms, rows, sliding)
    finally:
        model.train(was_training)
    return rows.result(as_lists, input_ids.device)


def _run_eager(
    model: nn.Module,
    input_ids: Tensor,
    padding_mask: Tensor | None,
    max_new_tokens: int,
    sampling: Sampling,
    uniforms: Tensor | None,
    rows: Rows,
    sliding: bool,
) -> None:
    """The readable loop: one forward per step on the model's growing KV cache, ids handed to ``rows`` each step."""
    c = model.config
    batch, prompt_len = input_ids.shape
    capacity = min(prompt_len + max_new_tokens, c.max_seq_len)
    state = model.init_cache(batch, capacity)
    logits = model(input_ids, padding_mask, cache=state).logits[:, -1]  # (B, V)
    cached = prompt_len
    for step in range(max_new_tokens):
        uniform = uniforms[:, step] if uniforms is not None else None  # (B,)
        tokens = next_tokens(logits, uniform, sampling.temperature, sampling.top_k, sampling.top_p)  # (B,)
        ended = torch.tensor(rows.ended, device=tokens.device)
        tokens = tokens.masked_fill(ended, rows.fill)
        if rows.push(tokens.tolist()) or step == max_new_tokens - 1:
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
