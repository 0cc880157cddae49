"""Fast greedy decoding: a static-shape KV cache and one decoding step replayed as a CUDA graph.

Small-batch decoding of a small model is bound by kernel launches, not by the GPU: GPT-2 124M runs ~200 small
kernels per token. :class:`GraphedGreedyDecoder` runs the prompt eagerly into a static state
(``model.init_cache(..., static=True)``: fixed shapes, write position on the device), captures one step (forward,
argmax, feed the token back, record it) as a ``torch.cuda.CUDAGraph`` once, and then replays it once per token
with no host work or synchronisation in between. Tokens equal :func:`formers.generation.causal_lm.generate`'s
greedy ones (same rows, same ``eos_id`` handling and fill), since the static state computes the same function.

On CPU (or with ``use_graph=False``) the same static step runs eagerly: slower, but identical, which is what the
CPU tests check.

Works with models that :func:`~formers.generation.causal_lm.generate` accepts and whose ``init_cache`` takes
``static=True`` (:class:`formers.models.gpt.GPT`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from formers.generation.sampling import check_eos_id
from formers.layers import check_int, check_padding_mask, check_token_ids, value_checks


class GraphedGreedyDecoder:
    """Greedy decoding of ``batch_size`` rows with a static cache of ``max_len`` slots and a captured step.

    The state and graph are built once and reused by every call (a call resets the state in place); build one
    decoder per batch size and capacity. Not thread-safe.

    Args:
        model: a decoder-only model in eval mode (e.g. ``GPT``), with the dtype to decode in.
        batch_size: rows B of every call.
        max_len: slots: prompt (with padding) + new tokens; default ``model.config.max_seq_len``. Every step
            attends over all of them, so a tight value is faster.
        use_graph: capture the step in a CUDA graph (CUDA only); False runs it eagerly.
        compile: also pass the step through ``torch.compile`` (fuses its small kernels) before capturing it;
            the static state has no host-side counters, so it compiles once.
        check_every: with an ``eos_id``, how many steps run between host checks of whether every row ended.
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
        self.state = model.init_cache(batch_size, self.max_len, static=True)
        device = self.state.key_mask.device
        self.use_graph = use_graph and device.type == "cuda"
        self.check_every = check_every
        self.token = torch.zeros(batch_size, 1, dtype=torch.long, device=device)  # (B, 1) fed to the next step
        self.out = torch.zeros(batch_size, self.max_len, dtype=torch.long, device=device)  # (B, T_max) emitted ids
        self.count = torch.zeros((), dtype=torch.long, device=device)  # ids emitted so far
        self.graph: torch.cuda.CUDAGraph | None = None
        self._run_step = torch.compile(self._step, fullgraph=True) if compile else self._step

    def _emit(self, logits: Tensor) -> None:
        """Takes the argmax of ``logits`` (B, V), feeds it back and records it, all on the device."""
        token = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        self.token.copy_(token)
        self.out.index_copy_(1, self.count[None], token)
        self.count += 1

    def _step(self) -> None:
        self._emit(self.model(self.token, cache=self.state).logits[:, -1])

    def _capture(self) -> None:
        """Warms the step up on a side stream, then captures it; the state is reset before real use."""
        self.state.reset()
        self.count.zero_()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._run_step()
        torch.cuda.current_stream().wait_stream(stream)
        self.state.reset()
        self.count.zero_()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._run_step()
        self.graph = graph

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
        if batch != self.token.shape[0]:
            raise ValueError(f"input_ids has batch size {batch} but this decoder was built for {self.token.shape[0]}")
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

        with value_checks(False):  # ids were checked above; a check would read back to the host every step
            if self.use_graph and self.graph is None:
                self._capture()
            self.state.reset()
            self.count.zero_()
            self._emit(self.model(input_ids, padding_mask, cache=self.state).logits[:, -1])  # prefill
            done = 1
            while done < max_new_tokens:
                chunk = min(self.check_every, max_new_tokens - done)
                for _ in range(chunk):
                    if self.graph is not None:
                        self.graph.replay()
                    else:
                        self._run_step()
                done += chunk
                if eos_id is not None and bool((self.out[:, :done] == eos_id).any(dim=1).all()):
                    break
        return _finish(self.out[:, :done].clone(), eos_id, fill)


def _finish(ids: Tensor, eos_id: int | None, fill: int) -> Tensor:
    """Fills each row of ``ids`` (B, N) after its first ``eos_id`` and cuts where every row has ended."""
    if eos_id is None:
        return ids
    n = ids.shape[1]
    is_eos = ids == eos_id  # (B, N)
    first = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), n)  # (B,) index of each row's first eos
    after = torch.arange(n, device=ids.device)[None, :] > first[:, None]  # (B, N) positions past the eos
    ids = ids.masked_fill(after, fill)
    return ids[:, : min(n, int(first.max()) + 1)]


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
