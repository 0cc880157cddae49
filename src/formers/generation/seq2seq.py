"""Greedy and beam-search decoding for encoder-decoder models, batched, on the KV cache.

Family-agnostic: a model qualifies by its interface (``encode``, ``decode`` with a cache, ``config`` with
``pad_id``/``bos_id``/``eos_id``/``max_seq_len``), as :class:`formers.models.transformer.Transformer` and
:class:`formers.models.rnn.RNNSeq2Seq` have.

Both decode from ``bos_id`` until ``eos_id`` or a per-sentence limit of ``len(source) + 50`` new tokens (the
paper's sec. 6.1 setting; ``max_new_tokens`` overrides it). Padding and the start token are never emitted.
On CUDA both run on a static-shape state (``init_state(..., static=True)``: fixed shapes, write position on the
device, beams reordered in place: the Transformer's through a table of cache rows) with each step captured once as
a CUDA graph per (rows, source length, capacity bucket) and kept on the model: greedy search records its tokens on
the device, beam search keeps its candidates, scores, beam histories and each sentence's best finished hypothesis on
the device (:class:`_DeviceBeam`; its bookkeeping one Triton kernel on CUDA, :mod:`.beam_select`), and the host
only checks every ``check_every`` steps whether every sentence is done. ``fast=False`` runs the eager loops, as do
models whose ``init_state`` has no ``static`` option. :class:`~formers.models.rnn.RNNSeq2Seq` has one (its (h, c)
updated in place; no attention window). A step that cannot be captured runs uncaptured, with a warning. Same tokens
either way.

Beam search ranks finished hypotheses by log-probability / lp(Y) with the GNMT length penalty
lp(Y) = ((5 + |Y|) / 6)^alpha (Wu et al. 2016), alpha = 0.6 in the paper.
"""

from __future__ import annotations

import inspect
import math
import threading
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from formers.devices import light_capture, side_stream
from formers.generation.beam_select import (
    select_kernel,
    select_reference,
    verify_select_kernel,
)
from formers.generation.beam_top import beam_candidates, verify_row_top
from formers.generation.static_lm import capacity_bucket, model_cache, static_context
from formers.layers import check_int, check_number

EXTRA_LENGTH = 50  # the paper's maximum output length: source length + 50
REORDER_WINDOW = 32
"""The static steps attend over (and beam search reorders) only the filled self-attention cache slots, rounded up to
a multiple of this (one captured step per window) where the general attention path reads the cache: reading every
beam's whole cache each step was most of a beam step's memory traffic. States whose layers all take the one-kernel
attention read only the written slots and set ``windowed = False``."""
LIGHT_CAPTURE = True
"""Capture the decoding steps with :func:`formers.devices.light_capture` (no device synchronisation and no emptying
of the allocator's cache before each of a call's captures: a fresh ``beam_search`` call captures one step per batch
shape, six for Multi30k's validation set) rather than ``torch.cuda.graph``.
``benchmarks/beam_capture.py`` times both."""

CACHED_SHAPES = 8
"""Captured steps kept per model (a whole static state each), so that batch shapes seen before (repeated
``beam_search`` calls, ``Translator(keep_graphs=True)`` as ``formers serve`` uses it) replay without a capture:
beam-4 of Multi30k's validation set in 6 batch shapes, H100, 3,678 sentences/s as a fresh call, 5,498 with every
shape kept (``benchmarks/results/beam_capture_h100_beam_top.json``). Bounded by :data:`CACHE_MEMORY_FRACTION` too."""
CACHE_MEMORY_FRACTION = 1 / 16
"""At most this share of a CUDA device's memory is held by a model's kept static states (the least recently used
beyond it are dropped; the current one always stays): 5 GB on an 80 GB card, about 0.5 GB a Multi30k beam-4 batch."""


def _limits(model: nn.Module, src_padding_mask: Tensor, max_new_tokens: int | None) -> Tensor:
    """Per-sentence limit on new tokens (B,), capped by the decoder's max_seq_len."""
    if max_new_tokens is not None:
        limit = min(max_new_tokens, model.config.max_seq_len)
        limits = torch.full((src_padding_mask.shape[0],), limit, dtype=torch.long)
    else:
        limits = src_padding_mask.sum(dim=1).cpu() + EXTRA_LENGTH
    return limits.clamp(max=model.config.max_seq_len)


