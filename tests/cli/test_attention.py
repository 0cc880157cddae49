"""``formers attention``: PNGs for tiny random checkpoints of every family with attention, printed paths, and one-line
errors (exit 2) for a bad layer or head, a model without attention, an input the family cannot take."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import formers
from formers.cli.main import main
from formers.data.detection_loader import DetectionPreprocessing
from formers.data.image_transforms import Preprocessing
from formers.data.tokenizers import SubwordTokenizer
from formers.data.tokenizers.char import CharTokenizer
from formers.data.tokenizers.wordpiece import WordPieceTokenizer

TEXT = "the cat sat on the mat"
CORPUS = ["the cat sat on the mat", "a dog ran in the park", "el gato se sento", "un perro corrio en el parque"] * 4
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog"]


def _save(model, directory: Path) -> Path:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    formers.save_pretrained(model.eval(), directory)
    return directory


def _gpt(directory: Path) -> Path:
    tok = CharTokenizer.from_corpus(TEXT)
    _save(formers.create_model("gpt_mini", vocab_size=tok.vocab_size, eos_id=None, embed_dim=16, num_heads=2,
                               num_layers=2, max_seq_len=32), directory)
    tok.save(directory / "tokenizer.json")
    return directory


def _bert(directory: Path) -> Path:
    tok = WordPieceTokenizer(WORDS)
    _save(formers.create_model("bert_tiny", vocab_size=tok.vocab_size, embed_dim=16, num_heads=2, num_layers=2,
                               ffn_dim=32, max_seq_len=16), directory)
    tok.save(directory)
    return directory


def _seq2seq(variant: str, **sizes) -> callable:
    def make(directory: Path) -> Path:
        tok = SubwordTokenizer.train(CORPUS, vocab_size=60, min_frequency=1)
        _save(formers.create_model(variant, src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size,
                                   max_seq_len=24, **sizes), directory)
        tok.save(directory / "tokenizer.json")
        return directory
    return make


def _classifier(variant: str, size: int, **sizes) -> callable:
    def make(directory: Path) -> Path:
        _save(formers.create_model(variant, num_classes=3, **sizes), directory)
        Preprocessing(["a", "b", "c"], (size, size), 3).save(directory)
        return directory
    return make


def _detr(directory: Path) -> Path:
    _save(formers.create_model("detr_tiny", num_classes=2, backbone_depths=[1], backbone_width=8, embed_dim=16,
                               num_encoder_layers=1, num_decoder_layers=2, num_heads=2, ffn_dim=32, num_queries=5),
          directory)
    DetectionPreprocessing(["cat", "dog"], [1, 2], [0.5] * 3, [0.5] * 3, size=64, max_size=96).save(directory)
    return directory


CHECKPOINTS = {
    "gpt": (_gpt, "gpt-self-layer1.png"),
    "bert": (_bert, "bert-self-layer1.png"),
    "transformer": (_seq2seq("transformer_tiny", embed_dim=16, num_heads=2, ffn_dim=32, num_encoder_layers=1,
                             num_decoder_layers=2), "transformer-cross-layer1.png"),
    "rnn": (_seq2seq("lstm_seq2seq_tiny", embed_dim=12, hidden_dim=16, num_encoder_layers=1, num_decoder_layers=1),
            "rnn-cross-layer0.png"),
    "vit": (_classifier("vit_micro_patch8_32", 16, image_size=16, patch_size=4, embed_dim=16, num_layers=2,
                        num_heads=2), "vit-layer1.png"),
    "tnt": (_classifier("tnt_tiny", 16, image_size=16, patch_size=8, embed_dim=16, inner_dim=8, num_layers=2,
                        num_heads=2, inner_num_heads=2, pixel_stride=4), "tnt-layer1.png"),
    "swin": (_classifier("swin_tiny_patch4_window7_224", 24, image_size=24, patch_size=2, embed_dim=8, depths=(2, 2),
                         num_heads=(2, 2), window_size=3), "swin-window-layer0.png"),
    "efficientformer": (_classifier("efficientformer_tiny", 64), "efficientformer-layer0.png"),
    "detr": (_detr, "detr-objects-layer1.png"),
}


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "input.png"
    Image.fromarray(torch.randint(0, 256, (40, 56, 3), dtype=torch.uint8).numpy()).save(path)
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("family", list(CHECKPOINTS))
def test_attention_writes_the_family_picture_and_prints_its_path(family, tmp_path, capsys) -> None:
    make, name = CHECKPOINTS[family]
    head = "0" if family == "rnn" else "1"  # Luong attention has one head
    checkpoint = make(tmp_path / "ckpt")
    assert formers.from_pretrained(checkpoint).family == family
    text_input = family in ("gpt", "bert", "transformer", "rnn")
    source = TEXT if text_input else str(_image(tmp_path))
    code, out, err = run_cli(capsys, "attention", "--checkpoint", str(checkpoint), source, "--out",
                             str(tmp_path / "maps"), "--device", "cpu")
    assert code == 0, err
    assert out.splitlines() == [str(tmp_path / "maps" / name)]
    with Image.open(out.strip()) as png:
        assert png.format == "PNG" and png.width > 200 and png.height > 200
    code, out, err = run_cli(capsys, "attention", "--checkpoint", str(checkpoint), source, "--out",
                             str(tmp_path / "maps"), "--head", head, "--layer", "0", "--device", "cpu")
    assert code == 0, err
    assert out.strip().endswith(f"-layer0-head{head}.png") and Path(out.strip()).is_file()


@pytest.fixture(scope="module")
def gpt_checkpoint(tmp_path_factory) -> Path:
    return _gpt(tmp_path_factory.mktemp("attention") / "gpt")


@pytest.mark.parametrize("option, value, match", [
    ("--layer", "2", "layer must be in [0, 2) (this model has 2 self-attention layers), got 2"),
    ("--layer", "-1", "layer must be in [0, 2)"),
    ("--head", "2", "head must be in [0, 2) (this layer has 2 heads), got 2"),
])
def test_a_bad_layer_or_head_is_one_line_and_exit_2(gpt_checkpoint, tmp_path, capsys, option, value, match) -> None:
    code, out, err = run_cli(capsys, "attention", "--checkpoint", str(gpt_checkpoint), TEXT, option, value,
                             "--out", str(tmp_path / "maps"), "--device", "cpu")
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("formers attention: error: ") and match in err
    assert not list((tmp_path / "maps").glob("*.png"))


def test_models_without_attention_and_wrong_inputs_are_refused(tmp_path, capsys) -> None:
    formers.save_pretrained(formers.create_model("word2vec-cbow" if "word2vec-cbow" in formers.list_models()
                                                 else formers.list_models("word2vec*")[0], vocab_size=20,
                                                 embed_dim=8), tmp_path / "w2v")
    code, _, err = run_cli(capsys, "attention", "--checkpoint", str(tmp_path / "w2v"), "word", "--out",
                           str(tmp_path / "maps"))
    assert code == 2 and "'word2vec' model, which has no attention to draw" in err
    vit = CHECKPOINTS["vit"][0](tmp_path / "vit")
    code, _, err = run_cli(capsys, "attention", "--checkpoint", str(vit), "not-an-image.png", "--out",
                           str(tmp_path / "maps"))
    assert code == 2 and "takes an image: INPUT 'not-an-image.png' is not a file" in err
