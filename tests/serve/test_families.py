"""Every family the playground serves gives its result and an attention view: the vision families besides ViT
(Swin's windows, TNT's inner and outer attention, EfficientFormer's last stage) and the LSTM translator's Luong
attention."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi", reason="pip install 'formers[serve]' (fastapi, uvicorn, python-multipart, httpx)")
pytest.importorskip("torchvision", reason="pip install 'formers[vision]'")

from fastapi.testclient import TestClient  # noqa: E402

import formers  # noqa: E402
from formers.data.image_transforms import Preprocessing  # noqa: E402
from formers.data.tokenizers import SubwordTokenizer  # noqa: E402
from formers.serve import create_app  # noqa: E402

VISION = {
    "swin_mini_28": dict(image_size=24, patch_size=2, embed_dim=8, depths=(2, 2), num_heads=(2, 2), window_size=3,
                         num_classes=3),
    "tnt_mini_28": dict(image_size=16, patch_size=8, embed_dim=16, inner_dim=8, num_layers=2, num_heads=2,
                        inner_num_heads=2, num_classes=3, pixel_stride=4),
    "efficientformer_mini_28": dict(num_classes=3),
}


@pytest.mark.parametrize("name", sorted(VISION))
def test_vision_families_classify_with_attention(tmp_path, name, make_png):
    torch.manual_seed(0)
    model = formers.create_model(name, **VISION[name])
    directory = formers.save_pretrained(model, tmp_path / name)
    size = model.config.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    Preprocessing(["a", "b", "c"], size, model.config.in_channels, [0.5] * model.config.in_channels,
                  [0.25] * model.config.in_channels).save(directory)
    with TestClient(create_app([directory])) as client:
        r = client.post("/api/classify", data={"model": name}, files={"image": ("x.png", make_png(30, 20), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(c["name"] for c in body["classes"]) == ["a", "b", "c"]
    view = body["attention"]
    assert "error" not in view and view["layers"], view
    kinds = {layer["kind"] for layer in view["layers"]}
    expected = {"swin_mini_28": {"window"}, "tnt_mini_28": {"inner", "self"}, "efficientformer_mini_28": {"self"}}
    assert kinds == expected[name]
    for layer in view["layers"]:
        if layer["kind"] == "window":  # positions inside the first window
            assert layer["keys"][:2] == ["0,0", "0,1"] and "grid" not in layer
        elif layer["kind"] == "self":  # image tokens on their grid
            gh, gw = layer["grid"]
            assert len(layer["keys"]) == layer["prefix_tokens"] + gh * gw and layer["keys"][-1] == f"{gh - 1},{gw - 1}"


def test_the_lstm_translator_shows_its_luong_attention(tmp_path):
    corpus = ["the cat sat on the mat", "el gato se sento"] * 8
    tok = SubwordTokenizer.train(corpus, vocab_size=50, min_frequency=1)
    torch.manual_seed(0)
    model = formers.create_model("lstm_seq2seq_tiny", embed_dim=12, hidden_dim=16, num_encoder_layers=1,
                                 num_decoder_layers=1, src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size,
                                 max_seq_len=32)
    directory = formers.save_pretrained(model, tmp_path / "lstm")
    tok.save(directory / "tokenizer.json")
    with TestClient(create_app([directory])) as client:
        body = client.post("/api/translate", json={"model": "lstm", "text": "the cat sat"}).json()
    (layer,) = body["attention"]["layers"]
    assert layer["kind"] == "cross" and layer["heads"] == 1
    assert layer["queries"] == body["target_tokens"] and layer["keys"] == body["source_tokens"]
