"""Translating text end to end: tokenize, batch by length, decode (greedy or beam), detokenize.

A blank sentence (empty or only whitespace) translates to an empty one without reaching the model, so that the
translations stay aligned with the sources line for line.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from formers.data.tokenizers.base import Tokenizer
from formers.generation.seq2seq import beam_search, check_beam_options, greedy_search
from formers.generation.static_lm import clear_decoders
from formers.layers import check_int, check_text


class Translator:
    """Translates sentences with an encoder-decoder model and its tokenizer.

    Args:
        model: a trained encoder-decoder (:class:`~formers.models.transformer.Transformer`,
            :class:`~formers.models.rnn.RNNSeq2Seq`; put in eval mode here).
        tokenizer: the joint subword tokenizer saved with the model.
        beam_size: 1 for greedy decoding, else beam search (at most the target vocabulary size).
        alpha: length-penalty exponent for beam search (finite, >= 0).
        max_tokens: source tokens per batch (sentences are sorted by length, results returned in input order).
        fast: decode on a static state with the decoder step captured as a CUDA graph (None: on CUDA when the model
            supports it; False: the eager loop; same translations).
        keep_graphs: keep the captured steps and static caches of a :meth:`translate` call on the model for the
            next calls (the model keeps up to :data:`~formers.generation.seq2seq.CACHED_SHAPES` batch shapes within
            a share of the GPU's memory): a shape seen before replays without a capture, as a server's repeated
            sentence lengths do. False (the default): freed when the call returns, as an evaluation inside a
            training run wants (one call's shapes, a third of its time on an H100, are captured anew each time).

    Raises:
        TypeError, ValueError: a bad ``beam_size``, ``alpha`` or ``max_tokens`` (named, with the value given).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        beam_size: int = 4,
        alpha: float = 0.6,
        max_tokens: int = 4096,
        fast: bool | None = None,
        keep_graphs: bool = False,
    ) -> None:
        check_beam_options(beam_size, alpha, model.config.tgt_vocab_size)
        if not isinstance(keep_graphs, bool):
            raise TypeError(f"keep_graphs must be True or False, got {keep_graphs!r} ({type(keep_graphs).__name__})")
        check_int(max_tokens, "max_tokens", minimum=1)
        if fast is not None and not isinstance(fast, bool):
            raise TypeError(f"fast must be True, False or None, got {fast!r} ({type(fast).__name__})")
        if tokenizer.pad_id is None:
            raise ValueError(f"tokenizer must have a pad_id to batch sources, got a {type(tokenizer).__name__} without")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.beam_size = beam_size
        self.alpha = alpha
        self.max_tokens = max_tokens
        self.fast = fast
        self.keep_graphs = keep_graphs

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_sources(self, texts: list[str]) -> list[list[int]]:
        """Tokenizes sources: no ids for a blank sentence; raises on a sentence that is no UTF-8 text, encodes to no
        tokens, or is longer than the model accepts (naming its index)."""
        limit = self.model.config.max_seq_len
        encoded = []
        for i, text in enumerate(texts):
            check_text(text, f"source sentence {i}")
            if not text.strip():
                encoded.append([])
                continue
            ids = self.tokenizer.encode(text)
            if not ids:
                raise ValueError(f"source sentence {i} ({text!r}) encodes to no tokens")
            if len(ids) > limit:
                raise ValueError(
                    f"source sentence {i} has {len(ids)} tokens, beyond the model's max_seq_len={limit}; split it"
                )
            encoded.append(ids)
        return encoded

    def translate(self, texts: Iterable[str]) -> list[str]:
        """Translates each sentence; returns detokenized translations in input order ("" for a blank sentence)."""
        return [self.tokenizer.decode(ids) for ids in self.translate_ids(texts)]

    def translate_ids(self, texts: Iterable[str]) -> list[list[int]]:
        """The target ids of each sentence's translation (no start or end token; [] for a blank sentence), in input
        order."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of sentences, got one str; pass [text]")
        texts = list(texts)
        encoded = self.encode_sources(texts)
        order = sorted((i for i in range(len(encoded)) if encoded[i]), key=lambda i: len(encoded[i]))
        results: list[list[int]] = [[] for _ in texts]
        try:
            self._translate_batches(encoded, order, results)
        finally:
            if not self.keep_graphs:
                clear_decoders(self.model)
        return results

    def _translate_batches(self, encoded: list[list[int]], order: list[int], results: list[list[int]]) -> None:
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and len(encoded[order[end]]) * (end + 1 - start) <= self.max_tokens:
                end += 1
            rows = order[start:end]
            width = max(len(encoded[i]) for i in rows)
            src = torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long)
            mask = torch.zeros(len(rows), width, dtype=torch.bool)
            for r, i in enumerate(rows):
                src[r, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[r, : len(encoded[i])] = True
            src, mask = src.to(self.device), mask.to(self.device)
            if self.beam_size == 1:
                outputs = greedy_search(self.model, src, mask, fast=self.fast)
            else:
                outputs = beam_search(self.model, src, mask, beam_size=self.beam_size, alpha=self.alpha, fast=self.fast)
            for i, ids in zip(rows, outputs):
                results[i] = list(ids)
            start = end
