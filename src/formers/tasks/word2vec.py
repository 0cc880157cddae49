"""word2vec training: a chunk of sentences -> examples drawn on the device -> sequential word2vec updates.

Batches come from :class:`formers.data.word2vec.Word2VecLoader`: ``{"words": (n,), "sentence_lengths": (s,),
"seed": int, "progress": float, "progress_end": float}``. One step draws, with a generator seeded by the chunk's
seed, on the model's device and vectorised over the whole chunk: subsampling -> shrinking windows -> skip-gram pairs
(or CBOW windows) -> negatives / Huffman paths. It then applies the examples as consecutive closed-form updates
(:meth:`~formers.models.word2vec.Word2Vec.sgd_step_`) of ``words_per_update`` centre words each, on copies of the
parameters, at the learning rate of the run's progress, and hands the total change to the Trainer as the gradient:
one SGD step with learning rate 1 applies it. The loss's value is the mean loss of the chunk's examples.

Evaluation builds :class:`~formers.inference.word_vectors.WordVectors` from the input vectors and scores analogies
(Google ``questions-words.txt`` format) and word-pair similarity (WordSim-353 format), as gensim does.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from formers.data.word2vec import (
    NegativeSampler,
    Vocabulary,
    context_windows,
    huffman_tree,
    sentence_ids,
    skipgram_pairs,
    subsample,
)
from formers.devices import side_stream
from formers.inference.word_vectors import WordVectors
from formers.models.word2vec import OutputRows, output_rows
from formers.training.task import StepOutput


@dataclass
class Word2VecEvaluation:
    """What :meth:`Word2VecTask.evaluate` scores (the Trainer's ``eval_loader`` for word2vec).

    Attributes:
        analogies: a ``questions-words.txt`` style file, or ``None``.
        pairs: a WordSim-353 style ``word<TAB>word<TAB>score`` file, or ``None``.
        restrict_vocab: only questions whose words are all among this many most frequent words count
            (gensim's ``restrict_vocab``; 300,000 by default there, 30,000 in the shared corpus's baseline).
    """

    analogies: str | os.PathLike[str] | None = None
    pairs: str | os.PathLike[str] | None = None
    restrict_vocab: int = 300_000


class _UpdateAsGradient(torch.autograd.Function):
    """Value: ``value``. Gradient w.r.t. each parameter: ``parameter - updated``, so one SGD step with learning rate
    1 moves every parameter onto its updated copy (and the Trainer's non-finite guard can still refuse it)."""

    @staticmethod
    def forward(ctx, value: Tensor, num_params: int, *tensors: Tensor) -> Tensor:
        params, updated = tensors[:num_params], tensors[num_params:]
        ctx.deltas = [p.detach() - u for p, u in zip(params, updated)]
        return value.detach().clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        deltas, ctx.deltas = ctx.deltas, None
        return (None, None, *(d * grad for d in deltas), *([None] * len(deltas)))


UPDATES_PER_GRAPH = 32
"""Consecutive updates run as one group (one CUDA graph replay) by ``Word2VecTask(graph_updates=True)``."""
PAD_MULTIPLE = 512
"""Examples per padded update are rounded up to a multiple of this, so a few captured layouts serve a whole run."""
MAX_GROUP_LAYOUTS = 8


class _UpdateGroup:
    """:data:`UPDATES_PER_GRAPH` consecutive padded updates of one layout on persistent tables: a CUDA graph on CUDA.

    The graph reads static buffers (the group's slice of the chunk's padded layout is copied into them before each
    replay) and updates the tables in place, as the eager updates update the chunk's copies.
    """

    def __init__(self, model: nn.Module, tables: dict[str, Tensor], layout: dict[str, Tensor], names: list[str]):
        self.model, self.tables, self.names = model, tables, names
        self.buffers = {k: torch.zeros_like(v[:UPDATES_PER_GRAPH]) for k, v in layout.items()}
        self.graph: torch.cuda.CUDAGraph | None = None
        if next(iter(tables.values())).device.type == "cuda":
            with side_stream():  # warm-up before capture; all-padding buffers change nothing
                self._updates()
            try:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self.loss = self._updates()
                self.graph = graph
            except RuntimeError as e:  # a kernel that cannot be captured must not end a run eager updates can do
                warnings.warn(f"capturing the word2vec updates as a CUDA graph failed ({str(e)[:200]}); running "
                              "the padded groups eagerly", stacklevel=3)

    def _updates(self) -> Tensor:
        b, total = self.buffers, None
        for g in range(UPDATES_PER_GRAPH):
            rows = [OutputRows(n, b[f"{n}.ids"][g], b[f"{n}.labels"][g], b[f"{n}.valid"][g]) for n in self.names]
            mask, share = (b["input_mask"][g], b["input_share"][g]) if "input_mask" in b else (None, None)
            loss = self.model.sgd_step_(self.tables, b["alphas"][g], b["inputs"][g], rows, mask, share).sum()
            total = loss if total is None else total + loss
        return total

    def run(self, layout: dict[str, Tensor]) -> Tensor:
        """Applies every update of ``layout`` to the tables; returns their loss sum."""
        total = torch.zeros((), device=layout["inputs"].device)
        for first in range(0, layout["inputs"].shape[0], UPDATES_PER_GRAPH):
            for k, buffer in self.buffers.items():
                buffer.copy_(layout[k][first:first + UPDATES_PER_GRAPH], non_blocking=True)
            if self.graph is None:
                total += self._updates()
            else:
                self.graph.replay()
                total += self.loss
        return total


class _GroupedUpdates:
    """One model's persistent tables (one copy, whatever the layouts) and its captured groups, by layout."""

    def __init__(self, model: nn.Module, params: dict[str, Tensor]) -> None:
        self.model = model
        self.tables = {n: p.detach().clone() for n, p in params.items()}
        self.groups: dict[tuple, _UpdateGroup] = {}

    def run(self, params: dict[str, Tensor], layout: dict[str, Tensor], names: list[str]) -> Tensor:
        key = tuple((k, tuple(v.shape[1:]), v.dtype) for k, v in layout.items())
        group = self.groups.get(key)
        if group is None:
            if len(self.groups) >= MAX_GROUP_LAYOUTS:
                self.groups.clear()  # a few widths recur in a run; past that, start over
            group = self.groups[key] = _UpdateGroup(self.model, self.tables, layout, names)
        for name, p in params.items():
            self.tables[name].copy_(p.detach())
        return group.run(layout)


class Word2VecTask:
    """Trains word2vec from chunks of the encoded corpus; evaluates analogies and word-pair similarity.

    A chunk's examples are drawn at once (vectorised, on the device), then trained as consecutive updates of
    ``words_per_update`` centre words each: every update sees the vectors the previous ones left, as word2vec's
    sequential (Hogwild) SGD does word by word. One big simultaneous update of a whole chunk would not train the
    same vectors: frequent words take thousands of summed steps from stale values and diverge.

    The step hands the chunk's total change to the Trainer as the gradient (parameter minus updated copy): the
    recipe's optimizer must be SGD with learning rate 1 and no clipping; the learning rate ``alpha`` is applied
    here, decaying linearly with the run's progress from ``alpha`` to ``min_alpha`` as in gensim.

    Args:
        vocab: the corpus vocabulary (counts give subsampling, the negative table and the Huffman tree).
        config: the model's :class:`~formers.models.word2vec.Word2VecConfig` (window, sample, negatives...).
        alpha: initial learning rate (gensim 0.025).
        min_alpha: final learning rate (gensim 0.0001).
        words_per_update: centre words per sequential update (after subsampling). Smaller is closer to the
            references (on the shared corpus, CBOW analogy accuracy 0.100 at 100 or 250, 0.098 at 1,000, 0.093 at
            4,000) and costs more kernel launches: the GPU recipes use 1,000. On CUDA each update is two fused
            Triton kernels when Triton is installed (:mod:`formers.layers.word2vec_update`), else about 25 torch
            ones.
        compile_updates: run each update through ``torch.compile`` (symbolic shapes: one graph for every update
            size), a few fused kernels instead of about 25 launched one by one from Python. Off by default: on an
            H200 it was slower than eager once its compile time is counted. Should compiling fail, the updates run
            eagerly, with a warning.
        graph_updates: pad a chunk's updates to one size (padding examples count for nothing) and run them
            :data:`UPDATES_PER_GRAPH` at a time as one captured CUDA graph, so the host launches a handful of
            kernels per group instead of about 25 per update. ``None``: on CUDA, unless ``compile_updates``. On a CPU
            the same padded groups run eagerly (slower; it checks the padding).
    """

    throughput_unit = "word"  # what StepOutput.num_tokens counts, in progress lines

    def __init__(
        self, vocab: Vocabulary, config: Any, alpha: float = 0.025, min_alpha: float = 0.0001,
        words_per_update: int = 250, compile_updates: bool = False, graph_updates: bool | None = None,
    ) -> None:
        if len(vocab) != config.vocab_size:
            raise ValueError(f"vocab has {len(vocab)} words but config.vocab_size is {config.vocab_size}")
        if not 0 <= min_alpha <= alpha:
            raise ValueError(f"need 0 <= min_alpha <= alpha, got min_alpha={min_alpha}, alpha={alpha}")
        if words_per_update < 1:
            raise ValueError(f"words_per_update must be >= 1, got {words_per_update}")
        if compile_updates and graph_updates:
            raise ValueError("compile_updates and graph_updates are two ways to speed the updates up: choose one")
        self.vocab, self.config = vocab, config
        self.alpha, self.min_alpha, self.words_per_update = alpha, min_alpha, words_per_update
        self.keep_probability = torch.from_numpy(vocab.keep_probabilities(config.sample))  # (V,) float64
        self.sampler = NegativeSampler(vocab.counts, config.ns_exponent) if config.negative > 0 else None
        self.tree = None
        if config.hierarchical_softmax:
            tree = huffman_tree(vocab.counts)
            self.tree = (torch.from_numpy(tree.points), torch.from_numpy(tree.codes), torch.from_numpy(tree.lengths))
        self._device: torch.device | None = None
        self.compile_updates, self.graph_updates = compile_updates, graph_updates
        self._compiled: tuple[nn.Module, Callable[..., Tensor]] | None = None  # (model, its compiled update)
        self._grouped: _GroupedUpdates | None = None  # the persistent tables and captured groups of one model

    def _update_function(self, model: nn.Module) -> Callable[..., Tensor]:
        """``model.sgd_step_``, compiled where :attr:`compile_updates` says so (once per model)."""
        if not self.compile_updates:
            return model.sgd_step_
        if self._compiled is None or self._compiled[0] is not model:
            compiled = torch.compile(model.sgd_step_, dynamic=True)

            def update(*args: Any) -> Tensor:
                try:
                    return compiled(*args)
                except Exception as e:  # noqa: BLE001 - a compiler failure must not end a run the eager path can do
                    warnings.warn(f"compiling the word2vec updates failed ({type(e).__name__}: {str(e)[:200]}); "
                                  "running them eagerly", stacklevel=2)
                    self._compiled = (model, model.sgd_step_)
                    return model.sgd_step_(*args)

            self._compiled = (model, update)
        return self._compiled[1]

    def _to(self, device: torch.device) -> None:
        """Moves the vocabulary tables to ``device`` once."""
        if self._device == device:
            return
        self.keep_probability = self.keep_probability.to(device)
        if self.sampler is not None:
            self.sampler.to(device)
        if self.tree is not None:
            self.tree = tuple(t.to(device) for t in self.tree)
        self._device = device

    def learning_rate(self, progress: float) -> float:
        """``alpha`` decayed linearly to ``min_alpha`` over the run (``progress`` in [0, 1])."""
        return max(self.min_alpha, self.alpha - (self.alpha - self.min_alpha) * progress)

    def examples(self, batch: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
        """The model inputs of one chunk, drawn on ``device`` from the chunk's seed.

        Returns:
            ``{"inputs", "targets", "centres", "negatives"?, "input_mask"? (CBOW), "points"/"codes"/"path_mask"?
            (HS)}``: skip-gram ``inputs`` ``(P,)``, CBOW ``(P, 2W)``; ``targets`` and ``centres`` ``(P,)``, the
            latter the position of each example's centre word among the subsampled words (non-decreasing).
        """
        self._to(device)
        cfg = self.config
        generator = torch.Generator(device=device)
        generator.manual_seed(int(batch["seed"]))
        words = batch["words"].to(device, non_blocking=True)
        sentences = sentence_ids(batch["sentence_lengths"].to(device, non_blocking=True), words.shape[0])
        if cfg.sample > 0:
            words, sentences = subsample(words, sentences, self.keep_probability, generator)
        context, mask = context_windows(words, sentences, cfg.window, generator, cfg.shrink_windows)
        out: dict[str, Tensor] = {}
        if cfg.architecture == "skipgram":
            out["inputs"], out["targets"] = skipgram_pairs(words, context, mask)
            out["centres"] = torch.arange(words.shape[0], device=device).repeat_interleave(mask.sum(dim=1))
        else:
            has_context = mask.any(dim=1)  # a centre with no context word makes no update (as in gensim)
            out["inputs"], out["input_mask"], out["targets"] = context[has_context], mask[has_context], words[has_context]
            out["centres"] = has_context.nonzero().squeeze(1)
        num = out["targets"].shape[0]
        if self.sampler is not None:
            out["negatives"] = self.sampler.draw((num, cfg.negative), generator)
        if self.tree is not None:
            points, codes, lengths = self.tree
            out["points"], out["codes"] = points[out["targets"]], codes[out["targets"]]
            out["path_mask"] = torch.arange(points.shape[1], device=device)[None, :] < lengths[out["targets"]][:, None]
        return out

    @staticmethod
    def model_inputs(ex: dict[str, Tensor]) -> dict[str, Tensor]:
        """The keyword arguments of the model's ``forward`` among :meth:`examples`' entries."""
        names = ("inputs", "targets", "input_mask", "negatives", "points", "codes", "path_mask")
        return {k: ex[k] for k in names if k in ex}

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        """Trains the chunk as sequential updates on copies of the parameters; returns their mean loss as the value
        and the total change as the gradient."""
        model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: the updates run eagerly anyway
        params = dict(model.named_parameters())
        device = next(iter(params.values())).device
        ex = self.examples(batch, device)
        num = ex["targets"].shape[0]
        last_centre = int(ex["centres"][-1]) + 1 if num else 0
        marks = torch.arange(self.words_per_update, max(last_centre, self.words_per_update), self.words_per_update,
                             device=device)
        cuts = [0, *torch.searchsorted(ex["centres"], marks).tolist(), num]  # example ranges of each update
        first, last = float(batch["progress"]), float(batch.get("progress_end", batch["progress"]))
        total, alpha = torch.zeros((), device=device), self.learning_rate(first)
        rows = output_rows(ex["targets"], ex.get("negatives"), ex.get("points"), ex.get("codes"), ex.get("path_mask"))
        mask, share = ex.get("input_mask"), None
        if mask is not None:  # float, and each context word's share of its window, once for the whole chunk
            mask = mask.float()
            share = mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        # the rate decays within the chunk too, by the share of its centre words done (gensim: every 10k words);
        # one copy to the device for the whole chunk, so a compiled update takes its rate as a tensor
        rates = [self.learning_rate(first + (last - first) * k * self.words_per_update / max(last_centre, 1))
                 for k in range(len(cuts) - 1)]
        alphas = torch.tensor(rates, dtype=torch.float32).to(device, non_blocking=True)
        grouped = self.graph_updates if self.graph_updates is not None else (
            device.type == "cuda" and not self.compile_updates)
        if grouped and num:
            alpha = rates[-1]
            tables, total = self._grouped_updates(model, params, ex["inputs"], rows, mask, share, cuts, alphas)
        else:
            update = self._update_function(model)
            tables = {name: p.detach().clone() for name, p in params.items()}
            for k, (start, end) in enumerate(zip(cuts[:-1], cuts[1:])):
                if end > start:
                    alpha = rates[k]
                    part_rows = [r.slice(start, end) for r in rows]
                    part_mask, part_share = (None, None) if mask is None else (mask[start:end], share[start:end])
                    total += update(tables, alphas[k], ex["inputs"][start:end], part_rows, part_mask, part_share).sum()
        mean = total / max(num, 1)
        loss = _UpdateAsGradient.apply(mean, len(params), *params.values(), *(tables[n] for n in params))
        metrics = {"examples": float(num), "alpha": alpha}
        return StepOutput(loss=loss, metrics=metrics, num_tokens=int(batch["words"].shape[0]))

    def _grouped_updates(
        self, model: nn.Module, params: dict[str, Tensor], inputs: Tensor, rows: list[OutputRows],
        mask: Tensor | None, share: Tensor | None, cuts: list[int], alphas: Tensor,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """The chunk's updates as padded groups (see ``graph_updates``); returns the updated tables and the loss sum."""
        sizes = [end - start for start, end in zip(cuts[:-1], cuts[1:])]
        width = -(-max(sizes) // PAD_MULTIPLE) * PAD_MULTIPLE  # examples per padded update
        count = -(-len(sizes) // UPDATES_PER_GRAPH) * UPDATES_PER_GRAPH  # updates, padded to whole groups
        device = inputs.device
        size = torch.tensor(sizes + [0] * (count - len(sizes)), device=device)
        start = torch.tensor(cuts[:-1] + [0] * (count - len(sizes)), device=device)
        slot = torch.arange(width, device=device)
        real = slot[None, :] < size[:, None]  # (U, W): which slots hold an example
        index = (start[:, None] + slot[None, :]).clamp_(max=inputs.shape[0] - 1)  # (U, W)
        layout = {"inputs": inputs[index], "alphas": torch.cat([alphas, alphas.new_zeros(count - len(sizes))])}
        for r in rows:
            layout[f"{r.table}.ids"], layout[f"{r.table}.labels"] = r.ids[index], r.labels[index]
            layout[f"{r.table}.valid"] = r.valid[index] & real[..., None]
        if mask is not None:  # float (see training_step); padding slots read and receive nothing
            layout["input_mask"], layout["input_share"] = mask[index] * real[..., None], share[index] * real[..., None]
        if self._grouped is None or self._grouped.model is not model:  # a new model invalidates every capture
            self._grouped = _GroupedUpdates(model, params)
        total = self._grouped.run(params, layout, [r.table for r in rows])
        return self._grouped.tables, total

    @torch.no_grad()
    def evaluate(self, model: nn.Module, evaluation: Word2VecEvaluation) -> dict[str, float]:
        """Analogy accuracy and word-pair Spearman correlation of the model's input vectors."""
        vectors = WordVectors(self.vocab.words, model.input_vectors.detach().float().cpu(), self.vocab.counts)
        metrics: dict[str, float] = {}
        if evaluation.analogies is not None:
            result = vectors.evaluate_analogies(evaluation.analogies, restrict_vocab=evaluation.restrict_vocab)
            metrics["analogy_accuracy"] = result.accuracy
            metrics["analogy_semantic"] = result.semantic_accuracy
            metrics["analogy_syntactic"] = result.syntactic_accuracy
        if evaluation.pairs is not None:
            pairs = vectors.evaluate_pairs(evaluation.pairs, restrict_vocab=evaluation.restrict_vocab)
            metrics["pairs_spearman"] = pairs.spearman
            metrics["pairs_pearson"] = pairs.pearson
        return metrics
