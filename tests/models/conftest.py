"""Tiny sizes of every model family, and the cases the contract tests (``test_contract.py``) run over.

Every registered family must have a ``TINY`` entry: until it declares one, each contract test of its variants fails
with a message saying what to add here. A test function that takes a ``case`` argument is parametrized over every
case of the kinds named by its ``contract_kinds`` marker (all kinds without the marker); with the
``contract_one_per_family`` marker, over the first case of each family only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

import formers
import formers.models
from formers.config import apply_overrides
from formers.registry import create_config, family_classes, get_entry

Overrides = dict[str, Any]


@dataclass(frozen=True)
class Tiny:
    """How the contract tests build and feed one family at CPU-tiny size.

    Attributes:
        kind: what the family takes and returns, naming its input adapter in ``test_contract.py``:
            ``"causal_lm"`` (left-padded token ids, KV-cache decoding), ``"seq2seq"`` (right-padded source and
            target ids, incremental decoding), ``"encoder"`` (right-padded token ids and segment ids),
            ``"image"`` (a batch of images), ``"word2vec"`` (word ids, windows padded by a mask, negatives and
            Huffman paths).
        overrides: config overrides that make every variant tiny, or a function of the variant's config that
            returns them (to keep the variant's structure, e.g. its number of stages).
        outputs: every tensor field of the family's output and its documented shape, one entry per dim: ``"B"``
            batch, ``"T"`` tokens (target tokens for seq2seq), ``"S"`` source tokens, an int, or a config field.
        options: structural config flags that no registered variant turns on, each a case of its own on the
            family's first variant: {option name: overrides}.
        no_grad: parameters that legitimately get no gradient from the outputs: {parameter name: reason}.
        image_size: (H, W) of the images fed to image models when not the config's ``image_size`` square.
    """

    kind: str
    overrides: Overrides | Callable[[Any], Overrides]
    outputs: dict[str, tuple[str | int, ...]]
    options: dict[str, Overrides] = field(default_factory=dict)
    no_grad: dict[str, str] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None

    def overrides_for(self, config: Any) -> Overrides:
        """The tiny overrides for a variant whose full-size config is ``config``."""
        return self.overrides(config) if callable(self.overrides) else dict(self.overrides)


def _swin(config: Any) -> Overrides:
    # The variant's number of stages; at 24x24, patch 2, the maps are 12, 6, 3, 2: 3x3 windows, shifted in the
    # first two stages, then one window per map (a 1x1 window would leave its position bias without a gradient).
    stages = len(config.depths)
    return dict(image_size=24, patch_size=2, embed_dim=8, depths=(2,) * stages, num_heads=(2,) * stages,
                window_size=3, num_classes=5, drop_path_rate=0.1, dropout=0.1)


def _efficientformer(config: Any) -> Overrides:
    # The variant's stages and downsampling kept; channels double where a stage downsamples.
    dims = [8]
    for down in config.downsamples[1:]:
        dims.append(dims[-1] * 2 if down else dims[-1])
    tiny = dict(depths=(1,) * (len(dims) - 1) + (2,), embed_dims=tuple(dims), num_attn_blocks=1, num_heads=2,
                key_dim=4, num_classes=5, drop_path_rate=0.1, dropout=0.1)
    stride = apply_overrides(config, tiny).stride
    return {**tiny, "image_size": 2 * stride}  # a 2x2 attention grid


# The variant's block type, one stage of one block, 8 wide: a 64x96 image gives a 16x24 feature map. A deeper
# backbone with frozen (identity) BatchNorm is unnormalised, and the contract's weight noise then grows its features
# into the thousands, saturating the first attention softmax; 4 stages are checked with trainable BatchNorm.
# (DC5 needs two stages: the `dilated` option checks it.)
_DETR = dict(num_classes=5, backbone_depths=[1], backbone_width=8, embed_dim=16, num_encoder_layers=2,
             num_decoder_layers=2, num_heads=2, ffn_dim=32, num_queries=7, dropout=0.1, activation_dropout=0.1,
             backbone_dilation=False)


_BERT = dict(embed_dim=16, num_heads=2, num_layers=2, ffn_dim=24, vocab_size=40, max_seq_len=24, num_labels=3,
             dropout=0.1, attn_dropout=0.1)
_TNT = dict(image_size=16, patch_size=8, embed_dim=16, inner_dim=8, num_layers=2, num_heads=2, inner_num_heads=2,
            num_classes=5, pixel_stride=4, drop_path_rate=0.1, dropout=0.1)
_IMAGE = {"logits": ("B", "num_classes")}

TINY: dict[str, Tiny] = {
    "gpt": Tiny(
        "causal_lm",
        dict(embed_dim=16, num_heads=2, num_layers=2, vocab_size=40, max_seq_len=24, eos_id=3, dropout=0.1,
             attn_dropout=0.1),
        outputs={"logits": ("B", "T", "vocab_size")},
        options={
            "untied_gelu": {"bias": False, "tie_embeddings": False, "activation": "gelu", "ffn_dim": 24},
            "four_heads": {"num_heads": 4, "pad_id": 0, "layer_norm_eps": 1e-6},
        },
    ),
    "transformer": Tiny(
        "seq2seq",
        dict(embed_dim=16, num_heads=2, ffn_dim=32, num_encoder_layers=2, num_decoder_layers=2, src_vocab_size=40,
             tgt_vocab_size=40, max_seq_len=32, dropout=0.1, attn_dropout=0.1, activation_dropout=0.1),
        outputs={"logits": ("B", "T", "tgt_vocab_size"), "encoder_hidden_state": ("B", "S", "embed_dim")},
        options={
            "pre_norm": {"norm_first": True, "final_norm": True, "activation": "gelu"},
            "untied": {"share_embeddings": False, "tie_output": False, "tgt_vocab_size": 37, "output_bias": True},
            "learned_positions": {"positional": "learned", "scale_embedding": False, "decoder_num_heads": 4,
                                  "decoder_ffn_dim": 24},
        },
    ),
    "rnn": Tiny(
        "seq2seq",
        dict(embed_dim=12, hidden_dim=16, num_encoder_layers=2, num_decoder_layers=2, src_vocab_size=40,
             tgt_vocab_size=40, max_seq_len=32, dropout=0.1),
        outputs={"logits": ("B", "T", "tgt_vocab_size"), "encoder_hidden_state": ("B", "S", "hidden_dim")},
        options={"untied": {"share_embeddings": False, "tie_output": False, "tgt_vocab_size": 37}},
    ),
    "bert": Tiny(
        "encoder", _BERT, outputs={"last_hidden_state": ("B", "T", "embed_dim"), "pooled": ("B", "embed_dim")}
    ),
    "bert_mlm": Tiny("encoder", _BERT, outputs={"logits": ("B", "T", "vocab_size")}),
    "bert_pretraining": Tiny(
        "encoder", _BERT, outputs={"logits": ("B", "T", "vocab_size"), "next_sentence_logits": ("B", 2)}
    ),
    "bert_sequence_classification": Tiny("encoder", _BERT, outputs={"logits": ("B", "num_labels")}),
    "bert_token_classification": Tiny("encoder", _BERT, outputs={"logits": ("B", "T", "num_labels")}),
    "vit": Tiny(
        "image",
        dict(image_size=16, patch_size=4, embed_dim=16, num_layers=2, num_heads=2, mlp_ratio=1.5, num_classes=5,
             drop_path_rate=0.1, dropout=0.1),
        outputs=_IMAGE,
        options={"avg_pool": {"global_pool": "avg"}},
    ),
    "swin": Tiny("image", _swin, outputs=_IMAGE, image_size=(22, 30)),  # 11x15 patches: windows padded
    "tnt": Tiny("image", _TNT, outputs=_IMAGE),
    "tnt_legacy": Tiny("image", _TNT, outputs=_IMAGE),
    "efficientformer": Tiny("image", _efficientformer, outputs=_IMAGE),
    # Images of one size (a padded batch's rows differ from the images alone near the padding: CNN receptive
    # fields; tests/models/test_detr.py checks the masks with a cell-local backbone instead).
    "detr": Tiny(
        "image", _DETR, outputs={"logits": ("B", "num_queries", "num_labels"), "boxes": ("B", "num_queries", 4)},
        options={"four_stages_batchnorm": {"backbone_norm": "batch", "backbone_depths": [1, 1, 1, 1]},
                 "two_stages": {"backbone_depths": [1, 2]},
                 "dilated": {"backbone_block": "bottleneck", "backbone_depths": [1, 2], "backbone_dilation": True}},
        no_grad={"decoder.0.self_attn.v_proj.weight": "the object queries' states start at zero, so the first "
                 "decoder self-attention's values are its bias alone (as in every DETR)"},
        image_size=(64, 96),
    ),
    "word2vec": Tiny(
        "word2vec", dict(vocab_size=20, embed_dim=8), outputs={"loss": ("B",)},
        options={"summed_window": {"cbow_mean": False, "hierarchical_softmax": True}},
    ),
}


@dataclass(frozen=True)
class Case:
    """One model the contract tests check: a registered variant, a variant with an option, or a family's class.

    Attributes:
        id: the test id: the variant name, ``variant+option``, or the family name for a class with no variant.
        family: the model family.
        variant: the registered variant, or None to start from the family config's defaults.
        flags: the option's overrides, applied after the tiny ones.
    """

    id: str
    family: str
    variant: str | None = None
    flags: Overrides = field(default_factory=dict)

    @property
    def tiny(self) -> Tiny:
        """The family's ``TINY`` entry; fails the test with what to add when there is none."""
        if self.family not in TINY:
            pytest.fail(
                f"model family {self.family!r} (case {self.id!r}) declares no tiny size for the contract tests: add "
                f"TINY[{self.family!r}] = Tiny(kind=..., overrides=..., outputs=...) to tests/models/conftest.py",
                pytrace=False,
            )
        return TINY[self.family]

    def build(self) -> nn.Module:
        """The tiny model, its weights moved off the init (seeded) so that rows and paths differ visibly."""
        tiny = self.tiny
        if self.variant is not None:
            config = create_config(self.variant)
            model = formers.create_model(self.variant, **{**tiny.overrides_for(config), **self.flags})
        else:
            config_cls, model_cls = family_classes(self.family)
            config = config_cls()
            model = model_cls(apply_overrides(config, {**tiny.overrides_for(config), **self.flags}))
        assert model.family == self.family, f"{type(model).__name__}.family is {model.family!r}, not {self.family!r}"
        torch.manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
        return model

    def __str__(self) -> str:
        return self.id


def model_families() -> set[str]:
    """The family of every model class in ``formers.models``, with or without a registered variant."""
    modules = [m for m in vars(formers.models).values() if isinstance(m, ModuleType)]
    classes = [obj for module in modules for obj in vars(module).values() if isinstance(obj, type)]
    return {c.family for c in classes if issubclass(c, nn.Module) and isinstance(getattr(c, "family", None), str)}


def contract_cases() -> list[Case]:
    """The registered variants, each family's options on its first variant, and the classes with no variant."""
    cases, first = [], {}
    for name in formers.list_models():
        family = get_entry(name).family
        cases.append(Case(name, family, name))
        first.setdefault(family, name)
    for family in sorted(model_families() | set(TINY)):
        if family not in first:
            cases.append(Case(family, family))
        for option, flags in TINY[family].options.items() if family in TINY else ():
            cases.append(Case(f"{first.get(family, family)}+{option}", family, first.get(family), flags))
    return cases


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "contract_kinds(*kinds): run a contract test on the cases of these kinds only")
    config.addinivalue_line("markers", "contract_one_per_family: run a contract test on each family's first case only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("contract_kinds")
    kinds = set(marker.args) if marker else None
    # A case whose family has no TINY entry runs (and fails, saying what to add) under every check.
    cases = [c for c in contract_cases() if kinds is None or c.family not in TINY or TINY[c.family].kind in kinds]
    if metafunc.definition.get_closest_marker("contract_one_per_family"):
        first: dict[str, Case] = {}
        cases = [first.setdefault(c.family, c) for c in cases if c.family not in first]
    metafunc.parametrize("case", cases, ids=[c.id for c in cases])