def _banned(model: nn.Module) -> list[int]:
    c = model.config
    return sorted({c.pad_id, c.bos_id} - {c.eos_id})


def _init_state_takes(model: nn.Module, option: str) -> bool:
    """Whether the model's ``init_state`` has ``option`` (``static``: fixed shapes; ``beams``: one memory row per
    sentence for its beams)."""
    return option in inspect.signature(model.init_state).parameters


def _use_fast(model: nn.Module, src_ids: Tensor, fast: bool | None) -> bool:
    if fast is not None and not isinstance(fast, bool):
        raise TypeError(f"fast must be True, False or None, got {fast!r} ({type(fast).__name__})")
    if fast is None:
        return src_ids.device.type == "cuda" and _init_state_takes(model, "static")
    if fast and not _init_state_takes(model, "static"):
        raise ValueError(f"fast=True needs a model whose init_state takes static=True; {type(model).__name__} has none")
    return fast


def _capture(graph: torch.cuda.CUDAGraph, pool=None):
    """The capture context :data:`LIGHT_CAPTURE` chooses."""
    if LIGHT_CAPTURE:
        return light_capture(graph, pool)
    return torch.cuda.graph(graph, pool=pool)


class _StaticStep:
    """A decoder step on a static state, captured as a CUDA graph (on CUDA) and reused across calls.

    The step (greedy; :class:`_DeviceBeam` replaces it for beam search) takes the argmax, fills finished rows with
    ``pad_id``, records the token in ``out`` and feeds it back, so that many steps run without the host.
    """

    WARMUP_STEPS = 1
    """Eager steps on a side stream before the capture (lazy initialisations, kernel choices). One does them all: a
    translate call captures a graph per batch shape, and 3 made beam-4 of Multi30k's validation set 11% slower
    (H100: 1,106 against 1,241 sentences/s, ``benchmarks/beam_capture.py``)."""

    def __init__(self, model: nn.Module, state, banned: list[int], use_graph: bool) -> None:
        c = model.config
        self.model, self.state = model, state
        rows, device = state.rows, state.memory_mask.device
        self.bos, self.pad, self.eos = c.bos_id, c.pad_id, c.eos_id
        self.banned = torch.tensor(banned, dtype=torch.long, device=device)
        self.token = torch.full((rows, 1), c.bos_id, dtype=torch.long, device=device)  # (N, 1) fed to the next step
        self.out = torch.zeros(rows, state.max_len, dtype=torch.long, device=device)  # (N, T_max) greedy
        self.finished = torch.zeros(rows, dtype=torch.bool, device=device)
        self.count = torch.zeros((), dtype=torch.long, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None  # the step over every slot, captured first (warm-up)
        self.use_graph = use_graph and device.type == "cuda"
        self.device = device
        self.lock = threading.Lock()  # one search at a time: calls share the state
        self.capacity = state.max_len
        self.window = self.capacity  # self-attention slots the next captured or eager step reads (and reorders)
        self.windows: dict[int, torch.cuda.CUDAGraph] = {}  # window -> its captured step
        self.host_step = 0  # steps run since the last reset, as the host counts them

    def _step(self) -> None:
        """One step that attends over (and, in beam search, reorders) the first ``self.window`` slots only."""
        self.state.set_window(self.window)
        self._advance()
        self.state.set_window(None)

    def _advance(self) -> None:
        logits = self.model.decode(self.token, None, None, state=self.state)[:, -1]  # (N, V)
        logits = logits.index_fill(1, self.banned, float("-inf"))
        token = logits.argmax(dim=-1, keepdim=True).masked_fill(self.finished[:, None], self.pad)  # (N, 1)
        self.out.index_copy_(1, self.count[None], token)
        self.finished |= token[:, 0] == self.eos
        self.count += 1
        self.token.copy_(token)

    def start(self, fresh) -> None:
        """Takes the memory of ``fresh`` (a static state of the same shapes) and resets; captures on first use."""
        if fresh is not self.state:
            self.state.copy_from(fresh)
        if self.use_graph and self.graph is None:
            self._reset()
            with side_stream():
                for _ in range(self.WARMUP_STEPS):
                    self._step()
            self._reset()
            graph = torch.cuda.CUDAGraph()
            try:
                with _capture(graph):
                    self._step()
                self.graph = graph
            except RuntimeError as error:  # an op that cannot be captured: same steps, launched one by one
                warnings.warn(f"{type(self.model).__name__}'s decoding step could not be captured as a CUDA graph "
                              f"({error}); decoding without one", RuntimeWarning, stacklevel=3)
                self.use_graph = False
        self._reset()

    def _reset(self) -> None:
        self.state.reset()
        self.token.fill_(self.bos)
        self.finished.zero_()
        self.count.zero_()
        self.host_step = 0

    def run(self, steps: int = 1) -> None:
        """Runs ``steps`` steps, each reading only the cache slots filled so far, rounded up to a window."""
        for _ in range(steps):
            window = min(self.capacity, -(-(self.host_step + 1) // REORDER_WINDOW) * REORDER_WINDOW)
            window = window if self.state.windowed else self.capacity
            if self.graph is None:
                self.window = window
                self._step()
            elif window == self.capacity:
                self.graph.replay()
            else:
                self._window_graph(window).replay()
            self.host_step += 1

    def _window_graph(self, window: int) -> torch.cuda.CUDAGraph:
        """The step over ``window`` slots, captured on first use (after the full step's warm-up), sharing its
        memory pool: a step's temporaries do not outlive it and the steps replay one at a time."""
        if window not in self.windows:
            self.window = window
            graph = torch.cuda.CUDAGraph()
            with _capture(graph, pool=self.graph.pool()):
                self._step()
            self.window = self.capacity
            self.windows[window] = graph
        return self.windows[window]


class _DeviceBeam(_StaticStep):
    """One whole beam-search step on the device (decoder, candidates, finished hypotheses, reordering), so that it
    is captured as one CUDA graph and the host only checks every few steps whether every sentence is done.

    It keeps only each sentence's best finished hypothesis, and decides exactly as :func:`_beam_loop` does: the same
    candidates (same ops), finished scores divided by the same length penalties in float64, and ties going to the
    hypothesis that ended first (eos candidates by rank, then beams cut at the limit by rank, then later steps).
    """

    def __init__(self, model: nn.Module, state, banned: list[int], k: int, use_graph: bool) -> None:
        super().__init__(model, state, banned, use_graph=use_graph)
        rows, capacity, device = self.token.shape[0], state.max_len, self.device
        self.k, self.batch = k, rows // k
        b = self.batch
        self.scores = torch.zeros(b, k, device=device)  # (B, K) float32 running log-probabilities
        self.history = torch.zeros(rows, capacity + 1, dtype=torch.long, device=device)  # (B*K, T) each beam's ids
        self.limits = torch.zeros(b, dtype=torch.long, device=device)  # (B,) most new tokens per sentence
        self.penalty = torch.ones(capacity + 2, dtype=torch.float64, device=device)  # lp(step) for every step
        self.best_score = torch.zeros(b, dtype=torch.float64, device=device)  # (B,) best finished score so far
        self.best_hyp = torch.zeros(b, capacity + 1, dtype=torch.long, device=device)  # (B, T) its ids
        self.best_len = torch.zeros(b, dtype=torch.long, device=device)  # (B,) its length; -1: none yet
        self.num_finished = torch.zeros(b, dtype=torch.long, device=device)
        self.done = torch.zeros(b, dtype=torch.bool, device=device)
        # the bookkeeping in one kernel on a CUDA device where it reproduced the plain-torch reference
        self.select_kernel = verify_select_kernel(device, k, capacity + 1)
        self.row_top_kernel = verify_row_top(device)  # each beam's best 2K in one kernel (CUDA, checked)

    def configure(self, limits: list[int], alpha: float) -> None:
        """Sets this search's per-sentence limits and length penalties (buffers: the captured step reads them)."""
        self.limits.copy_(torch.tensor(limits))
        penalties = [length_penalty(n, alpha) for n in range(self.penalty.shape[0])]
        self.penalty.copy_(torch.tensor(penalties, dtype=torch.float64))

    def _reset(self) -> None:
        super()._reset()
        self.scores.fill_(float("-inf"))
        self.scores[:, 0] = 0.0  # all beams start identical: keep one alive so the first step does not repeat it
        self.best_score.fill_(float("-inf"))
        self.best_len.fill_(-1)
        self.num_finished.zero_()
        self.done.zero_()

    def _advance(self) -> None:
        k = self.k
        logits = self.model.decode(self.token, None, None, state=self.state)[:, -1]  # (B*K, V)
        vocab = logits.shape[-1]
        top_scores, top_idx = beam_candidates(logits, self.scores, k, self.banned, self.row_top_kernel)  # (B, 2K)
        # survivors, finished hypotheses, each sentence's best, done flags, histories (module beam_select)
        rows = (select_kernel if self.select_kernel else select_reference)(self, top_scores, top_idx, vocab)
        # beams stay within their sentence, whose memory they share; slots past the window are not filled yet
        self.state.reorder(rows, memory=False)
        self.count += 1

    def results(self) -> list[list[int]]:
        """Each sentence's best finished hypothesis (its ids without eos), [] when none ended."""
        lengths = self.best_len.tolist()
        return [ids[:n] if n >= 0 else [] for ids, n in zip(self.best_hyp.tolist(), lengths)]


def _beam_rows(memory: Tensor, src_padding_mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each source's memory and mask repeated for its ``k`` beams: (B * k, S, D), (B * k, S)."""
    rows = torch.arange(memory.shape[0], device=memory.device).repeat_interleave(k)  # (B*K,) each beam's source
    return memory.index_select(0, rows), src_padding_mask.index_select(0, rows)


def _static_step(
    model: nn.Module, memory: Tensor, src_padding_mask: Tensor, steps: int, beam: int | None
) -> tuple[_StaticStep, object]:
    """The model's cached static step for these shapes (greedy, or a beam of ``beam``) and a fresh static state
    holding this batch's memory (B, S, D): read once per sentence by its beams where ``init_state`` takes ``beams``,
    else repeated for every beam."""
    capacity = capacity_bucket(steps, model.config.max_seq_len)
    if beam is not None and _init_state_takes(model, "beams"):
        fresh = model.init_state(memory, src_padding_mask, max_len=capacity, static=True, beams=beam)
    else:
        if beam is not None:
            memory, src_padding_mask = _beam_rows(memory, src_padding_mask, beam)
        fresh = model.init_state(memory, src_padding_mask, max_len=capacity, static=True)
    key = ("seq2seq", beam, tuple(memory.shape[:2]), capacity)
    if beam is None:
        build = lambda: _StaticStep(model, fresh, _banned(model), use_graph=True)  # noqa: E731
    else:
        build = lambda: _DeviceBeam(model, fresh, _banned(model), beam, use_graph=True)  # noqa: E731
    budget = None
    if memory.is_cuda:
        budget = int(CACHE_MEMORY_FRACTION * torch.cuda.get_device_properties(memory.device).total_memory)
    return model_cache(model).get(model, key, build, limit=CACHED_SHAPES, budget=budget), fresh


@torch.inference_mode()
def greedy_search(
    model: nn.Module,
    src_ids: Tensor,
    src_padding_mask: Tensor | None = None,
    max_new_tokens: int | None = None,
    fast: bool | None = None,
    check_every: int = 8,
) -> list[list[int]]:
    """Decodes each source by taking the most likely next token until ``eos_id``.

    Args:
        model: an encoder-decoder model.
        src_ids: (B, S) source token ids.
        src_padding_mask: (B, S) bool, True = real token (default: ``src_ids != pad_id``).
        max_new_tokens: limit on generated tokens (default: source length + 50).
        fast: the static-state (CUDA-graph) path; None: on CUDA when the model supports it (see the module doc).
        check_every: on the fast path, steps between host checks of whether every sentence has ended.

    Returns:
        B lists of token ids, without the start token and the final ``eos_id``.
    """
    check_int(max_new_tokens, "max_new_tokens", minimum=1, allow_none=True)
    check_int(check_every, "check_every", minimum=1)
    fast = _use_fast(model, src_ids, fast)
    memory, src_padding_mask = model.encode(src_ids, src_padding_mask)
    limits = _limits(model, src_padding_mask, max_new_tokens)
    steps = int(limits.max())
    c = model.config
    if fast:
        step, fresh = _static_step(model, memory, src_padding_mask, steps, beam=None)
        with step.lock, static_context(step.device):
            step.start(fresh)
            done = 0
            while done < steps:
                n = min(check_every, steps - done)
                step.run(n)
                done += n
                if bool(step.finished.all()):
                    break
        generated = step.out[:, :done].tolist()  # (B, T)
    else:
        generated = _greedy_eager(model, memory, src_padding_mask, steps)
    results = []
    for row, limit in zip(generated, limits.tolist()):
        row = row[:limit]
        results.append(row[: row.index(c.eos_id)] if c.eos_id in row else row)
    return results


def _greedy_eager(model: nn.Module, memory: Tensor, src_padding_mask: Tensor, steps: int) -> list[list[int]]:
    """The readable loop: one decoder step at a time on a growing cache, a host check after each."""
    c = model.config
    batch, device = memory.shape[0], memory.device
    state = model.init_state(memory, src_padding_mask, max_len=steps)
    banned = _banned(model)
    tokens = torch.full((batch, 1), c.bos_id, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    out = []
    for _ in range(steps):
        logits = model.decode(tokens, None, None, state=state)[:, -1]  # (B, V)
        logits[:, banned] = float("-inf")
        tokens = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        tokens = tokens.masked_fill(finished[:, None], c.pad_id)
        out.append(tokens)
        finished |= tokens[:, 0] == c.eos_id
        if bool(finished.all()):
            break
    return torch.cat(out, dim=1).tolist()  # (B, T)


def check_beam_options(beam_size: int, alpha: float, vocab_size: int | None = None) -> None:
    """Raises unless ``beam_size`` is an int in [1, vocab_size] (>= 1 if None) and ``alpha`` a finite number >= 0."""
    check_int(beam_size, "beam_size", 1, vocab_size)
    check_number(alpha, "alpha (length penalty)", minimum=0)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ((5 + length) / 6) ** alpha; alpha = 0 disables normalisation (inf past float range)."""
    try:
        return ((5.0 + length) / 6.0) ** alpha
    except OverflowError:  # a huge alpha: every hypothesis scores -0.0, none is preferred
        return math.inf


@torch.inference_mode()
def beam_search(
    model: nn.Module,
    src_ids: Tensor,
    src_padding_mask: Tensor | None = None,
    beam_size: int = 4,
    alpha: float = 0.6,
    max_new_tokens: int | None = None,
    fast: bool | None = None,
    check_every: int = 4,
) -> list[list[int]]:
    """Batched beam search with the GNMT length penalty.

    Args:
        model: an encoder-decoder model.
        src_ids: (B, S) source token ids.
        src_padding_mask: (B, S) bool, True = real token.
        beam_size: K hypotheses kept per sentence, at most the target vocabulary size.
        alpha: length-penalty exponent (0.6 in the paper), finite and >= 0.
        max_new_tokens: limit on generated tokens (default: source length + 50).
        fast: the whole step on the device, on a static state, replayed as a CUDA graph; None: on CUDA when the
            model supports it (see the module doc). Same hypotheses as the eager loop.
        check_every: on the fast path, steps between host checks of whether every sentence is done.

    Returns:
        For each source, the best hypothesis' token ids without the start token and ``eos_id``.
    """
    check_beam_options(beam_size, alpha, getattr(model.config, "tgt_vocab_size", None))
    check_int(max_new_tokens, "max_new_tokens", minimum=1, allow_none=True)
    check_int(check_every, "check_every", minimum=1)
    fast = _use_fast(model, src_ids, fast)
    memory, src_padding_mask = model.encode(src_ids, src_padding_mask)
    limits = _limits(model, src_padding_mask, max_new_tokens).tolist()
    batch, k, device = src_ids.shape[0], beam_size, src_ids.device
    if not fast:
        step_fn, reorder = _eager_beam_step(model, *_beam_rows(memory, src_padding_mask, k), max(limits))
        return _beam_loop(model, step_fn, reorder, limits, batch, k, alpha, device)
    search, fresh = _static_step(model, memory, src_padding_mask, max(limits), beam=k)
    with search.lock, static_context(search.device):
        search.configure(limits, alpha)
        search.start(fresh)
        done, steps = 0, max(limits)
        while done < steps:
            n = min(check_every, steps - done)
            search.run(n)
            done += n
            if bool(search.done.all()):
                break
        return search.results()


def _beam_loop(
    model: nn.Module,
    step_fn: Callable[[Tensor], Tensor],
    reorder: Callable[[Tensor], None],
    limits: list[int],
    batch: int,
    k: int,
    alpha: float,
    device: torch.device,
) -> list[list[int]]:
    """The search itself, given a decoder step (last tokens (B*K, 1) -> logits (B*K, V)) and reorder."""
    c = model.config
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive so the first step does not repeat it
    last = torch.full((batch * k, 1), c.bos_id, dtype=torch.long, device=device)  # (B*K, 1) each beam's last token
    prev: list[list[int]] = [[] for _ in range(batch * k)]  # each beam's tokens so far, on the host
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    banned = torch.tensor(_banned(model), dtype=torch.long, device=device)
    kernel = verify_row_top(device)  # the candidates as the static search takes them on this device
    for step in range(max(limits)):
        logits = step_fn(last)  # (B*K, V)
        vocab = logits.shape[-1]
        top_scores, top_idx = beam_candidates(logits, scores, k, banned, kernel)  # (B, 2K) each
        top_scores_l, top_idx_l = top_scores.tolist(), top_idx.tolist()
        # Built as lists on the host (element-wise tensor writes would cost a dispatch each).
        new_scores = [[float("-inf")] * k for _ in range(batch)]
        new_beam = [[0] * k for _ in range(batch)]
        new_tok = [[c.pad_id] * k for _ in range(batch)]
        for b in range(batch):
            if done[b]:
                continue
            live = 0
            for rank in range(2 * k):
                score, beam, tok = top_scores_l[b][rank], *divmod(top_idx_l[b][rank], vocab)
                if score == float("-inf"):
                    break
                if tok == c.eos_id:
                    if rank < k:  # an eos outside the top K would not have survived as a beam
                        finished[b].append((score / length_penalty(step + 1, alpha), prev[b * k + beam]))
                    continue
                new_scores[b][live], new_beam[b][live], new_tok[b][live] = score, beam, tok
                live += 1
                if live == k:
                    break
            at_limit = step + 1 >= limits[b]
            if at_limit:
                for j in range(live):
                    hyp = prev[b * k + new_beam[b][j]] + [new_tok[b][j]]
                    finished[b].append((new_scores[b][j] / length_penalty(step + 1, alpha), hyp))
            # As fairseq: a sentence is done once K hypotheses have ended.
            done[b] = at_limit or live == 0 or len(finished[b]) >= k
        if all(done):
            break
        rows = [b * k + beam for b in range(batch) for beam in new_beam[b]]  # (B*K,) surviving beams
        reorder(torch.tensor(rows, device=device))
        tokens = [tok for row in new_tok for tok in row]
        prev = [prev[r] + [tok] for r, tok in zip(rows, tokens)]
        last = torch.tensor(tokens, device=device)[:, None]  # (B*K, 1)
        scores = torch.tensor(new_scores, device=device)  # (B, K) float32, the values above
    return [max(hyps, key=lambda h: h[0])[1] if hyps else [] for hyps in finished]


def _eager_beam_step(
    model: nn.Module, memory: Tensor, src_padding_mask: Tensor, steps: int
) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], None]]:
    """(last tokens (N, 1) -> logits (N, V), reorder(rows)) on a growing cache."""
    state = model.init_state(memory, src_padding_mask, steps)

    def step(tokens: Tensor) -> Tensor:
        return model.decode(tokens, None, None, state=state)[:, -1]  # (N, V)

    return step, state.reorder
