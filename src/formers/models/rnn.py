"""The recurrent translator the Transformer replaced: an LSTM encoder-decoder with global attention.

Luong, Pham and Manning 2015, "Effective Approaches to Attention-based Neural Machine Translation"
(arXiv:1508.04025): a stacked LSTM decoder whose top state h_t attends over the encoder states with the "general"
score h_t^T W_a h̄_s (eq. 8), forms the attentional vector h̃_t = tanh(W_c [c_t; h_t]) (eq. 5) and predicts
softmax(W_s h̃_t) (eq. 6). The attention is :class:`formers.layers.luong_attention.LuongAttention`; the LSTMs are
``torch.nn.LSTM`` (cuDNN on the GPU).

Why Luong's "general" attention rather than Bahdanau's additive one: its score is a dot product with keys W_a h̄_s
projected once per source, so it runs through the library's one attention function (fused kernels, a ``math``
reference), and it reads the *current* decoder state h_t, so without input feeding the teacher-forced decoder is one
cuDNN call over the whole target and one batched attention over all T steps. Bahdanau's score
v^T tanh(W s_{t-1} + U h_j) builds a (B, T, S, H) tensor and feeds c_t into the recurrence, which forces a Python loop
over target steps in training: a slower baseline than recurrence has to be, which would flatter the Transformer.

Checked against: the LSTM gate equations and eqs. 5-8 written out step by step in ``tests/models/test_rnn.py`` (same
weights, logits to 1e-5 in float32).

Notable choices and differences from the paper:

- Encoder: bidirectional (Bahdanau et al. 2015, sec. 3.2), each direction ``hidden_dim / 2`` wide and concatenated,
  as OpenNMT-py's ``brnn`` encoder; the paper reads the reversed source with a unidirectional stack.
- No input feeding (sec. 3.3, about +1 BLEU in Table 1): it would make h̃_{t-1} an input of step t and rule out the
  single cuDNN call per batch that makes this the fastest recurrent baseline.
- Decoder start state: h_0 = tanh(W_init mean_s h̄_s + b) in every layer and c_0 = 0, as Nematus (Sennrich et al.
  2017, sec. 2), computed from the encoder states alone so that ``encode`` / ``init_state`` / ``decode`` keep the
  Transformer's interface and ``formers.generation.seq2seq`` decodes both families.
- Dropout on embeddings, between LSTM layers and on h̃_t; embeddings unscaled; ``share_embeddings`` / ``tie_output``
  as the Transformer (tying needs h̃_t of the embedding width, hence W_c: 2H -> D, Press and Wolf 2017).
- Padding: the encoder's backward direction reads each source with its real tokens reversed in place, so a padded
  row's states equal its unpadded run (as packing would give, at fixed shapes: :class:`RNNEncoder`); the decoder
  reads left to right, so right-padded targets never reach a real position. Both masks must be right padded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from formers.config import (
    Count,
    Probability,
    SeqLen,
    TokenId,
    VocabSize,
    Width,
    check_fields,
)
from formers.layers import (
    LuongAttention,
    OutputProjection,
    TokenEmbedding,
    check_ids_shape,
    check_padding_mask,
    padding_to_attn_mask,
)
from formers.layers.validation import should_check_values
from formers.models.outputs import Seq2SeqOutput, check_seq2seq_inputs, seq2seq_output
from formers.registry import register_family, register_model


@dataclass
class RNNConfig:
    """Hyper-parameters of the LSTM encoder-decoder (defaults: 2+2 layers, 512-wide embeddings, 1024-wide states)."""

    src_vocab_size: VocabSize = 32000
    tgt_vocab_size: VocabSize = 32000
    embed_dim: Width = 512  # D: embeddings and the attentional vector h̃_t
    hidden_dim: Width = 1024  # H: decoder LSTM width and encoder output width (two directions of H / 2)
    num_encoder_layers: Count = 2
    num_decoder_layers: Count = 2
    dropout: Probability = 0.3
    max_seq_len: SeqLen = 256
    share_embeddings: bool = True  # one matrix for source and target tokens (joint vocabulary)
    tie_output: bool = True  # output projection uses the target embedding matrix
    pad_id: TokenId = 0
    bos_id: TokenId = 1  # first decoder input ("decoder start")
    eos_id: TokenId = 2
    tokenizer: dict = field(default_factory=dict)  # tokenizer metadata saved with checkpoints

    def __post_init__(self) -> None:
        check_fields(self)  # types, finiteness and ranges of every field, from the annotations
        if self.hidden_dim < 2 or self.hidden_dim % 2:
            raise ValueError(
                f"hidden_dim must be even and >= 2 (the bidirectional encoder gives each direction hidden_dim / 2), "
                f"got {self.hidden_dim}"
            )
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                f"share_embeddings=True needs src_vocab_size == tgt_vocab_size, got {self.src_vocab_size} "
                f"and {self.tgt_vocab_size}"
            )
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if not 0 <= value < self.tgt_vocab_size:
                raise ValueError(f"{name}={value} is outside the target vocabulary [0, {self.tgt_vocab_size})")
        if not 0 <= self.pad_id < self.src_vocab_size:
            raise ValueError(f"pad_id={self.pad_id} is outside the source vocabulary [0, {self.src_vocab_size})")


def check_right_padded(mask: Tensor, name: str) -> Tensor:
    """Returns the lengths (B,) of a right-padded mask (B, T); raises if a row has a pad before a real token."""
    lengths = mask.sum(dim=1)
    if should_check_values(mask):
        prefix = torch.arange(mask.shape[1], device=mask.device) < lengths[:, None]  # (B, T)
        if not torch.equal(prefix, mask):
            row = int((prefix != mask).any(dim=1).nonzero()[0, 0])
            raise ValueError(
                f"{name} must be right padded (real tokens first, True...True False...False): row {row} is "
                f"{mask[row].int().tolist()}; a recurrent network reads the tokens in order"
            )
    return lengths


class RNNEncoder(nn.Module):
    """Token embedding -> bidirectional stacked LSTM over the right-padded sources -> states h̄_s (B, S, H).

    Each layer runs its two directions as two calls of ``torch.nn.LSTM``'s kernel (cuDNN on the GPU) over the padded
    batch: the forward one reads every row's real tokens before its padding, and the backward one reads the row with
    its real tokens reversed in place (a gather), then reversed back. So no padding ever reaches a real position: the
    states equal each sentence's unpadded run, as packing (``pack_padded_sequence``) would give, but the shapes stay
    fixed and nothing is read on the host (packing needs the lengths on the CPU), so a training step can be captured as
    a CUDA graph. The parameters are one ``nn.LSTM``'s (``lstm.weight_ih_l0_reverse``...), as before.

    Args:
        embed: the source embedding (D wide).
        hidden_dim: H, the output width; each direction is H / 2 wide.
        num_layers: stacked LSTM layers.
        dropout: on the embeddings and between layers.
    """

    def __init__(self, embed: TokenEmbedding, hidden_dim: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.embed = embed
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed.embed_dim, hidden_dim // 2, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0, bidirectional=True)

    def forward(self, src_ids: Tensor, lengths: Tensor) -> Tensor:
        """(B, S) ids and (B,) real lengths -> (B, S, H), zero at the padded positions."""
        x = self.dropout(self.embed(src_ids, "src_ids"))  # (B, S, D)
        steps = torch.arange(src_ids.shape[1], device=src_ids.device)  # (S,)
        real = steps < lengths[:, None]  # (B, S)
        flipped = torch.where(real, lengths[:, None] - 1 - steps, steps)  # (B, S): each row's real prefix reversed
        lstm = self.lstm
        for layer in range(lstm.num_layers):
            if layer:
                x = nn.functional.dropout(x, lstm.dropout, self.training)
            forward = self._direction(x, layer, 0)
            backward = _gather_steps(self._direction(_gather_steps(x, flipped), layer, 1), flipped)
            x = torch.cat([forward, backward], dim=-1)  # (B, S, H)
        return x * real[..., None]

    def _direction(self, x: Tensor, layer: int, direction: int) -> Tensor:
        """One direction (0 forward, 1 backward) of one layer of ``self.lstm`` over ``x`` (B, S, in) from zero
        states -> (B, S, H / 2)."""
        lstm = self.lstm
        zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)  # (1, B, H / 2)
        return _lstm_layer(x, (zeros, zeros), lstm.all_weights[2 * layer + direction], self.training)[0]


def _lstm_layer(x: Tensor, state: tuple[Tensor, Tensor], weights: list[Tensor], training: bool
               ) -> tuple[Tensor, Tensor, Tensor]:
    """One layer (one direction) of an ``nn.LSTM``, its ``all_weights`` entry ``weights`` (w_ih, w_hh, b_ih, b_hh),
    over ``x`` (B, T, in) from ``state`` ((1, B, H) each), with no dropout: (outputs (B, T, H), h_T, c_T)."""
    with warnings.catch_warnings():  # cuDNN copies one layer's weights into a buffer per call, and says so
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
        return tuple(torch._VF.lstm(x, state, weights, True, 1, 0.0, training, False, True))


def _gather_steps(x: Tensor, index: Tensor) -> Tensor:
    """``x`` (B, S, F) with its time steps taken as ``index`` (B, S) says, row by row."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


