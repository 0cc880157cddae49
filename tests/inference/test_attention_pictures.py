"""``draw_attention`` draws the right numbers: the plotted maps are compared with the recorded weights (the plotting
functions are replaced by recorders of their arguments)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import formers
from formers.data.detection_loader import DetectionPreprocessing
from formers.data.image_transforms import Preprocessing
from formers.data.images import read_image
from formers.data.tokenizers import SubwordTokenizer
from formers.inference import attention_pictures
from formers.inference.attention import attention_maps
from formers.layers.boxes import box_cxcywh_to_xyxy
from formers.viz.attention import attention_rollout

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "el gato se sento", "un perro corrio en el parque"] * 4


@pytest.fixture
def drawn(monkeypatch) -> dict:
    """The arguments of the last call of each plotting function of the pipeline (nothing is written)."""
    calls: dict = {}
    for name in ("plot_alignment", "plot_heads", "plot_image_attention", "plot_object_attention",
                 "plot_window_attention"):
        def record(*args, _name=name, **kwargs):
            calls[_name] = args
            return Path(args[-2] if _name != "plot_heads" else args[3])
        monkeypatch.setattr(attention_pictures, name, record)
    return calls


def _perturbed(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def _image(tmp_path: Path, size=(40, 56)) -> Path:
    path = tmp_path / "input.png"
    torch.manual_seed(1)
    Image.fromarray(torch.randint(0, 256, (*size, 3), dtype=torch.uint8).numpy()).save(path)
    return path


def test_translation_draws_the_decoder_cross_attention_over_source_and_translation(tmp_path, drawn) -> None:
    tok = SubwordTokenizer.train(CORPUS, vocab_size=60, min_frequency=1)
    model = _perturbed(formers.create_model(
        "transformer_tiny", embed_dim=16, num_heads=2, ffn_dim=32, num_encoder_layers=1, num_decoder_layers=2,
        src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, max_seq_len=12,
    ))
    formers.save_pretrained(model, tmp_path / "ckpt")
    tok.save(tmp_path / "ckpt" / "tokenizer.json")
    attention_pictures.draw_attention(tmp_path / "ckpt", "the cat sat", tmp_path / "out", layer=0, device="cpu")
    weights, sources, targets, path = drawn["plot_alignment"][:4]
    ids = tok.encode("the cat sat")
    translation = formers.generation.seq2seq.greedy_search(model, torch.tensor([ids]), max_new_tokens=11)[0]
    _, records = attention_maps(model, torch.tensor([ids]), torch.tensor([[model.config.bos_id, *translation]]))
    cross = [r for r in records if r.kind == "cross"]
    assert [r.name for r in cross] == ["decoder.layers.0.cross_attn", "decoder.layers.1.cross_attn"]
    torch.testing.assert_close(weights, cross[0].weights[0].mean(0))  # (T, S), heads averaged
    assert sources == attention_pictures.token_labels(tok, ids)
    assert len(targets) == len(translation) + 1 and path.name == "transformer-cross-layer0.png"


def test_vit_draws_the_class_token_rollout_over_the_patch_grid(tmp_path, drawn) -> None:
    model = _perturbed(formers.create_model("vit_micro_patch8_32", image_size=16, patch_size=4, embed_dim=16,
                                            num_layers=3, num_heads=2, num_classes=3))
    formers.save_pretrained(model, tmp_path / "ckpt")
    prep = Preprocessing(["a", "b", "c"], (16, 16), 3)
    prep.save(tmp_path / "ckpt")
    image_path = _image(tmp_path)
    attention_pictures.draw_attention(tmp_path / "ckpt", str(image_path), tmp_path / "out", layer=1, head=1,
                                      device="cpu")
    image, heat = drawn["plot_image_attention"][:2]
    _, records = attention_maps(model, prep(read_image(image_path)[None]))
    expected = attention_rollout([r.weights[:, 1:2] for r in records[:2]])[0, 0, 1:].view(4, 4)
    torch.testing.assert_close(heat, expected)
    assert image.shape == (3, 40, 56)  # drawn over the image as given, not the resized input


def test_detr_draws_each_confident_query_with_its_box(tmp_path, drawn) -> None:
    model = _perturbed(formers.create_model(
        "detr_tiny", num_classes=2, backbone_depths=[1], backbone_width=8, embed_dim=16, num_encoder_layers=1,
        num_decoder_layers=2, num_heads=2, ffn_dim=32, num_queries=6,
    ))
    formers.save_pretrained(model, tmp_path / "ckpt")
    DetectionPreprocessing(["cat", "dog"], [1, 2], [0.5] * 3, [0.5] * 3, size=None).save(tmp_path / "ckpt")
    image_path = _image(tmp_path, (64, 96))
    attention_pictures.draw_attention(tmp_path / "ckpt", str(image_path), tmp_path / "out", device="cpu",
                                      threshold=0.0)
    image, heat, boxes, captions = drawn["plot_object_attention"][:4]
    pixels = (read_image(image_path).float() / 255 - 0.5) / 0.5
    output, records = attention_maps(model, pixels[None], torch.ones(1, 64, 96, dtype=torch.bool))
    scores = output.logits[0].softmax(-1)[:, :-1].amax(-1)
    keep = scores.argsort(descending=True)
    assert [c.split(":")[0] for c in captions] == [f"query {int(q)}" for q in keep]
    torch.testing.assert_close(boxes, box_cxcywh_to_xyxy(output.boxes[0][keep]) * torch.tensor([96, 64, 96, 64.0]))
    last = records[-1]
    assert last.name == "decoder.1.cross_attn" and last.extra["grid"] == (heat.shape[1], heat.shape[2])
    torch.testing.assert_close(heat, last.weights[0].mean(0)[keep].view(heat.shape))
