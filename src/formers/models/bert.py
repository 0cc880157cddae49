"""BERT: a post-norm Transformer encoder pre-trained by masked language modelling (Devlin et al. 2019, "BERT:
Pre-training of Deep Bidirectional Transformers for Language Understanding"; https://arxiv.org/abs/1810.04805).

Checked against Hugging Face ``transformers``' ``BertModel`` and ``BertForMaskedLM`` through
``formers.interop.bert``: same hidden states and MLM logits to 1e-5 in float32 with padding and token types,
and against the published sentence similarities of the real all-MiniLM-L6-v2 weights.

Architecture: word + learned absolute position + token-type embeddings, a LayerNorm and dropout, N post-norm
encoder blocks (exact GELU), and a pooler (dense + tanh on the first token).

Notable choices and differences:

- The encoder without the pooler is :class:`BertEncoder`; :class:`BertModel` adds the pooler. Heads that do not
  use the pooler (masked LM, token classification) hold a bare encoder, as Hugging Face's
  ``add_pooling_layer=False``, so every parameter of every model is trained.
- :class:`BertForPreTraining` is the paper's pre-training model: the masked-LM head of :class:`BertForMaskedLM`
  plus the next-sentence classifier on the pooler (checked against Hugging Face ``BertForPreTraining``).
- Batches are RIGHT padded (``padding_mask``, True = real token): positions count from 0 in every row and
  padded keys are ignored, so every real token's output equals that of the row run alone.
- One dropout rate covers embeddings and residual branches (``hidden_dropout_prob``); ``attn_dropout`` is the
  attention-weight dropout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.config import (
    Count,
    Epsilon,
    NumClasses,
    Probability,
    SeqLen,
    TokenId,
    VocabSize,
    Width,
    check_fields,
)
from formers.layers import (
    EncoderBlock,
    LearnedPositionalEmbedding,
    OutputProjection,
    TokenEmbedding,
    check_ids_shape,
    check_padding_mask,
    padding_to_attn_mask,
)
from formers.models.outputs import (
    BertOutput,
    MaskedLMOutput,
    SequenceClassificationOutput,
    TokenClassificationOutput,
)
from formers.registry import register_family, register_model


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder and its heads (defaults: BERT-base, uncased vocabulary)."""

    vocab_size: VocabSize = 30522
    embed_dim: Width = 768
    num_layers: Count = 12
    num_heads: Count = 12
    ffn_dim: Width = 3072
    max_seq_len: SeqLen = 512
    type_vocab_size: VocabSize = 2
    dropout: Probability = 0.1  # on embeddings, each sublayer output and before classifiers
    attn_dropout: Probability = 0.1
    layer_norm_eps: Epsilon = 1e-12
    pad_id: TokenId = 0
    tokenizer: dict = field(default_factory=dict)  # tokenizer metadata saved with checkpoints
    num_labels: NumClasses = 2  # classification heads only

    def __post_init__(self) -> None:
        check_fields(self)
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id={self.pad_id} is outside the vocabulary [0, {self.vocab_size})")
        if self.type_vocab_size < 1 or self.num_labels < 1:
            raise ValueError(
                f"type_vocab_size and num_labels must be >= 1, got {self.type_vocab_size} and {self.num_labels}"
            )