@dataclass
class RNNDecoderState:
    """Incremental-decoding state: the LSTM's (h, c), the encoder states and their keys, the source mask.

    A static state (``init_state(..., static=True)``) is updated in place: ``hidden`` and ``cell`` keep their
    addresses, the host does not count positions (``length`` stays 0), and :meth:`reset`, :meth:`copy_from` and
    :meth:`reorder` write into the same buffers, so a decoding step can be captured in a CUDA graph
    (:mod:`formers.generation.seq2seq`). A recurrent state has fixed shapes anyway; only the addresses are new.

    Attributes:
        hidden: h of every decoder layer (L, B, H).
        cell: c of every decoder layer (L, B, H).
        memory: encoder states h̄_s (B, S, H), the attention values.
        keys: W_a h̄_s (B, 1, S, H), projected once.
        memory_mask: (B, 1, 1, S), True = real source token.
        max_len: the most target positions this state decodes.
        length: target positions decoded so far (a dynamic state's; a static one leaves it at 0).
        start: static: (h_0, c_0), where :meth:`reset` goes back to.
    """

    hidden: Tensor
    cell: Tensor
    memory: Tensor
    keys: Tensor
    memory_mask: Tensor
    max_len: int
    length: int = 0
    start: tuple[Tensor, Tensor] | None = None
    windowed: ClassVar[bool] = False  # no cache to read part of: a static step is the same at every position

    @property
    def static(self) -> bool:
        return self.start is not None

    @property
    def rows(self) -> int:
        """Decoding rows (the batch)."""
        return self.memory_mask.shape[0]

    def reorder(self, index: Tensor, memory: bool = True) -> None:
        """Keeps batch rows ``index`` (N,) (beam search); ``memory=False`` leaves the encoder states as they are
        (right when every row maps to a row of the same source). A static state copies in place."""

        def take(t: Tensor, dim: int) -> Tensor:
            rows = t.index_select(dim, index)
            return t.copy_(rows) if self.static else rows

        self.hidden, self.cell = take(self.hidden, 1), take(self.cell, 1)
        if memory:
            self.memory, self.keys, self.memory_mask = (take(t, 0) for t in (self.memory, self.keys, self.memory_mask))

    def reset(self) -> None:
        """Static: back to (h_0, c_0), in place."""
        if self.start is None:
            raise ValueError("reset() needs a static state (init_state(..., static=True))")
        self.hidden.copy_(self.start[0])
        self.cell.copy_(self.start[1])

    def copy_from(self, other: RNNDecoderState) -> None:
        """Static: takes ``other``'s source (a state of the same shapes) into this one's buffers and resets."""
        if self.start is None or other.start is None:
            raise ValueError("copy_from() needs two static states (init_state(..., static=True))")
        for mine, theirs in ((self.memory, other.memory), (self.keys, other.keys),
                             (self.memory_mask, other.memory_mask), *zip(self.start, other.start)):
            mine.copy_(theirs)
        self.reset()

    def set_window(self, window: int | None) -> None:
        """Attention windows are for growing caches; a recurrent state has none (kept for the static-step API)."""


