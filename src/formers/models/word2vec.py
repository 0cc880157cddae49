"""word2vec: skip-gram and CBOW word vectors with negative sampling and hierarchical softmax (Mikolov et al. 2013,
"Efficient Estimation of Word Representations in Vector Space", https://arxiv.org/abs/1301.3781, and "Distributed
Representations of Words and Phrases and their Compositionality", https://arxiv.org/abs/1310.4546).

Reference implementations: the original C tool (``word2vec.c``) and gensim 4's ``Word2Vec`` (``word2vec_inner.pyx``),
whose update rules this module reproduces, both in closed form (:meth:`Word2Vec.sgd_step_`) and as a loss whose
gradient is that update (:meth:`Word2Vec.forward`; a test checks they agree):

- Skip-gram: the *context* word's vector ``v`` (``syn0``) predicts the window's centre word; CBOW: the mean of the
  context vectors predicts the centre word, and every context vector receives the full error of that mean, not a
  share of it (``cbow_mean=1`` in both references; the true gradient of a mean would be divided by the count).
- Negative sampling: the target's output vector (``syn1neg``) is pushed towards ``v`` and ``negative`` sampled words'
  away; a sampled word equal to the target is skipped. Hierarchical softmax: one logistic unit per inner node of the
  target's Huffman path (``syn1``; the tree is built in :mod:`formers.data.word2vec.huffman`).
- Like gensim, a term whose dot product ``|u . v|`` reaches ``MAX_EXP = 6`` makes no update (the C tool clips it to
  0 or 1 for negative sampling and skips it for hierarchical softmax).
- Initialisation as gensim 4: word vectors uniform in ``[-1/D, 1/D)`` (the C tool uses ``[-0.5/D, 0.5/D)``),
  output vectors zero.

Notable differences: the references update after every word, their threads racing (Hogwild). formers draws a whole
chunk of examples at once on the device and applies them as consecutive closed-form updates of about a thousand
centre words each (:meth:`Word2Vec.sgd_step_`, driven by :mod:`formers.tasks.word2vec`): within one update the
examples read the same weights and their changes add up, as concurrent Hogwild threads' do. Applying a whole chunk
as one update does not work: a frequent word collects thousands of stale steps and diverges. The sigmoid is exact,
not a 1000-entry table.

Where gensim's defaults live: ``embed_dim`` (gensim's ``vector_size``) 100, ``window`` 5, ``negative`` 5,
``sample`` 1e-3, ``ns_exponent`` 0.75 here in :class:`Word2VecConfig` (they define how the vectors were trained and
are saved with them); ``min_count`` 5 and ``max_vocab_size`` in the data (``formers.data.word2vec``); ``alpha``
0.025 decaying linearly to ``min_alpha`` 0.0001 in the task (:class:`formers.tasks.word2vec.Word2VecTask`) and
``epochs`` 5 in the recipes. CBOW uses gensim's ``alpha`` 0.025, not the C tool's 0.05, so that both architectures
compare with gensim at its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.config import Between, Count, VocabSize, Width, check_fields
from formers.layers.validation import check_token_ids, should_check_values
from formers.layers.word2vec_update import (
    disable_fused_update,
    fused_sgd_update_,
    fused_update_available,
)
from formers.registry import register_family, register_model

MAX_EXP = 6.0
"""Terms with ``|u . v| >= MAX_EXP`` make no update (gensim's ``MAX_EXP``; its sigmoid table ends there)."""

ARCHITECTURES = ("skipgram", "cbow")


@dataclass
class Word2VecConfig:
    """How a word2vec model is shaped and trained (defaults: gensim 4's ``Word2Vec``, skip-gram).

    Attributes:
        vocab_size: words in the vocabulary (set from the corpus by the recipe).
        embed_dim: vector width (gensim's ``vector_size``).
        architecture: ``"skipgram"`` (gensim ``sg=1``) or ``"cbow"`` (``sg=0``).
        window: largest distance between the centre and a context word; each position draws its reach in
            ``1 .. window`` when ``shrink_windows`` is on.
        shrink_windows: draw each position's window (word2vec's default) instead of always using ``window``.
        negative: negative samples per prediction (0: no negative sampling; then ``hierarchical_softmax`` is needed).
        ns_exponent: negatives are drawn with probability proportional to ``count ** ns_exponent``.
        hierarchical_softmax: also train a hierarchical softmax over the Huffman tree (gensim ``hs=1``).
        sample: frequent-word subsampling threshold (0: off).
        cbow_mean: CBOW averages the context vectors (``False``: sums them).
    """

    vocab_size: VocabSize = 10_000
    embed_dim: Width = 100
    architecture: str = "skipgram"
    window: Count = 5
    shrink_windows: bool = True
    negative: Annotated[int, Between(0, 1024)] = 5
    ns_exponent: Annotated[float, Between(-16.0, 16.0)] = 0.75
    hierarchical_softmax: bool = False
    sample: Annotated[float, Between(0.0, 1.0)] = 1e-3
    cbow_mean: bool = True

    def __post_init__(self) -> None:
        check_fields(self)  # types, finiteness and ranges of every field, from the annotations
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.negative < 0:
            raise ValueError(f"negative must be >= 0, got {self.negative}")
        if self.negative == 0 and not self.hierarchical_softmax:
            raise ValueError("negative=0 needs hierarchical_softmax=True: the model would have no output layer")
        if self.hierarchical_softmax and self.vocab_size < 2:
            raise ValueError(f"hierarchical_softmax needs vocab_size >= 2, got {self.vocab_size}")
        if self.sample < 0:
            raise ValueError(f"sample must be >= 0, got {self.sample}")


@dataclass
class Word2VecOutput:
    """What :meth:`Word2Vec.forward` returns.

    Attributes:
        loss: ``(P,)`` the loss of each example (not reduced: word2vec's step is SGD on their sum).
    """

    loss: Tensor


class OutputRows(NamedTuple):
    """The rows of one output table that a batch of examples scores.

    Attributes:
        table: the parameter's name (``"output_vectors"`` or ``"node_vectors"``).
        ids: ``(P, J)`` rows of that table; labels: ``(P, J)`` float targets of the logistic units; valid: ``(P, J)``
            bool, which terms count.
    """

    table: str
    ids: Tensor
    labels: Tensor
    valid: Tensor

    def slice(self, start: int, end: int) -> OutputRows:
        """The rows of examples ``start:end``."""
        return OutputRows(self.table, self.ids[start:end], self.labels[start:end], self.valid[start:end])


def output_rows(
    targets: Tensor, negatives: Tensor | None = None, points: Tensor | None = None, codes: Tensor | None = None,
    path_mask: Tensor | None = None,
) -> list[OutputRows]:
    """The output rows each example scores, per enabled output layer.

    Negative sampling: the target (label 1) then the negatives (label 0), a negative equal to its target invalid, as
    both references skip it. Hierarchical softmax: the inner nodes of the target's path, label ``1 - code``.

    Args:
        targets: ``(P,)``; negatives: ``(P, K)`` or None; points, codes, path_mask: ``(P, L)`` or None.
    """
    rows = []
    if negatives is not None:
        ids = torch.cat([targets[:, None], negatives], dim=1)  # (P, 1 + K)
        labels = (torch.arange(ids.shape[1], device=ids.device) == 0).float().expand(ids.shape)  # (P, 1 + K)
        valid = torch.cat([torch.ones_like(targets[:, None], dtype=torch.bool), negatives != targets[:, None]], dim=1)
        rows.append(OutputRows("output_vectors", ids, labels, valid))
    if points is not None:
        rows.append(OutputRows("node_vectors", points, 1.0 - codes.float(), path_mask))  # (P, L) each
    return rows


@register_family
class Word2Vec(nn.Module):
    """Word vectors and the output layers that train them.

    Parameters (gensim's names in brackets): ``input_vectors`` ``(V, D)`` the word vectors [``wv.vectors``,
    ``syn0``]; ``output_vectors`` ``(V, D)`` negative-sampling output vectors [``syn1neg``], when ``negative > 0``;
    ``node_vectors`` ``(V - 1, D)`` hierarchical-softmax inner nodes [``syn1``], when ``hierarchical_softmax``.

    :meth:`forward` defines the loss (autograd works through it); :meth:`sgd_step_` applies word2vec's update of a
    batch of examples in closed form, in place, to given tables: the same as ``-alpha`` times the gradient of the
    summed loss, without forming dense gradients.
    """

    family = "word2vec"
    config_class = Word2VecConfig

    def __init__(self, config: Word2VecConfig) -> None:
        super().__init__()
        self.config = config
        vocab, dim = config.vocab_size, config.embed_dim
        self.input_vectors = nn.Parameter(torch.empty(vocab, dim).uniform_(-1.0 / dim, 1.0 / dim))
        self.output_vectors = nn.Parameter(torch.zeros(vocab, dim)) if config.negative > 0 else None
        self.node_vectors = nn.Parameter(torch.zeros(vocab - 1, dim)) if config.hierarchical_softmax else None

    def _check(self, inputs: Tensor, targets: Tensor, input_mask: Tensor | None, negatives: Tensor | None,
               paths: tuple[Tensor | None, ...]) -> None:
        cfg = self.config
        check_token_ids(targets, cfg.vocab_size, "targets")
        if targets.dim() != 1 or targets.shape[0] == 0:
            raise ValueError(f"targets must have shape (P,) with P >= 1, got {tuple(targets.shape)}")
        check_token_ids(inputs, cfg.vocab_size, "inputs")
        num = targets.shape[0]
        expected = (num,) if cfg.architecture == "skipgram" else (num, inputs.shape[-1] if inputs.dim() else 0)
        if tuple(inputs.shape) != expected or 0 in expected:
            raise ValueError(f"{cfg.architecture} inputs must have shape {expected}, got {tuple(inputs.shape)}")
        if cfg.architecture == "cbow":
            if input_mask is None:
                raise ValueError(f"CBOW needs input_mask of the inputs' shape {tuple(inputs.shape)}, got None")
            if not isinstance(input_mask, Tensor) or input_mask.dtype != torch.bool:
                got = input_mask.dtype if isinstance(input_mask, Tensor) else type(input_mask).__name__
                raise TypeError(f"CBOW needs input_mask, a boolean tensor (True = context word), got {got}")
            if input_mask.shape != inputs.shape:
                raise ValueError(f"input_mask must have the inputs' shape {tuple(inputs.shape)}, "
                                 f"got {tuple(input_mask.shape)}")
        if cfg.negative > 0:
            if negatives is None:
                raise ValueError(f"negatives must have shape ({num}, {cfg.negative}) when negative > 0, got None")
            check_token_ids(negatives, cfg.vocab_size, "negatives")
            if tuple(negatives.shape) != (num, cfg.negative):
                raise ValueError(f"negatives must have shape ({num}, {cfg.negative}), got {tuple(negatives.shape)}")
        if cfg.hierarchical_softmax:
            self._check_paths(num, *paths)

    def _check_paths(self, num: int, points: Tensor | None, codes: Tensor | None, path_mask: Tensor | None) -> None:
        """Raises unless the Huffman paths are ``(P, L)`` node ids, 0/1 codes and a boolean mask."""
        if points is None or codes is None or path_mask is None:
            raise ValueError("hierarchical_softmax needs points, codes and path_mask, got None")
        check_token_ids(points, self.config.vocab_size - 1, "points")
        if points.dim() != 2 or points.shape[0] != num:
            raise ValueError(f"points must have shape ({num}, path_length), got {tuple(points.shape)}")
        if not isinstance(codes, Tensor) or codes.is_floating_point() or codes.is_complex():
            got = codes.dtype if isinstance(codes, Tensor) else type(codes).__name__
            raise TypeError(f"codes must be an integer or boolean tensor of 0/1 branch codes, got {got}")
        if not isinstance(path_mask, Tensor) or path_mask.dtype != torch.bool:
            got = path_mask.dtype if isinstance(path_mask, Tensor) else type(path_mask).__name__
            raise TypeError(f"path_mask must be a boolean tensor (True = a node on the path), got {got}")
        for name, t in (("codes", codes), ("path_mask", path_mask)):
            if t.shape != points.shape:
                raise ValueError(f"{name} must have the shape of points {tuple(points.shape)}, got {tuple(t.shape)}")
        if should_check_values(codes) and codes.numel() and not bool(((codes == 0) | (codes == 1)).all()):
            raise ValueError("codes holds values other than 0 and 1")

    def hidden(self, inputs: Tensor, input_mask: Tensor | None = None) -> Tensor:
        """The vector that predicts each target.

        Args:
            inputs: skip-gram: ``(P,)`` context word ids; CBOW: ``(P, C)`` context windows.
            input_mask: CBOW only, ``(P, C)`` bool, True = a context word (each row has at least one).

        Returns:
            ``(P, D)``: the context word's vector (skip-gram), or the mean (``cbow_mean``) or sum of the window's
            vectors (CBOW). Its gradient reaches each context vector as the references update them: whole for
            the mean, divided by the window's size for the sum.
        """
        table = self.input_vectors
        if self.config.architecture == "skipgram":
            return F.embedding(inputs, table)
        weights = input_mask.to(table.dtype)
        summed = F.embedding_bag(inputs, table, mode="sum", per_sample_weights=weights)  # (P, D)
        count = weights.sum(dim=1, keepdim=True).clamp(min=1.0)  # (P, 1)
        if not torch.is_grad_enabled():  # the same values without the gradient's reshaping
            return summed / count if self.config.cbow_mean else summed
        if self.config.cbow_mean:
            return summed.detach() / count + (summed - summed.detach())
        return summed.detach() + (summed - summed.detach()) / count

    def forward(
        self,
        inputs: Tensor,
        targets: Tensor,
        input_mask: Tensor | None = None,
        negatives: Tensor | None = None,
        points: Tensor | None = None,
        codes: Tensor | None = None,
        path_mask: Tensor | None = None,
    ) -> Word2VecOutput:
        """Loss of predicting each target from its input, summed over the enabled output layers.

        Negative sampling: ``-log s(u_t . h) - sum_k log s(-u_k . h)``; hierarchical softmax:
        ``-sum_j log s((1 - 2 c_j) n_j . h)`` over the target's path; ``s`` is the logistic function. Terms with
        ``|u . h| >= MAX_EXP`` and negatives equal to the target count zero.

        Args:
            inputs: skip-gram ``(P,)`` context word ids, CBOW ``(P, C)`` context windows.
            targets: ``(P,)`` the word to predict.
            input_mask: CBOW ``(P, C)`` bool.
            negatives: ``(P, K)`` sampled ids, ``K = config.negative`` (needed when ``negative > 0``).
            points, codes, path_mask: ``(P, L)`` the targets' Huffman paths (needed with hierarchical softmax).

        Returns:
            :class:`Word2VecOutput` with the ``(P,)`` per-example losses.
        """
        self._check(inputs, targets, input_mask, negatives, (points, codes, path_mask))
        hidden = self.hidden(inputs, input_mask)
        loss = hidden.new_zeros(targets.shape[0])
        for name, ids, labels, valid in output_rows(targets, negatives, points, codes, path_mask):
            out = F.embedding(ids, getattr(self, name))  # (P, J, D)
            logits = torch.linalg.vecdot(out, hidden[:, None, :])  # (P, J)
            valid = valid & (logits.detach().abs() < MAX_EXP)
            loss = loss + (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * valid).sum(dim=1)
        return Word2VecOutput(loss=loss)

    @torch.no_grad()
    def sgd_step_(
        self, tables: dict[str, Tensor], alpha: float | Tensor, inputs: Tensor, rows: list[OutputRows],
        input_mask: Tensor | None = None, input_share: Tensor | None = None, fused: bool | None = None,
    ) -> Tensor:
        """Applies word2vec's SGD update of every example, in place, to ``tables``; returns their losses.

        Each example's update is the C tool's: with ``g = alpha * (label - s(u . h))`` per term, the output row
        moves by ``g * h`` and the input row(s) by the sum of ``g * u`` (the whole sum to every CBOW context word
        with ``cbow_mean``, divided by the window's size without). All examples are computed from ``tables`` as
        they are on entry and their updates summed: the same as ``-alpha`` times the gradient of
        ``forward(...).loss.sum()``. No step reads a value back from the device.

        Every kernel counts here: on a GPU an update of a thousand words is a few dozen small kernels, and their
        number sets the speed. Hence the loss as ``softplus((1 - 2 label) x)`` (what binary cross-entropy is for 0/1
        labels, in 3 kernels instead of about 10) and, on CUDA, the window's mean as one batched product.

        Args:
            tables: ``{parameter name: tensor}`` to read and update (e.g. working copies of the parameters).
            alpha: the learning rate (a float or 0-d tensor).
            inputs: skip-gram ``(P,)`` context word ids, CBOW ``(P, C)`` context windows.
            rows: :func:`output_rows` of the examples' targets, negatives and paths.
            input_mask: CBOW ``(P, C)`` bool, or float 0/1 (saves a conversion per call).
            input_share: CBOW ``(P, C)`` float, ``input_mask`` divided by the window's size (computed when not
                given; a caller running many updates computes it for all of them at once).
            fused: run the update as two fused Triton kernels (:mod:`formers.layers.word2vec_update`; None: on CUDA
                float32 contiguous tables when Triton is installed), else as the torch code below.

        Returns:
            ``(P,)`` per-example losses before the update.
        """
        cfg, words = self.config, tables["input_vectors"]
        expected = {n for n in ("output_vectors", "node_vectors") if getattr(self, n) is not None}
        if {r.table for r in rows} != expected or any(r.ids.shape[0] != inputs.shape[0] for r in rows):
            raise ValueError(f"rows must cover the output tables {sorted(expected)} for all {inputs.shape[0]} examples, "
                             f"got {[(r.table, tuple(r.ids.shape)) for r in rows]}")
        if cfg.architecture == "cbow":
            input_mask = input_mask.to(words.dtype)
            if input_share is None:
                input_share = input_mask / input_mask.sum(dim=1, keepdim=True).clamp(min=1.0)
            # the mean reads each context vector with its share and hands each the whole error; the sum the reverse
            reading, spreading = (input_share, input_mask) if cfg.cbow_mean else (input_mask, input_share)
        auto = fused is None
        if auto:
            fused = fused_update_available(words.device) and all(
                t.dtype == torch.float32 and t.is_contiguous() for t in tables.values())
        if fused:
            if not isinstance(alpha, Tensor):
                alpha = torch.tensor(alpha, dtype=torch.float32, device=words.device)
            weights = () if cfg.architecture == "skipgram" else (reading, spreading)
            try:
                return fused_sgd_update_(words, inputs.view(inputs.shape[0], -1),
                                         [(tables[r.table], *r[1:]) for r in rows], alpha, *weights)
            except Exception as e:  # Triton failing to build its kernels must not end a run the torch code can do
                if not auto:
                    raise
                disable_fused_update(f"{type(e).__name__}: {str(e)[:200]}")  # warns once; the torch code below
        if cfg.architecture == "skipgram":
            hidden = F.embedding(inputs, words)  # (P, D)
        elif words.device.type == "cuda":  # 2 kernels, against embedding_bag's 5 or so
            hidden = torch.bmm(reading[:, None, :], F.embedding(inputs, words)).squeeze(1)  # (P, D)
        else:  # faster on the CPU: no (P, C, D) temporary
            hidden = F.embedding_bag(inputs, words, mode="sum", per_sample_weights=reading)  # (P, D)
        error, loss = None, None  # error: word2vec's neu1e, (P, D)
        for name, ids, labels, valid in rows:
            table = tables[name]
            out = F.embedding(ids, table)  # (P, J, D); index_select, faster than table[ids] on CPU
            # (P, 1, D) @ (P, D, J): on the CPU twice as fast as vecdot's multiply-then-sum, and no (P, J, D) temporary
            logits = torch.bmm(hidden[:, None, :], out.mT).squeeze(1)  # (P, J)
            valid = valid & (logits.abs() < MAX_EXP)
            g = torch.where(valid, labels - torch.sigmoid(logits), 0.0) * alpha  # (P, J) word2vec's g
            part = torch.bmm(g[:, None, :], out).squeeze(1)  # (P, 1, J) @ (P, J, D) -> (P, D)
            error = part if error is None else error.add_(part)
            table.index_add_(0, ids.flatten(), (g[:, :, None] * hidden[:, None, :]).flatten(0, 1))  # (P * J, D)
            # binary cross-entropy of a 0/1 label: softplus(x) - label * x = softplus((1 - 2 label) x)
            part = (F.softplus(logits * torch.rsub(labels, 1.0, alpha=2.0)) * valid).sum(dim=1)
            loss = part if loss is None else loss.add_(part)
        if cfg.architecture == "skipgram":
            words.index_add_(0, inputs, error)
            return loss
        # every context word gets the error; padding adds zeros (no boolean indexing: no device sync)
        per_context = error[:, None, :] * spreading[:, :, None]  # (P, C, D)
        words.index_add_(0, inputs.flatten(), per_context.flatten(0, 1))  # (P * C, D)
        return loss


@register_model(Word2Vec)
def word2vec_skipgram() -> Word2VecConfig:
    """Skip-gram with 5 negative samples, 100-d (gensim sg=1 defaults)."""
    return Word2VecConfig(architecture="skipgram")


@register_model(Word2Vec)
def word2vec_cbow() -> Word2VecConfig:
    """CBOW (mean of the window) with 5 negative samples, 100-d (gensim sg=0 defaults)."""
    return Word2VecConfig(architecture="cbow")


@register_model(Word2Vec)
def word2vec_skipgram_hs() -> Word2VecConfig:
    """Skip-gram with hierarchical softmax instead of negative sampling (gensim sg=1, hs=1, negative=0)."""
    return Word2VecConfig(architecture="skipgram", negative=0, hierarchical_softmax=True)


@register_model(Word2Vec)
def word2vec_cbow_hs() -> Word2VecConfig:
    """CBOW with hierarchical softmax instead of negative sampling (gensim sg=0, hs=1, negative=0)."""
    return Word2VecConfig(architecture="cbow", negative=0, hierarchical_softmax=True)
