"""Fast greedy decoding with an explicit decoder object: :class:`GraphedGreedyDecoder`.

A thin front of :class:`formers.generation.static_lm.StaticLMDecoder` (a static-shape KV cache and one decoding step
replayed as a CUDA graph) for callers that want to hold the decoder themselves, e.g. benchmarks; ``model.generate``
takes the same path by default on CUDA and keeps its decoders on the model. Tokens equal
:func:`formers.generation.causal_lm.generate`'s greedy ones (same rows, same ``eos_id`` handling and fill).

On CPU (or with ``use_graph=False``) the same static step runs eagerly: slower, but identical, which is what the
CPU tests check.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from formers.generation.sampling import check_eos_id
from formers.generation.static_lm import Sampling, StaticLMDecoder, run_static
from formers.generation.stopping import Rows
from formers.layers import check_int, check_padding_mask, check_token_ids

GREEDY = Sampling(False, 1.0, None, None)


class GraphedGreedyDecoder:
    """Greedy decoding of ``batch_size`` rows with a static cache of ``max_len`` slots and a captured step.

    The state and graph are built once and reused by every call (a call resets the state in place); build one
    decoder per batch size and capacity. One call at a time.

    Args:
        model: a decoder-only model in eval mode (e.g. ``GPT``), with the dtype to decode in.
        batch_size: rows B of every call.
        max_len: slots: prompt (with padding) + new tokens; default ``model.config.max_seq_len``. Every step
            attends over all of them, so a tight value is faster.
        use_graph: capture the step in a CUDA graph (CUDA only); False runs it eagerly.
        compile: also pass the step through ``torch.compile`` (fuses its small kernels) before capturing it;
            the static state has no host-side counters, so it compiles once.
        check_every: steps between host checks of whether every row ended.
    """

    def __init__(
        self,
        model: nn.Module,
        batch_size: int = 1,
        max_len: int | None = None,
        use_graph: bool = True,
        compile: bool = False,
        check_every: int = 32,
    ) -> None:
        c = model.config
        check_int(batch_size, "batch_size", minimum=1)
        check_int(max_len, "max_len", 1, c.max_seq_len, allow_none=True)
        check_int(check_every, "check_every", minimum=1)
        self.model = model
        self.max_len = c.max_seq_len if max_len is None else max_len
        self.check_every = check_every
        self.decoder = StaticLMDecoder(model, batch_size, self.max_len, use_graph=use_graph, compile=compile)

    @property
    def graph(self) -> torch.cuda.CUDAGraph | None:
        """The captured step (None before the first call, or when not on CUDA)."""
        return self.decoder.graphs.get((GREEDY.kind(), 1))

    @torch.inference_mode()
    def generate(
        self, input_ids: Tensor, max_new_tokens: int, padding_mask: Tensor | None = None, eos_id: int | None = None
    ) -> Tensor:
        """Greedy continuation of ``input_ids`` (B, T), left padded with ``padding_mask`` when lengths differ.

        Args:
            input_ids: (B, T) prompts on the model's device.
            max_new_tokens: most new tokens per row (>= 1).
            padding_mask: (B, T) bool, True = real token.
            eos_id: ends a row (the token is kept); None uses ``model.config.eos_id`` (None there: never).

        Returns:
            (B, T_new) new ids, T_new <= ``max_new_tokens``, exactly as ``generate(..., do_sample=False)``:
            rows that ended are filled with ``pad_id`` (else ``eos_id``) and decoding stops once all have ended.
        """
        c = self.model.config
        check_int(max_new_tokens, "max_new_tokens", minimum=1)
        if not isinstance(input_ids, Tensor):
            got = type(input_ids).__name__
            raise TypeError(f"input_ids must be a (batch, seq_len) torch.Tensor of token ids, got {got}")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be a (batch, seq_len) tensor of token ids, got {tuple(input_ids.shape)}")
        batch, prompt_len = input_ids.shape
        if batch != self.decoder.batch_size:
            raise ValueError(f"input_ids has batch size {batch} but this decoder was built for {self.decoder.batch_size}")
        if prompt_len < 1 or prompt_len + max_new_tokens > self.max_len:
            raise ValueError(
                f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} must fit the decoder's "
                f"max_len={self.max_len} (and the prompt must be non-empty)"
            )
        check_token_ids(input_ids, c.vocab_size, "input_ids")
        check_padding_mask(padding_mask, input_ids, "padding_mask")
        eos_id = c.eos_id if eos_id is None else eos_id
        check_eos_id(eos_id, c.vocab_size)
        fill = next((t for t in (c.pad_id, eos_id) if t is not None), 0)
        if self.model.training:
            raise ValueError("put the model in eval mode (model.eval()) before fast decoding")
        rows = Rows(batch, eos_id, fill, None, None)
        run_static(self.decoder, input_ids, padding_mask, max_new_tokens, GREEDY, None, rows, self.check_every)
        return rows.result(False, input_ids.device)


def fast_greedy_generate(
    model: nn.Module,
    input_ids: Tensor,
    max_new_tokens: int,
    padding_mask: Tensor | None = None,
    eos_id: int | None = None,
    use_graph: bool = True,
) -> Tensor:
    """One-off :class:`GraphedGreedyDecoder` sized to the call (capture included; reuse a decoder to amortise it).

    Returns the (B, T_new) ids of ``generate(model, input_ids, max_new_tokens, padding_mask, eos_id=eos_id)``.
    """
    if not isinstance(input_ids, Tensor):
        got = type(input_ids).__name__
        raise TypeError(f"input_ids must be a (batch, seq_len) torch.Tensor of token ids, got {got}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be a (batch, seq_len) tensor of token ids, got {tuple(input_ids.shape)}")
    check_int(max_new_tokens, "max_new_tokens", minimum=1)
    if input_ids.shape[1] + max_new_tokens > model.config.max_seq_len:
        raise ValueError(
            f"prompt length {input_ids.shape[1]} + max_new_tokens {max_new_tokens} exceeds "
            f"max_seq_len={model.config.max_seq_len}; shorten the prompt or lower max_new_tokens"
        )
    decoder = GraphedGreedyDecoder(
        model, input_ids.shape[0], input_ids.shape[1] + max_new_tokens, use_graph=use_graph
    )
    return decoder.generate(input_ids, max_new_tokens, padding_mask, eos_id)