class RNNDecoder(nn.Module):
    """Token embedding -> stacked LSTM -> Luong attention (h̃_t) -> vocabulary logits.

    Args:
        embed: the target embedding (D wide).
        hidden_dim: H, the LSTM width (= the encoder output width).
        num_layers: stacked LSTM layers L.
        dropout: on the embeddings, between layers and on h̃_t.
        vocab_size: V, the logits returned.
        tie_output: the output projection shares ``embed``'s matrix.
    """

    def __init__(
        self, embed: TokenEmbedding, hidden_dim: int, num_layers: int, dropout: float, vocab_size: int,
        tie_output: bool,
    ) -> None:
        super().__init__()
        self.embed = embed
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.dropout = nn.Dropout(dropout)
        self.bridge = nn.Linear(hidden_dim, num_layers * hidden_dim)  # W_init, b_init: h_0 of every layer
        self.lstm = nn.LSTM(embed.embed_dim, hidden_dim, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.attention = LuongAttention(hidden_dim, hidden_dim, embed.embed_dim)
        self.output = OutputProjection(embed.embed_dim, vocab_size, tied_to=embed if tie_output else None)

    def start_state(self, memory: Tensor, src_padding_mask: Tensor) -> tuple[Tensor, Tensor]:
        """h_0 = tanh(W_init mean_s h̄_s + b) for every layer, c_0 = 0: each (L, B, H)."""
        real = src_padding_mask[..., None].to(memory.dtype)  # (B, S) -> (B, S, 1)
        mean = (memory * real).sum(dim=1) / real.sum(dim=1)  # (B, H)
        h0 = torch.tanh(self.bridge(mean))  # (B, L * H)
        h0 = h0.view(-1, self.num_layers, self.hidden_dim).transpose(0, 1).contiguous()  # (B, L*H) -> (L, B, H)
        return h0, torch.zeros_like(h0)

    def forward(
        self, tgt_ids: Tensor, memory: Tensor, keys: Tensor, memory_mask: Tensor, hx: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Target ids (B, T) from state ``hx`` -> (logits (B, T, V), the state after the last step)."""
        features, state = self.features(tgt_ids, memory, keys, memory_mask, hx)
        return self.output(features), state

    def features(
        self, tgt_ids: Tensor, memory: Tensor, keys: Tensor, memory_mask: Tensor, hx: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """:meth:`forward` up to the output projection: (the dropped-out h̃_t (B, T, D), the state)."""
        x = self.dropout(self.embed(tgt_ids, "tgt_ids"))  # (B, T, D)
        h, (hn, cn) = self._stack(x, (hx[0].to(x.dtype), hx[1].to(x.dtype)))  # (B, T, H)
        attentional = self.attention(h, memory, keys, memory_mask)  # h̃_t (B, T, D)
        return self.dropout(attentional), (hn, cn)

    def _stack(self, x: Tensor, hx: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The stacked LSTM over ``x`` (B, T, D) from ``hx`` (each (L, B, H)). Where dropout between layers applies
        (training, L > 1), the layers run one call each with PyTorch's dropout between them, as ``nn.LSTM`` computes
        them: its own inter-layer dropout on cuDNN draws a seed on the host (``.item()``) on first use and whenever
        the CUDA generator's state is set, which a CUDA-graphed training step cannot hold."""
        lstm = self.lstm
        if not (self.training and lstm.dropout > 0 and lstm.num_layers > 1):
            return lstm(x, hx)
        finals_h, finals_c = [], []
        for layer in range(lstm.num_layers):
            if layer:
                x = nn.functional.dropout(x, lstm.dropout, True)
            state = (hx[0][layer : layer + 1], hx[1][layer : layer + 1])  # (1, B, H) each
            x, h_n, c_n = _lstm_layer(x, state, lstm.all_weights[layer], True)
            finals_h.append(h_n)
            finals_c.append(c_n)
        return x, (torch.cat(finals_h), torch.cat(finals_c))


@register_family
class RNNSeq2Seq(nn.Module):
    """LSTM encoder-decoder with Luong attention for sequence-to-sequence tasks (translation).

    Called and decoded as :class:`formers.models.transformer.Transformer`: ``model(src_ids, tgt_ids,
    src_padding_mask=None, tgt_padding_mask=None)``, ``encode`` / ``init_state`` / ``decode``. Masks are boolean,
    True = real token, right padded. A missing ``src_padding_mask`` is derived from ``pad_id``; a missing
    ``tgt_padding_mask`` means every target position is real.
    """

    family = "rnn"
    config_class = RNNConfig

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = c = config
        src_embed = TokenEmbedding(c.src_vocab_size, c.embed_dim, c.pad_id, name="src_ids")
        tgt_embed = (
            src_embed
            if c.share_embeddings
            else TokenEmbedding(c.tgt_vocab_size, c.embed_dim, c.pad_id, name="tgt_ids")
        )
        self.encoder = RNNEncoder(src_embed, c.hidden_dim, c.num_encoder_layers, c.dropout)
        self.decoder = RNNDecoder(tgt_embed, c.hidden_dim, c.num_decoder_layers, c.dropout, c.tgt_vocab_size,
                                  c.tie_output)

    def _src_mask(self, src_ids: Tensor, src_padding_mask: Tensor | None) -> Tensor:
        check_ids_shape(src_ids, "src_ids", self.config.max_seq_len)
        check_padding_mask(src_padding_mask, src_ids, "src_padding_mask")
        if src_padding_mask is None:
            src_padding_mask = src_ids != self.config.pad_id
            if should_check_values(src_ids) and not bool(src_padding_mask.any(dim=1).all()):
                raise ValueError("src_ids has a row made only of pad_id tokens: the source sentence is empty")
        return src_padding_mask

    def encode(self, src_ids: Tensor, src_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encodes sources (B, S) -> (memory h̄_s (B, S, H), src_padding_mask (B, S))."""
        src_padding_mask = self._src_mask(src_ids, src_padding_mask)
        lengths = check_right_padded(src_padding_mask, "src_padding_mask")
        return self.encoder(src_ids, lengths), src_padding_mask

    def init_state(
        self, memory: Tensor, src_padding_mask: Tensor, max_len: int | None = None, static: bool = False
    ) -> RNNDecoderState:
        """Prepares incremental decoding of up to ``max_len`` target positions for ``memory`` (B, S, H).

        ``static``: a state updated in place (see :class:`RNNDecoderState`); same outputs, but the caller keeps the
        positions decoded within ``max_len`` (not checked: the host does not count them).
        """
        max_len = self.config.max_seq_len if max_len is None else min(max_len, self.config.max_seq_len)
        hidden, cell = self.decoder.start_state(memory, src_padding_mask)
        keys = self.decoder.attention.project_keys(memory)
        mask = padding_to_attn_mask(src_padding_mask)
        if not static:
            return RNNDecoderState(hidden, cell, memory, keys, mask, max_len)
        start = (hidden, cell)
        return RNNDecoderState(hidden.clone(), cell.clone(), memory.clone(), keys.clone(), mask.clone(), max_len,
                               start=start)

    def decode(
        self,
        tgt_ids: Tensor,
        memory: Tensor | None,
        src_padding_mask: Tensor | None,
        tgt_padding_mask: Tensor | None = None,
        state: RNNDecoderState | None = None,
    ) -> Tensor:
        """Target ids (B, T) against ``memory`` (B, S, H) -> logits (B, T, V).

        With ``state`` (from :meth:`init_state`), ``tgt_ids`` are the new positions only (``memory`` and
        ``src_padding_mask`` may be None) and the state advances.
        """
        if state is not None:
            if tgt_padding_mask is not None:
                raise ValueError(
                    "tgt_padding_mask is not supported with a decoding state: cached decoding feeds real tokens only"
                )
            check_ids_shape(tgt_ids, "tgt_ids", state.max_len - state.length)
            if tgt_ids.shape[0] != state.hidden.shape[1]:
                raise ValueError(
                    f"tgt_ids has batch size {tgt_ids.shape[0]}, the decoding state holds {state.hidden.shape[1]} rows"
                )
            logits, (hidden, cell) = self.decoder(
                tgt_ids, state.memory, state.keys, state.memory_mask, (state.hidden, state.cell)
            )
            if state.static:
                state.hidden.copy_(hidden)
                state.cell.copy_(cell)
            else:
                state.hidden, state.cell = hidden, cell
                state.length += tgt_ids.shape[1]
            return logits
        return self.decoder.output(self._teacher_forced_states(tgt_ids, memory, src_padding_mask, tgt_padding_mask))

    def _teacher_forced_states(
        self, tgt_ids: Tensor, memory: Tensor | None, src_padding_mask: Tensor | None, tgt_padding_mask: Tensor | None
    ) -> Tensor:
        """:meth:`decode` without a state, up to the output projection: the decoder's h̃_t (B, T, D)."""
        if memory is None or src_padding_mask is None:
            raise ValueError("decode needs memory and src_padding_mask (from encode) when no decoding state is given")
        check_ids_shape(tgt_ids, "tgt_ids", self.config.max_seq_len)
        check_padding_mask(tgt_padding_mask, tgt_ids, "tgt_padding_mask")
        if tgt_padding_mask is not None:
            check_right_padded(tgt_padding_mask, "tgt_padding_mask")
        if tgt_ids.shape[0] != memory.shape[0]:
            raise ValueError(f"tgt_ids has batch size {tgt_ids.shape[0]}, memory has {memory.shape[0]}")
        keys = self.decoder.attention.project_keys(memory)
        hx = self.decoder.start_state(memory, src_padding_mask)
        features, _ = self.decoder.features(tgt_ids, memory, keys, padding_to_attn_mask(src_padding_mask), hx)
        return features

    def forward(
        self,
        src_ids: Tensor,
        tgt_ids: Tensor,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
        targets: Tensor | None = None,
        label_smoothing: float = 0.0,
        return_logits: bool | None = None,
    ) -> Seq2SeqOutput:
        """Teacher-forced forward pass, and the training loss when ``targets`` are given.

        Args:
            src_ids: source tokens (B, S).
            tgt_ids: decoder inputs (B, T), starting with ``bos_id``.
            src_padding_mask: (B, S) bool, True = real token, right padded.
            tgt_padding_mask: (B, T) bool, True = real token, right padded.
            targets: (B, T) the token each position predicts, or ``IGNORE_INDEX`` (-100) where no loss is due.
            label_smoothing: epsilon of the loss's label smoothing (uniform over the target vocabulary).
            return_logits: whether ``logits`` are computed; default only without ``targets``. Without logits the
                loss comes from :func:`formers.layers.linear_cross_entropy` (the (B * T, V) logits never exist).

        Returns:
            ``Seq2SeqOutput`` with ``logits`` (B, T, V) (None when not asked for), ``encoder_hidden_state``
            (B, S, H) and, given ``targets``, ``loss`` (mean label-smoothed cross-entropy) and ``nll`` (unsmoothed,
            detached).
        """
        check_seq2seq_inputs(src_ids, tgt_ids, self.config.max_seq_len, targets, label_smoothing, return_logits)
        memory, src_padding_mask = self.encode(src_ids, src_padding_mask)
        features = self._teacher_forced_states(tgt_ids, memory, src_padding_mask, tgt_padding_mask)  # (B, T, D)
        return seq2seq_output(self.decoder.output, features, memory, targets, label_smoothing, return_logits)


@register_model(RNNSeq2Seq)
def lstm_seq2seq_base() -> RNNConfig:
    """2+2 LSTM layers, 512-wide embeddings, 1024-wide states (bidirectional encoder), Luong attention, dropout 0.3."""
    return RNNConfig()


@register_model(RNNSeq2Seq)
def lstm_seq2seq_small() -> RNNConfig:
    """1+1 LSTM layers, 256-wide embeddings, 512-wide states: small corpora on a CPU or a quick GPU baseline."""
    return RNNConfig(embed_dim=256, hidden_dim=512, num_encoder_layers=1, num_decoder_layers=1, dropout=0.2)


@register_model(RNNSeq2Seq)
def lstm_seq2seq_tiny() -> RNNConfig:
    """1+1 LSTM layers, 128-wide embeddings, 256-wide states: minutes on a CPU."""
    return RNNConfig(embed_dim=128, hidden_dim=256, num_encoder_layers=1, num_decoder_layers=1, dropout=0.1)