def _init_weights(module: nn.Module) -> None:
    """BERT init: linear and embedding weights N(0, 0.02), zero biases, LayerNorms at identity."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (TokenEmbedding, LearnedPositionalEmbedding)):
            nn.init.normal_(m.weight, std=0.02)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def mean_pool(hidden: Tensor, padding_mask: Tensor | None = None, normalize: bool = False) -> Tensor:
    """Sentence embeddings: the mean of each row's real-token states (sentence-transformers' mean pooling).

    Args:
        hidden: (B, T, D) token states.
        padding_mask: (B, T) bool, True = real token; ``None`` averages every position.
        normalize: divide each embedding by its L2 norm (cosine similarity becomes a dot product).

    Returns:
        (B, D) embeddings.
    """
    if padding_mask is None:
        pooled = hidden.mean(dim=1)  # (B, D)
    else:
        weights = padding_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)  # (B, D)
    return F.normalize(pooled, p=2, dim=-1) if normalize else pooled


class BertEncoder(nn.Module):
    """Embeddings + post-norm encoder blocks, without the pooler: ids (B, T) -> hidden states (B, T, D)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed = TokenEmbedding(c.vocab_size, c.embed_dim)
        self.positions = LearnedPositionalEmbedding(c.max_seq_len, c.embed_dim)
        self.token_types = TokenEmbedding(c.type_vocab_size, c.embed_dim, name="token_type_ids")
        self.embed_norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            EncoderBlock(
                c.embed_dim, c.num_heads, c.ffn_dim, dropout=c.dropout, attn_dropout=c.attn_dropout,
                activation="gelu", layer_norm_eps=c.layer_norm_eps,
            )
            for _ in range(c.num_layers)
        )
        _init_weights(self)

    def _check(self, input_ids: Tensor, token_type_ids: Tensor | None, padding_mask: Tensor | None) -> None:
        check_ids_shape(input_ids, "input_ids", self.config.max_seq_len)
        if token_type_ids is not None:
            if not isinstance(token_type_ids, Tensor):
                raise TypeError(f"token_type_ids must be a torch.Tensor, got {type(token_type_ids).__name__}")
            if token_type_ids.shape != input_ids.shape:
                raise ValueError(
                    f"token_type_ids must have the shape of input_ids {tuple(input_ids.shape)}, "
                    f"got {tuple(token_type_ids.shape)}"
                )
        check_padding_mask(padding_mask, input_ids, "padding_mask")

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, padding_mask: Tensor | None = None
    ) -> Tensor:
        """Hidden states of every position.

        Args:
            input_ids: (B, T) token ids, right padded.
            token_type_ids: (B, T) segment ids in [0, type_vocab_size); ``None`` means all 0.
            padding_mask: (B, T) bool, True = real token; every row needs one.

        Returns:
            (B, T, D) hidden states (padded positions are finite but meaningless).
        """
        self._check(input_ids, token_type_ids, padding_mask)
        t = input_ids.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(t, device=input_ids.device)[None]  # (1, T)
        x = self.embed(input_ids) + self.positions(positions) + self.token_types(token_type_ids)  # (B, T, D)
        x = self.dropout(self.embed_norm(x))
        attn_mask = padding_to_attn_mask(padding_mask) if padding_mask is not None else None  # (B, 1, 1, T)
        for layer in self.layers:
            x = layer(x, attn_mask=attn_mask)
        return x


@register_family
class BertModel(nn.Module):
    """BERT encoder with the pooler; call as ``model(input_ids, token_type_ids=None, padding_mask=None)``."""

    family = "bert"
    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = BertEncoder(config)
        self.pooler = nn.Linear(config.embed_dim, config.embed_dim)
        _init_weights(self.pooler)

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, padding_mask: Tensor | None = None
    ) -> BertOutput:
        """Token states and the pooled first-token state.

        Args are those of :meth:`BertEncoder.forward`.

        Returns:
            ``BertOutput`` with ``last_hidden_state`` (B, T, D) and ``pooled`` (B, D) = tanh(dense(state of token 0)).
        """
        hidden = self.encoder(input_ids, token_type_ids, padding_mask)  # (B, T, D)
        return BertOutput(last_hidden_state=hidden, pooled=torch.tanh(self.pooler(hidden[:, 0])))


def _select(hidden: Tensor, positions: Tensor | None) -> Tensor:
    """(B, T, D) states -> those at the True entries of a (B, T) bool mask, (N, D); all of them when None."""
    if positions is None:
        return hidden
    if not isinstance(positions, Tensor) or positions.dtype != torch.bool or positions.shape != hidden.shape[:2]:
        got = (
            f"{positions.dtype} {tuple(positions.shape)}" if isinstance(positions, Tensor) else type(positions).__name__
        )
        raise ValueError(f"masked_positions must be a bool tensor of shape {tuple(hidden.shape[:2])}, got {got}")
    return hidden[positions]  # (N, D)


@register_family
class BertForMaskedLM(nn.Module):
    """BERT with the masked-LM head: dense + GELU + LayerNorm, then a decoder tied to the word embeddings."""

    family = "bert_mlm"
    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encoder = BertEncoder(c)
        self.transform = nn.Linear(c.embed_dim, c.embed_dim)
        self.transform_norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)
        self.decoder = OutputProjection(c.embed_dim, c.vocab_size, bias=True, tied_to=self.encoder.embed)
        _init_weights(self.transform)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        padding_mask: Tensor | None = None,
        masked_positions: Tensor | None = None,
    ) -> MaskedLMOutput:
        """Vocabulary scores (other args as :meth:`BertEncoder.forward`).

        Args:
            masked_positions: optional (B, T) bool; when given, the head runs on these positions only (training
                scores ~15% of tokens: the vocabulary projection, the largest matmul of small models, shrinks
                as much).

        Returns:
            ``logits`` (B, T, V), or (N, V) for the N ``masked_positions`` in row-major order.
        """
        hidden = self.encoder(input_ids, token_type_ids, padding_mask)  # (B, T, D)
        hidden = _select(hidden, masked_positions)  # (B, T, D) or (N, D)
        hidden = self.transform_norm(F.gelu(self.transform(hidden)))
        return MaskedLMOutput(logits=self.decoder(hidden))


