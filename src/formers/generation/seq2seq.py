"""Greedy and beam-search decoding for encoder-decoder models, batched, on the KV cache.

Family-agnostic: a model qualifies by its interface (``encode``, ``decode`` with a cache, ``config`` with
``pad_id``/``bos_id``/``eos_id``/``max_seq_len``), as :class:`formers.models.transformer.Transformer` and
:class:`formers.models.rnn.RNNSeq2Seq` have.

Both decode from ``bos_id`` until ``eos_id`` or a per-sentence limit of ``len(source) + 50`` new tokens (the
paper's sec. 6.1 setting; ``max_new_tokens`` overrides it). Padding and the start token are never emitted.
Beam search ranks finished hypotheses by log-probability / lp(Y) with the GNMT length penalty
lp(Y) = ((5 + |Y|) / 6)^alpha (Wu et al. 2016), alpha = 0.6 in the paper.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from formers.layers import check_int, check_number

EXTRA_LENGTH = 50  # the paper's maximum output length: source length + 50


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


@torch.inference_mode()
def greedy_search(
    model: nn.Module, src_ids: Tensor, src_padding_mask: Tensor | None = None, max_new_tokens: int | None = None
) -> list[list[int]]:
    """Decodes each source by taking the most likely next token until ``eos_id``.

    Args:
        model: an encoder-decoder model.
        src_ids: (B, S) source token ids.
        src_padding_mask: (B, S) bool, True = real token (default: ``src_ids != pad_id``).
        max_new_tokens: limit on generated tokens (default: source length + 50).

    Returns:
        B lists of token ids, without the start token and the final ``eos_id``.
    """
    check_int(max_new_tokens, "max_new_tokens", minimum=1, allow_none=True)
    memory, src_padding_mask = model.encode(src_ids, src_padding_mask)
    limits = _limits(model, src_padding_mask, max_new_tokens)
    steps = int(limits.max())
    c = model.config
    batch = src_ids.shape[0]
    state = model.init_state(memory, src_padding_mask, max_len=steps)
    banned = _banned(model)
    tokens = torch.full((batch, 1), c.bos_id, dtype=torch.long, device=src_ids.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src_ids.device)
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
    generated = torch.cat(out, dim=1).tolist()  # (B, T)
    results = []
    for row, limit in zip(generated, limits.tolist()):
        row = row[:limit]
        results.append(row[: row.index(c.eos_id)] if c.eos_id in row else row)
    return results


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
) -> list[list[int]]:
    """Batched beam search with the GNMT length penalty.

    Args:
        model: an encoder-decoder model.
        src_ids: (B, S) source token ids.
        src_padding_mask: (B, S) bool, True = real token.
        beam_size: K hypotheses kept per sentence, at most the target vocabulary size.
        alpha: length-penalty exponent (0.6 in the paper), finite and >= 0.
        max_new_tokens: limit on generated tokens (default: source length + 50).

    Returns:
        For each source, the best hypothesis' token ids without the start token and ``eos_id``.
    """
    check_beam_options(beam_size, alpha, getattr(model.config, "tgt_vocab_size", None))
    check_int(max_new_tokens, "max_new_tokens", minimum=1, allow_none=True)
    memory, src_padding_mask = model.encode(src_ids, src_padding_mask)
    limits = _limits(model, src_padding_mask, max_new_tokens).tolist()
    c = model.config
    batch, k, device = src_ids.shape[0], beam_size, src_ids.device
    expand = torch.arange(batch, device=device).repeat_interleave(k)  # (B*K,) row of each beam's source
    state = model.init_state(memory.index_select(0, expand), src_padding_mask.index_select(0, expand), max(limits))
    banned = _banned(model)

    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive so the first step does not repeat it
    history = torch.full((batch * k, 1), c.bos_id, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    for step in range(max(limits)):
        logits = model.decode(history[:, -1:], None, None, state=state)[:, -1]  # (B*K, V)
        logits[:, banned] = float("-inf")
        vocab = logits.shape[-1]
        logp = torch.log_softmax(logits.float(), dim=-1).view(batch, k, vocab)
        candidates = (scores[:, :, None] + logp).view(batch, k * vocab)  # (B, K*V)
        top_scores, top_idx = candidates.topk(2 * k, dim=1)  # (B, 2K)
        top_beam, top_tok = top_idx // vocab, top_idx % vocab
        top_scores_l, top_beam_l, top_tok_l = top_scores.tolist(), top_beam.tolist(), top_tok.tolist()
        new_scores = torch.full((batch, k), float("-inf"), device=device)
        new_beam = torch.zeros(batch, k, dtype=torch.long)
        new_tok = torch.full((batch, k), c.pad_id, dtype=torch.long)
        prev = history[:, 1:].tolist()
        for b in range(batch):
            if done[b]:
                continue
            live = 0
            for rank in range(2 * k):
                score, beam, tok = top_scores_l[b][rank], top_beam_l[b][rank], top_tok_l[b][rank]
                if score == float("-inf"):
                    break
                if tok == c.eos_id:
                    if rank < k:  # an eos outside the top K would not have survived as a beam
                        finished[b].append((score / length_penalty(step + 1, alpha), prev[b * k + beam]))
                    continue
                new_scores[b, live], new_beam[b, live], new_tok[b, live] = score, beam, tok
                live += 1
                if live == k:
                    break
            at_limit = step + 1 >= limits[b]
            if at_limit:
                for j in range(live):
                    hyp = prev[b * k + int(new_beam[b, j])] + [int(new_tok[b, j])]
                    finished[b].append((float(new_scores[b, j]) / length_penalty(step + 1, alpha), hyp))
            # As fairseq: a sentence is done once K hypotheses have ended.
            done[b] = at_limit or live == 0 or len(finished[b]) >= k
        if all(done):
            break
        rows = (torch.arange(batch)[:, None] * k + new_beam).view(-1).to(device)  # (B*K,) surviving beams
        state.reorder(rows)
        history = torch.cat([history.index_select(0, rows), new_tok.view(-1, 1).to(device)], dim=1)
        scores = new_scores
    return [max(hyps, key=lambda h: h[0])[1] if hyps else [] for hyps in finished]
