"""Tiny random checkpoints of every playground task (each with its tokenizer or preprocessing), saved once per test
session, and a PNG to upload."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

import formers
from formers.data.tokenizers import SubwordTokenizer
from formers.data.tokenizers.char import CharTokenizer
from formers.data.tokenizers.wordpiece import WordPieceTokenizer

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "el gato se sento", "un perro corrio en el parque"] * 4
SHAKESPEARE = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.\n" * 3
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "weather", "is", "lovely", "today", "it", "so", "sunny", "outside", "he", "drove", "to", "stadium",
         ".", "!", "'", "s"]
CLASSES = ["cat", "dog", "bird"]


def _noisy(model: torch.nn.Module, scale: float = 0.3) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


def make_checkpoints(root: Path) -> dict[str, Path]:
    """One tiny checkpoint per task under ``root``: {task: directory}."""
    from formers.data.detection_loader import DetectionPreprocessing
    from formers.data.image_transforms import Preprocessing
    from formers.models.detr import DETR, DETRConfig

    torch.manual_seed(0)
    out = {}
    tok = SubwordTokenizer.train(CORPUS, vocab_size=60, min_frequency=1)
    model = formers.create_model(
        "transformer_tiny", embed_dim=16, num_heads=2, ffn_dim=32, num_encoder_layers=1, num_decoder_layers=1,
        src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, max_seq_len=24)
    out["translate"] = formers.save_pretrained(_noisy(model), root / "en-es")
    tok.save(out["translate"] / "tokenizer.json")

    chars = CharTokenizer.from_corpus(SHAKESPEARE)
    model = formers.create_model("gpt_mini", vocab_size=chars.vocab_size, eos_id=None, embed_dim=16, num_heads=2,
                                 num_layers=2, max_seq_len=64)
    out["generate"] = formers.save_pretrained(_noisy(model), root / "gpt-char")
    chars.save(out["generate"] / "tokenizer.json")

    model = formers.create_model("vit_mini_28", image_size=16, patch_size=4, in_channels=3, num_classes=len(CLASSES),
                                 embed_dim=16, num_layers=2, num_heads=2)
    out["classify"] = formers.save_pretrained(_noisy(model), root / "vit")
    Preprocessing(CLASSES, (16, 16), 3, [0.5] * 3, [0.25] * 3).save(out["classify"])

    model = DETR(DETRConfig(num_classes=2, backbone_block="basic", backbone_depths=[1, 1, 1, 1], backbone_width=8,
                            embed_dim=16, num_encoder_layers=1, num_decoder_layers=1, num_heads=2, ffn_dim=32,
                            num_queries=4))
    out["detect"] = formers.save_pretrained(_noisy(model, 0.05), root / "detr")
    DetectionPreprocessing(["apple", "pear"], [1, 2], [0.5] * 3, [0.5] * 3, size=64, max_size=96).save(out["detect"])

    words = WordPieceTokenizer(SPECIALS + WORDS)
    model = formers.create_model("bert_tiny", vocab_size=words.vocab_size, embed_dim=16, num_heads=2, num_layers=1,
                                 ffn_dim=32, max_seq_len=16)
    out["embed"] = formers.save_pretrained(_noisy(model), root / "bert")
    words.save(out["embed"])
    return out


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    return make_checkpoints(tmp_path_factory.mktemp("serve"))


def png_bytes(width: int = 40, height: int = 30, seed: int = 0) -> bytes:
    """A random RGB PNG."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=g)
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy(), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def make_png():
    """``make_png(width, height, seed)``: the bytes of a random RGB PNG."""
    return png_bytes
