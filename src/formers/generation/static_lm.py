"""The fast causal decoding path: a static-shape KV cache and one decoding step replayed as a CUDA graph.

Small-batch decoding of a small model is bound by kernel launches and host work, not by the GPU: GPT-2 124M runs
~200 small kernels per token. :class:`StaticLMDecoder` runs the prompt eagerly into a static state
(``model.init_cache(..., static=True)``: fixed shapes, write position on the device), captures one step (forward,
pick the token with :func:`~formers.generation.sampling.next_tokens`, feed it back, record it) as a
``torch.cuda.CUDAGraph`` once per kind of step (:class:`StepKind`; and, with :data:`BURST` above 1, that many steps in
a row as a second graph), and replays them with no host work in between. Sampled
steps read their uniform number from a table made before the loop (:func:`~formers.generation.sampling.uniform_table`),
so the draws happen on the device and equal the eager path's. Compiled (``compile=True``; ``None``: one row on CUDA),
the model's part of the step is compiled once per decoder and shared by every kind of step, each of which compiles
only its token choice: a sampled call after a greedy one does not compile the model again.

:func:`run_static` drives it in bursts of ``check_every`` steps: while the device runs one burst, the host hands
the previous burst's ids to :class:`~formers.generation.stopping.Rows` (eos, ``stop``, streamer), which stops the
loop once every row has ended. Tokens therefore equal :func:`formers.generation.causal_lm.generate`'s eager ones;
at most two bursts are computed past the end and thrown away.

Decoders are cached on the model (:func:`cached_decoder`) per (batch size, capacity bucket, dtype, device), so
repeated calls neither reallocate the cache nor recapture the graph; the cache is emptied when the model's
parameters move (``.to()``, a new parameter), since a graph reads them at fixed addresses.

On CPU (or with ``use_graph=False``) the same static step runs eagerly: slower, but identical, which is what the
CPU tests check.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from formers.devices import side_stream
from formers.generation.sampling import next_tokens
from formers.generation.step_compile import compile_step
from formers.generation.stopping import Rows
from formers.layers import value_checks

CAPACITY_BUCKETS = tuple(sorted({base << k for base in (64, 96) for k in range(12)}))
"""Slots a decoder is built with: prompt + new tokens rounded up to one of these (at most 1.5x), then capped at
``max_seq_len``. Every step attends over all slots, so fewer buckets would mean more wasted attention."""

MAX_CACHED_DECODERS = 4  # per model; each holds a whole KV cache
MAX_GRAPHS = 4  # kinds of step captured per decoder
BURST = 1
"""Steps captured one after another in a second graph per kind of step, replayed for whole bursts of
:func:`run_static` (16: one graph launch per 16 tokens instead of per token). 1 (one graph): 16 measured no faster on
an H100 (2,793 -> 2,751 tokens/s, ``benchmarks/results/generate_step_variants_h100_combine.json``)."""

SHARED_BODY = True
"""Compiled steps compile the model's part once per decoder, shared by every kind of step, and each kind only its token
choice (:meth:`StaticLMDecoder._compiled_parts`). False: each kind of step compiles the whole step, the model
included (the code before 2026-12-08; ``benchmarks/generate_step_variants.py`` times both)."""


PREFILL_GRAPH_TOKENS = 512
"""Prompts of up to this many positions (rows x length) run their prefill as a CUDA graph too (one per prompt shape
and kind of step, :data:`MAX_GRAPHS` kept): an eager prefill launches a kernel per operation from the host,
milliseconds the GPU waits through on every call (about 18 ms for GPT-2 and 16 tokens on an H100). 0: always eager.
A captured prefill keeps its memory pool, the (B, T, V) logits included (GPT-2: 51 MB in bfloat16 at 512 positions),
so longer prompts, whose prefill keeps the GPU busy anyway, run eagerly."""


class StepKind(NamedTuple):
    """The shape of a decoding step: whether it samples, whether a temperature and a nucleus apply, and top-k (which
    sets a tensor's size). The temperature and top-p values themselves are read from the decoder's buffers, so a new
    value reuses the compiled and captured step instead of compiling another (20-50 s on a GPU)."""

    do_sample: bool
    scaled: bool
    top_k: int | None
    nucleus: bool


class Sampling(NamedTuple):
    """A call's token-choice options."""

    do_sample: bool
    temperature: float
    top_k: int | None
    top_p: float | None

    def kind(self) -> StepKind:
        """What of these options a step's graph is built for (one compiled and captured step each)."""
        sample = self.do_sample
        return StepKind(sample, sample and self.temperature != 1.0, self.top_k if sample else None,
                        sample and self.top_p is not None and self.top_p < 1.0)


def capacity_bucket(slots: int, max_seq_len: int) -> int:
    """The smallest bucket holding ``slots`` positions, capped at ``max_seq_len``."""
    return min(next((b for b in CAPACITY_BUCKETS if b >= slots), slots), max_seq_len)


class StaticLMDecoder:
    """Decoding of ``batch_size`` rows with a static cache of ``max_len`` slots and a captured step.

    The state, buffers and graphs are built once and reused by every call (a call resets the state in place);
    :func:`run_static` holds ``lock`` for a whole call, so concurrent calls wait for each other.

    Args:
        model: a decoder-only model in eval mode (e.g. ``GPT``), with the dtype to decode in.
        batch_size: rows B of every call.
        max_len: slots (prompt with padding + new tokens); every step attends over all of them.
        use_graph: capture the step in a CUDA graph (CUDA only); False runs it eagerly.
        compile: also pass the step through ``torch.compile`` (:func:`~formers.generation.step_compile.compile_step`)
            before capturing it.
        compile_fallback: if compiling fails, warn and run the step uncompiled instead of raising.
    """

    def __init__(
        self,
        model: nn.Module,
        batch_size: int,
        max_len: int,
        use_graph: bool = True,
        compile: bool = False,
        compile_fallback: bool = False,
    ) -> None:
        self.model = model
        self.max_len = max_len
        self.state = model.init_cache(batch_size, max_len, static=True)
        device = self.state.key_mask.device
        self.device = device
        self.use_graph = use_graph and device.type == "cuda"
        self.token = torch.zeros(batch_size, 1, dtype=torch.long, device=device)  # (B, 1) fed to the next step
        self.out = torch.zeros(batch_size, max_len, dtype=torch.long, device=device)  # (B, T_max) emitted ids
        self.noise = torch.zeros(batch_size, max_len, dtype=torch.float64, device=device)  # (B, T_max) uniforms
        self.count = torch.zeros((), dtype=torch.long, device=device)  # ids emitted so far
        self.temperature = torch.ones((), dtype=torch.float64, device=device)  # the call's, read by sampling steps
        self.top_p = torch.ones((), dtype=torch.float64, device=device)
        # (step kind, steps) -> the captured steps (1 and BURST for each kind of step)
        self.graphs: OrderedDict[tuple[StepKind, int], torch.cuda.CUDAGraph] = OrderedDict()
        # (step kind, prompt shape, padded) -> the captured prefill and the prompt buffers it reads
        self.prefills: OrderedDict[tuple, tuple[torch.cuda.CUDAGraph, Tensor, Tensor | None] | None] = OrderedDict()
        self.lock = threading.Lock()  # one generation at a time: calls share the state
        self.compile = compile  # False after a failed compile with compile_fallback
        self.compiled_body: Callable | None = None  # the model's part of a step, compiled once for every kind
        self.compiled: dict[StepKind, Callable] = {}  # the token choice compiled per kind of step (its own code)
        self.compile_fallback = compile_fallback
        self.checked: set[StepKind] = set()  # kinds of step that have run (compiled or fallen back)

    @property
    def batch_size(self) -> int:
        return self.token.shape[0]

    def _emit(self, logits: Tensor, kind: StepKind) -> None:
        """Picks each row's token from ``logits`` (B, V), feeds it back and records it, all on the device."""
        uniform = self.noise.index_select(1, self.count[None])[:, 0] if kind.do_sample else None  # (B,)
        temperature, top_p = self.temperature if kind.scaled else 1.0, self.top_p if kind.nucleus else None
        token = next_tokens(logits, uniform, temperature, kind.top_k, top_p)[:, None]  # (B, 1)
        self.token.copy_(token)
        self.out.index_copy_(1, self.count[None], token)
        self.count += 1

    def _body(self) -> Tensor:
        """The model's part of a step: feeds the last token through the model into the cache; the next logits (B, V)."""
        return self.model(self.token, cache=self.state).logits[:, -1]

    def _step(self, kind: StepKind) -> None:
        self._emit(self._body(), kind)

    def _compiled_parts(self, kind: StepKind) -> tuple[Callable, Callable]:
        """The compiled body (one for every kind of step) and this kind's compiled token choice
        (:func:`~formers.generation.step_compile.compile_step`, each compiled on its first call).

        The model's part is compiled once per decoder and shared: a sampled call after a greedy one compiles only
        its token choice (a few seconds, not the model's 20-50 on a GPU), and every kind of step runs the same tuned
        kernels for the model, so greedy and sampled steps differ only by the choice."""
        if self.compiled_body is None:
            self.compiled_body = compile_step(self._body)
        if kind not in self.compiled:
            self.compiled[kind] = compile_step(self._emit)
        return self.compiled_body, self.compiled[kind]

    def _run_step(self, kind: StepKind) -> None:
        """One step, through its compiled parts when compiling."""
        if not self.compile:
            return self._step(kind)
        if not SHARED_BODY:
            if kind not in self.compiled:
                self.compiled[kind] = compile_step(self._step)
            return self.compiled[kind](kind)
        body, emit = self._compiled_parts(kind)
        emit(body(), kind)

    def _checked_step(self, kind: StepKind) -> None:
        """Runs one step; the first of each kind compiles it (if compiling), and when that fails with
        ``compile_fallback`` set, warns and goes on uncompiled."""
        if kind in self.checked or not self.compile:
            self._run_step(kind)
            self.checked.add(kind)
            return
        logits = None
        try:
            if SHARED_BODY:
                body, emit = self._compiled_parts(kind)
                logits = body()
                emit(logits, kind)
            else:
                self._run_step(kind)
        except Exception as error:
            if not self.compile_fallback:
                raise
            warnings.warn(
                f"torch.compile could not compile the decoding step ({type(error).__name__}: {error}); decoding "
                "without it (pass compile=False to skip the attempt)",
                RuntimeWarning,
                stacklevel=2,
            )
            self.compile = False
            # A part fails to compile before it runs: either the state is untouched (the body failed), or the body
            # has run and its logits stand (the token choice failed, and runs uncompiled on them).
            if logits is None:
                self._step(kind)
            else:
                self._emit(logits, kind)
        self.checked.add(kind)

    def _graph(self, kind: StepKind, steps: int = 1) -> torch.cuda.CUDAGraph:
        """``steps`` steps of ``kind`` captured as one graph: warmed up on a side stream, then captured (state
        reset after)."""
        key = (kind, steps)
        if key in self.graphs:
            self.graphs.move_to_end(key)
            return self.graphs[key]
        self.state.reset()
        self.count.zero_()
        with side_stream():
            self._checked_step(kind)
            for _ in range(2):
                self._run_step(kind)
        self.state.reset()
        self.count.zero_()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(steps):
                self._run_step(kind)
        self.graphs[key] = graph
        while len(self.graphs) > 2 * MAX_GRAPHS:
            self.graphs.popitem(last=False)
        return graph

    def start(self, input_ids: Tensor, padding_mask: Tensor | None, sampling: Sampling, uniforms: Tensor | None) -> None:
        """Resets the state, runs the prompt (B, T) and emits the first token (captures the step first if new).

        ``uniforms`` (B, N) are the draws of steps 0..N-1 (sampling only); the caller keeps T + N <= ``max_len``.
        """
        kind = sampling.kind()
        if self.use_graph:  # captured now, so that capture's warm-up steps run before the real state is filled
            self._graph(kind)
            self._graph(kind, BURST)
        if uniforms is not None:
            self.noise[:, : uniforms.shape[1]].copy_(uniforms)
        self.temperature.fill_(sampling.temperature)
        self.top_p.fill_(1.0 if sampling.top_p is None else sampling.top_p)
        prefill = self._prefill_graph(input_ids, padding_mask, kind)
        if prefill is None:
            self._prefill(input_ids, padding_mask, kind)
            return
        graph, ids, mask = prefill
        ids.copy_(input_ids)
        if mask is not None:
            mask.copy_(padding_mask)
        graph.replay()

    def _prefill(self, input_ids: Tensor, padding_mask: Tensor | None, kind: StepKind) -> None:
        """Empties the state, runs the prompt into it and emits the first token."""
        self.state.reset()
        self.count.zero_()
        self._emit(self.model(input_ids, padding_mask, cache=self.state).logits[:, -1], kind)

    def _prefill_graph(
        self, input_ids: Tensor, padding_mask: Tensor | None, kind: StepKind
    ) -> tuple[torch.cuda.CUDAGraph, Tensor, Tensor | None] | None:
        """The captured prefill for this prompt shape (made on first use), or None where prefills run eagerly
        (no graphs, a prompt longer than :data:`PREFILL_GRAPH_TOKENS`, or a capture that failed for this shape)."""
        if not self.use_graph or input_ids.numel() > PREFILL_GRAPH_TOKENS:
            return None
        key = (kind, tuple(input_ids.shape), padding_mask is not None)
        if key in self.prefills:
            self.prefills.move_to_end(key)
            return self.prefills[key]
        ids = input_ids.clone()
        mask = None if padding_mask is None else padding_mask.clone()
        with side_stream():  # warm-up: allocations and lazy initialisations outside the capture
            self._prefill(ids, mask, kind)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._prefill(ids, mask, kind)
        except RuntimeError as error:  # something in the model's prompt pass reads the device: stay eager for it
            warnings.warn(f"the prompt pass could not be captured ({error}); running it eagerly", RuntimeWarning,
                          stacklevel=3)
            self.prefills[key] = None
            return None
        self.prefills[key] = (graph, ids, mask)
        while len(self.prefills) > MAX_GRAPHS:
            self.prefills.popitem(last=False)
        return self.prefills[key]

    def advance(self, steps: int, sampling: Sampling) -> None:
        """Runs ``steps`` more decoding steps (replays of the captured graphs on CUDA: whole bursts, then single
        steps)."""
        kind = sampling.kind()
        if not self.use_graph:
            for _ in range(steps):
                self._checked_step(kind)
            return
        burst, single = self.graphs[kind, BURST], self.graphs[kind, 1]
        for _ in range(steps // BURST):
            burst.replay()
        for _ in range(steps % BURST):
            single.replay()

    def fetch(self, start: int, end: int) -> _Pending:
        """Starts copying the ids of steps [start, end) to the host without waiting for them."""
        ids = self.out[:, start:end]  # (B, n)
        if self.device.type != "cuda":
            return _Pending(ids.clone(), None)
        host = ids.to("cpu", non_blocking=True)  # pinned, so the copy is queued behind the steps
        event = torch.cuda.Event()
        event.record()
        return _Pending(host, event)


class _Pending(NamedTuple):
    ids: Tensor  # (B, n) on the host once ``event`` has passed
    event: torch.cuda.Event | None

    def columns(self) -> list[list[int]]:
        """The n steps' ids, each a list of B ids (waits for the copy)."""
        if self.event is not None:
            self.event.synchronize()
        return self.ids.T.tolist()


def run_static(
    decoder: StaticLMDecoder,
    input_ids: Tensor,
    padding_mask: Tensor | None,
    max_new_tokens: int,
    sampling: Sampling,
    uniforms: Tensor | None,
    rows: Rows,
    check_every: int = 16,
) -> None:
    """Generates up to ``max_new_tokens`` ids per row into ``rows``, checking for the end every ``check_every`` steps.

    The device runs burst k + 1 while the host reads burst k, so the host never waits for a step it does not need.
    """
    with decoder.lock, static_context(decoder.device):
        decoder.start(input_ids, padding_mask, sampling, uniforms)
        produced = 1
        pending = decoder.fetch(0, 1)
        while True:
            following = None
            if produced < max_new_tokens:
                n = min(check_every, max_new_tokens - produced)
                decoder.advance(n, sampling)
                following = decoder.fetch(produced, produced + n)
                produced += n
            for column in pending.columns():
                if rows.push(column):
                    return
            if following is None:
                return
            pending = following


class DecoderCache:
    """Decoders of one model (most recently used last), dropped whenever the model's tensors change address.

    Copies and pickles of a model get an empty cache (graphs and caches are tied to this model's memory).
    """

    def __init__(self) -> None:
        self.decoders: OrderedDict[tuple, object] = OrderedDict()
        self.sizes: dict[tuple, int] = {}  # bytes each decoder holds (held_bytes), for a budget
        self.fingerprint: tuple = ()

    def __deepcopy__(self, memo: dict) -> DecoderCache:
        return DecoderCache()

    def __reduce__(self) -> tuple:
        return (DecoderCache, ())

    def get(
        self, model: nn.Module, key: tuple, build: Callable[[], Any], limit: int = MAX_CACHED_DECODERS,
        budget: int | None = None,
    ) -> Any:
        """The decoder stored under ``key`` (with the model's dtype and device and the autocast state), made by
        ``build`` if missing, after dropping the least recently used ones beyond ``limit - 1``; then, with a
        ``budget`` in bytes, the least recently used others while the decoders hold more (:func:`held_bytes`; the
        one just made stays, whatever its size)."""
        fingerprint = tuple((t.data_ptr(), t.dtype, t.device) for t in (*model.parameters(), *model.buffers()))
        if fingerprint != self.fingerprint:
            self.decoders.clear()
            self.sizes.clear()
            self.fingerprint = fingerprint
        first = next(model.parameters())
        key = (*key, first.dtype, first.device, autocast_state(first.device.type))
        if key not in self.decoders:
            while self.decoders and len(self.decoders) >= limit:
                self._drop_oldest()  # freed before the next one is allocated
            self.decoders[key] = build()
            self.sizes[key] = held_bytes(self.decoders[key])
        self.decoders.move_to_end(key)
        if budget is not None:
            while len(self.decoders) > 1 and sum(self.sizes.values()) > budget:
                self._drop_oldest()
        return self.decoders[key]

    def _drop_oldest(self) -> None:
        old, _ = self.decoders.popitem(last=False)
        self.sizes.pop(old, None)


def held_bytes(obj: Any, depth: int = 6) -> int:
    """Bytes of the distinct tensor storages reachable from ``obj`` through attributes, lists, tuples and dicts, up
    to ``depth`` levels down; modules are not entered (the model's weights are not a decoder's)."""
    storages: set[tuple] = set()
    seen: set[int] = set()
    total = 0

    def visit(x: Any, left: int) -> None:
        nonlocal total
        if isinstance(x, Tensor):
            storage = x.untyped_storage()
            where = (storage.data_ptr(), x.device)
            if where not in storages:
                storages.add(where)
                total += storage.nbytes()
            return
        if left == 0 or isinstance(x, (nn.Module, str, bytes, int, float)) or x is None or id(x) in seen:
            return
        seen.add(id(x))
        if isinstance(x, dict):
            children = list(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            children = list(x)
        elif hasattr(x, "__dict__"):
            children = list(vars(x).values())
        else:
            return
        for child in children:
            visit(child, left - 1)

    visit(obj, depth)
    return total


def autocast_state(device_type: str) -> tuple[bool, torch.dtype | None]:
    """Whether autocast is on for ``device_type`` and to which dtype: a graph captured under it computes that way."""
    if not torch.is_autocast_enabled(device_type):
        return (False, None)
    return (True, torch.get_autocast_dtype(device_type))


@contextlib.contextmanager
def static_context(device: torch.device) -> Iterator[None]:
    """Where static decoding runs: on ``device``, with autocast's weight-cast cache off (a graph must not read casts
    that autocast frees when its context exits; the casts are captured instead), and no value checks (the caller
    checked its inputs; a check would read the device while a graph is captured)."""
    enabled, dtype = autocast_state(device.type)
    with contextlib.ExitStack() as stack:
        if device.type == "cuda":
            stack.enter_context(torch.cuda.device(device))
        if enabled:
            stack.enter_context(torch.autocast(device.type, dtype=dtype, cache_enabled=False))
        stack.enter_context(value_checks(False))
        yield


def model_cache(model: nn.Module) -> DecoderCache:
    """The :class:`DecoderCache` kept on ``model`` (made on first use)."""
    cache = model.__dict__.get("_static_decoders")
    if cache is None:
        cache = DecoderCache()
        model.__dict__["_static_decoders"] = cache
    return cache


def cached_decoder(
    model: nn.Module,
    batch_size: int,
    slots: int,
    use_graph: bool = True,
    compile: bool = False,
    compile_fallback: bool = False,
) -> StaticLMDecoder:
    """The model's decoder for ``batch_size`` rows and at least ``slots`` slots (a capacity bucket), made once."""
    max_len = capacity_bucket(slots, model.config.max_seq_len)
    build = lambda: StaticLMDecoder(model, batch_size, max_len, use_graph, compile, compile_fallback)  # noqa: E731
    key = ("causal_lm", batch_size, max_len, use_graph, compile, compile_fallback)
    return model_cache(model).get(model, key, build)


def clear_decoders(model: nn.Module) -> None:
    """Frees the static caches and CUDA graphs that fast decoding keeps on ``model``."""
    model.__dict__.pop("_static_decoders", None)