@dataclass
class BertPreTrainingOutput:
    """Pre-training output.

    Attributes:
        logits: masked-LM vocabulary scores for every position (B, T, V).
        next_sentence_logits: IsNext (0) / NotNext (1) scores per sequence (B, 2).
    """

    logits: Tensor
    next_sentence_logits: Tensor


@register_family
class BertForPreTraining(nn.Module):
    """BERT as pre-trained in the paper: the masked-LM head (tied decoder) and a next-sentence head on the pooler."""

    family = "bert_pretraining"
    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encoder = BertEncoder(c)
        self.pooler = nn.Linear(c.embed_dim, c.embed_dim)
        self.transform = nn.Linear(c.embed_dim, c.embed_dim)
        self.transform_norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)
        self.decoder = OutputProjection(c.embed_dim, c.vocab_size, bias=True, tied_to=self.encoder.embed)
        self.next_sentence = nn.Linear(c.embed_dim, 2)
        for module in (self.pooler, self.transform, self.next_sentence):
            _init_weights(module)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        padding_mask: Tensor | None = None,
        masked_positions: Tensor | None = None,
    ) -> BertPreTrainingOutput:
        """Masked-LM scores (B, T, V) and next-sentence scores (B, 2) (args as :meth:`BertForMaskedLM.forward`;
        with ``masked_positions`` the MLM scores are (N, V))."""
        hidden = self.encoder(input_ids, token_type_ids, padding_mask)  # (B, T, D)
        pooled = torch.tanh(self.pooler(hidden[:, 0]))  # (B, D)
        tokens = _select(hidden, masked_positions)  # (B, T, D) or (N, D)
        tokens = self.transform_norm(F.gelu(self.transform(tokens)))
        return BertPreTrainingOutput(logits=self.decoder(tokens), next_sentence_logits=self.next_sentence(pooled))


@register_family
class BertForSequenceClassification(nn.Module):
    """BERT with dropout + a linear classifier on the pooled output; ``logits`` (B, num_labels)."""

    family = "bert_sequence_classification"
    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.embed_dim, config.num_labels)
        _init_weights(self.classifier)

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, padding_mask: Tensor | None = None
    ) -> SequenceClassificationOutput:
        """Class scores per sequence (args as :meth:`BertEncoder.forward`); ``logits`` (B, num_labels)."""
        pooled = self.bert(input_ids, token_type_ids, padding_mask).pooled  # (B, D)
        return SequenceClassificationOutput(logits=self.classifier(self.dropout(pooled)))


@register_family
class BertForTokenClassification(nn.Module):
    """BERT (no pooler) with dropout + a linear classifier on every token; ``logits`` (B, T, num_labels)."""

    family = "bert_token_classification"
    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = BertEncoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.embed_dim, config.num_labels)
        _init_weights(self.classifier)

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, padding_mask: Tensor | None = None
    ) -> TokenClassificationOutput:
        """Class scores per token (args as :meth:`BertEncoder.forward`); ``logits`` (B, T, num_labels)."""
        hidden = self.encoder(input_ids, token_type_ids, padding_mask)  # (B, T, D)
        return TokenClassificationOutput(logits=self.classifier(self.dropout(hidden)))


@register_model(BertModel)
def bert_base() -> BertConfig:
    """BERT-base (110M): 12 layers, 12 heads, 768 wide, 512 positions, WordPiece vocabulary of 30522."""
    return BertConfig()


@register_model(BertModel)
def bert_large() -> BertConfig:
    """BERT-large (340M): 24 layers, 16 heads, 1024 wide, FFN 4096."""
    return BertConfig(num_layers=24, num_heads=16, embed_dim=1024, ffn_dim=4096)


@register_model(BertModel)
def bert_mini() -> BertConfig:
    """BERT-mini (Turc et al. 2019): 4 layers, 4 heads, 256 wide, FFN 1024."""
    return BertConfig(num_layers=4, num_heads=4, embed_dim=256, ffn_dim=1024)


@register_model(BertModel)
def bert_tiny() -> BertConfig:
    """BERT-tiny (Turc et al. 2019): 2 layers, 2 heads, 128 wide, FFN 512."""
    return BertConfig(num_layers=2, num_heads=2, embed_dim=128, ffn_dim=512)
