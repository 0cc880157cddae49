"""The playground's JSON API through FastAPI's test client: each task gives what the library gives for the same
input, bad requests get a 4xx naming the problem, ids that look like paths are refused, the limits hold, and
concurrent requests all succeed with the sequential results, never running one model twice at once."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytest.importorskip("fastapi", reason="pip install 'formers[serve]' (fastapi, uvicorn, python-multipart, httpx)")
pytest.importorskip("torchvision", reason="pip install 'formers[vision]'")

from fastapi.testclient import TestClient  # noqa: E402

import formers  # noqa: E402
from formers.data.detection_loader import DetectionPreprocessing  # noqa: E402
from formers.data.image_transforms import Preprocessing  # noqa: E402
from formers.data.images import decode_image  # noqa: E402
from formers.data.tokenizers.load import load_tokenizer  # noqa: E402
from formers.data.tokenizers.wordpiece import WordPieceTokenizer  # noqa: E402
from formers.inference.detection import Detector  # noqa: E402
from formers.inference.embedding import embed_texts  # noqa: E402
from formers.inference.translate import Translator  # noqa: E402
from formers.serve import Limits, create_app  # noqa: E402
from formers.serve.models import model_ids  # noqa: E402

LIMITS = Limits(max_text_chars=80, max_new_tokens=30, max_upload_bytes=20_000, max_image_pixels=120 * 120,
                max_sentences=4)


@pytest.fixture(scope="module")
def app(checkpoints):
    return create_app(list(checkpoints.values()), LIMITS)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def stream_events(response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_models_are_listed_with_their_tasks_and_documented(client):
    listed = client.get("/api/models").json()
    assert {m["id"]: m["task"] for m in listed["models"]} == {
        "en-es": "translate", "gpt-char": "generate", "vit": "classify", "detr": "detect", "bert": "embed"}
    assert listed["limits"]["max_new_tokens"] == 30
    schema = client.get("/openapi.json").json()
    assert {"/api/models", "/api/translate", "/api/generate", "/api/classify", "/api/detect", "/api/embed"} <= set(
        schema["paths"])
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "formers playground" in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")


def test_ids_are_directory_names_made_unique(tmp_path):
    assert model_ids([tmp_path / "a b", tmp_path / "x" / "a b", tmp_path / ".hidden", tmp_path / "ckpt"]) == [
        "a-b", "a-b-2", "hidden", "ckpt"]


@pytest.mark.parametrize("beam", [1, 3])
def test_translate_gives_the_translators_result(client, checkpoints, beam):
    text = "the cat sat on the mat"
    r = client.post("/api/translate", json={"model": "en-es", "text": text, "beam": beam})
    assert r.status_code == 200, r.text
    model, tok = formers.from_pretrained(checkpoints["translate"]), load_tokenizer(checkpoints["translate"])
    with torch.inference_mode():
        expected_ids = Translator(model, tok, beam_size=beam).translate_ids([text])[0]
    expected = tok.decode(expected_ids)
    body = r.json()
    assert body["translation"] == expected
    assert body["source_tokens"] == [tok.decode([i]) or tok.id_to_token(i) for i in tok.encode(text)]
    assert body["target_tokens"][: len(expected_ids)] == [tok.decode([i]) for i in expected_ids]
    assert len(body["target_tokens"]) == min(len(expected_ids) + 1, 24) and "attention" in body


def test_generate_streams_the_models_tokens_as_they_are_made(client, checkpoints):
    r = client.post("/api/generate", json={"model": "gpt-char", "prompt": "To be", "max_new_tokens": 12,
                                           "greedy": True})
    events = stream_events(r)
    pieces, done = events[:-1], events[-1]
    model, tok = formers.from_pretrained(checkpoints["generate"]), load_tokenizer(checkpoints["generate"])
    expected = tok.decode(model.generate(torch.tensor([tok.encode("To be")]), 12, as_lists=True)[0])
    assert len(pieces) == 12 and all(set(p) == {"text"} for p in pieces)  # one line per character token
    assert "".join(p["text"] for p in pieces) == done["text"] == expected and done["done"] is True
    assert done["tokens"] == list(expected)
    sampled = {"model": "gpt-char", "prompt": "the", "max_new_tokens": 20, "seed": 7, "temperature": 1.3}
    first, second = (stream_events(client.post("/api/generate", json=sampled))[-1]["text"] for _ in range(2))
    assert first == second and len(first) == 20
    cut = first[4:6]
    stopped = stream_events(client.post("/api/generate", json={**sampled, "stop": [cut]}))
    assert stopped[-1]["text"] == first[: first.index(cut) + len(cut)]
    assert "".join(e["text"] for e in stopped[:-1]) == first[: first.index(cut)]  # the stop string is never shown


def test_classify_gives_the_models_probabilities(client, checkpoints, make_png):
    data = make_png(40, 30)
    r = client.post("/api/classify", data={"model": "vit", "top_k": "2"}, files={"image": ("x.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    model, prep = formers.from_pretrained(checkpoints["classify"]), Preprocessing.load(checkpoints["classify"])
    with torch.inference_mode():
        probs = model(prep(decode_image(data)[None])).logits.softmax(-1)[0]
    top = probs.topk(2)
    assert [c["name"] for c in body["classes"]] == [prep.class_names[i] for i in top.indices.tolist()]
    assert [c["probability"] for c in body["classes"]] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert (body["width"], body["height"]) == (40, 30)


def test_detect_gives_the_detectors_boxes(client, checkpoints, make_png):
    data = make_png(50, 40, seed=1)
    r = client.post("/api/detect", data={"model": "detr", "threshold": "0"},
                    files={"image": ("x.png", data, "image/png")})
    assert r.status_code == 200, r.text
    detector = Detector(formers.from_pretrained(checkpoints["detect"]), DetectionPreprocessing.load(checkpoints["detect"]))
    found = detector([decode_image(data)], 0.0)[0]
    expected = found.to_records(["apple", "pear"])
    assert [{k: v for k, v in d.items() if k != "query"} for d in r.json()["detections"]] == expected
    assert len(expected) == 4 and sorted(d["query"] for d in r.json()["detections"]) == [0, 1, 2, 3]
    with torch.inference_mode():  # each box is its query's: the model's own prediction at that query
        output = detector.model(*detector.inputs([decode_image(data)])[:2])
    for d in r.json()["detections"]:
        assert output.logits[0, d["query"]].softmax(-1)[:-1].max().item() == pytest.approx(d["score"], abs=1e-4)
    assert (r.json()["width"], r.json()["height"]) == (50, 40)


def test_embed_gives_the_cosines_of_the_embeddings(client, checkpoints):
    sentences = ["the weather is lovely today", "it's so sunny outside!", "he drove to the stadium."]
    r = client.post("/api/embed", json={"model": "bert", "sentences": sentences, "attention_of": 1})
    assert r.status_code == 200, r.text
    encoder = formers.from_pretrained(checkpoints["embed"]).encoder
    tok = WordPieceTokenizer.from_directory(checkpoints["embed"])
    emb = embed_texts(encoder, tok, sentences, 16)
    assert torch.tensor(r.json()["similarity"]) == pytest.approx((emb @ emb.T).clamp(-1, 1), abs=1e-5)
    assert r.json()["tokens"] == ["[CLS]", "it", "'", "s", "so", "sunny", "outside", "!", "[SEP]"]


@pytest.mark.parametrize("model_id", ["../en-es", "/etc/passwd", "en-es/../bert", "..", "C:\\x", "en es", ""])
def test_path_like_model_ids_are_refused_before_any_lookup(client, model_id):
    r = client.post("/api/translate", json={"model": model_id, "text": "the cat"})
    assert r.status_code == 422 and "model" in json.dumps(r.json()["detail"])
    r = client.post("/api/classify", data={"model": model_id}, files={"image": ("x.png", b"x", "image/png")})
    assert r.status_code == 422


def test_bad_requests_get_a_4xx_with_a_message(client, make_png):
    def check(response, status, words):
        assert response.status_code == status, response.text
        text = json.dumps(response.json()["detail"])
        assert all(w in text for w in words), text

    check(client.post("/api/translate", json={"model": "nope", "text": "a"}), 404, ["no model 'nope'", "en-es"])
    check(client.post("/api/translate", json={"model": "bert", "text": "a"}), 409, ["'bert' does embed, not translate"])
    check(client.post("/api/translate", json={"model": "en-es", "text": ""}), 422, ["text"])
    check(client.post("/api/translate", json={"model": "en-es", "text": "   "}), 400, ["text is empty"])
    check(client.post("/api/translate", json={"model": "en-es", "text": "the cat", "beam": 0}), 422, ["beam"])
    check(client.post("/api/translate", content=b"{not json", headers={"content-type": "application/json"}),
          422, ["JSON"])
    check(client.post("/api/translate", json={"model": "en-es", "text": " ".join("abcdefghijklmnopqrstuvwxyz")}), 400,
          ["beyond the model's max_seq_len=24"])
    check(client.post("/api/generate", json={"model": "gpt-char", "prompt": "x", "temperature": 0}), 422,
          ["temperature"])
    check(client.post("/api/generate", json={"model": "gpt-char", "prompt": "x", "max_new_tokens": -1}), 422,
          ["max_new_tokens"])
    check(client.post("/api/embed", json={"model": "bert", "sentences": ["one"]}), 422, ["sentences"])
    check(client.post("/api/embed", json={"model": "bert", "sentences": ["the", ""]}), 400, ["sentence 2 is empty"])
    check(client.post("/api/embed", json={"model": "bert", "sentences": ["the", "the"], "attention_of": 2}), 400,
          ["attention_of must be in [0, 1]"])
    check(client.post("/api/embed", json={"model": "bert", "sentences": ["the", "the so " * 9]}), 400,
          ["sentence 2 has 20 tokens", "at most 16"])
    check(client.post("/api/classify", data={"model": "vit"}, files={"image": ("x.txt", b"hello", "text/plain")}),
          400, ["cannot read the uploaded image"])
    check(client.post("/api/classify", data={"model": "vit"}), 422, ["image"])
    check(client.post("/api/classify", data={"model": "vit", "top_k": "0"},
                      files={"image": ("x.png", make_png(), "image/png")}), 422, ["top_k"])
    check(client.post("/api/detect", data={"model": "detr", "threshold": "1.5"},
                      files={"image": ("x.png", make_png(), "image/png")}), 422, ["threshold"])


def test_limits_are_enforced(client, make_png):
    r = client.post("/api/translate", json={"model": "en-es", "text": "a" * 81})
    assert r.status_code == 400 and "81 characters, more than this server's limit of 80" in r.json()["detail"]
    r = client.post("/api/generate", json={"model": "gpt-char", "prompt": "To", "max_new_tokens": 31})
    assert r.status_code == 400 and "max_new_tokens must be in [1, 30]" in r.json()["detail"]
    r = client.post("/api/embed", json={"model": "bert", "sentences": ["the"] * 5})
    assert r.status_code == 400 and "2 to 4 sentences" in r.json()["detail"]
    big = make_png(150, 150)  # random pixels: about 68 kB of PNG, over the 20 kB limit
    assert len(big) > LIMITS.max_upload_bytes
    r = client.post("/api/classify", data={"model": "vit"}, files={"image": ("x.png", big, "image/png")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (200, 100)).save(buffer, format="PNG")  # small file, too many pixels
    r = client.post("/api/detect", data={"model": "detr"}, files={"image": ("x.png", buffer.getvalue(), "image/png")})
    assert r.status_code == 400 and "200x100 pixels, more than the limit of 14400" in r.json()["detail"]


def test_concurrent_requests_all_succeed_with_the_sequential_results_one_at_a_time_per_model(app, client, make_png):
    image = make_png(32, 32, seed=3)
    requests = [
        ("translate", {"model": "en-es", "text": "the dog ran in the park"}),
        ("generate", {"model": "gpt-char", "prompt": "To be", "max_new_tokens": 15, "seed": 1}),
        ("classify", image),
        ("embed", {"model": "bert", "sentences": ["the weather", "so sunny"]}),
    ] * 3

    def send(request):
        task, body = request
        if task == "classify":
            r = client.post("/api/classify", data={"model": "vit"}, files={"image": ("x.png", body, "image/png")})
        else:
            r = client.post(f"/api/{task}", json=body)
        assert r.status_code == 200, r.text
        body = stream_events(r)[-1] if task == "generate" else r.json()
        assert body["attention"]["layers"]
        return json.dumps(body, sort_keys=True)  # attention included: no thread records another's weights

    sequential = [send(r) for r in requests]
    busy = {m.id: 0 for m in app.state.models.values()}
    most = dict(busy)
    guard = threading.Lock()
    originals = {}
    method = {"translate": "decode"}  # what each model runs per step (translation: encode once, then decode)
    for served in app.state.models.values():  # count the passes running at once, per model
        name = method.get(served.task, "forward")

        def counting(*args, _served=served, _forward=getattr(served.model, name), **kwargs):
            with guard:
                busy[_served.id] += 1
                most[_served.id] = max(most[_served.id], busy[_served.id])
            time.sleep(0.002)  # widen the window in which an overlap would be seen
            try:
                return _forward(*args, **kwargs)
            finally:
                with guard:
                    busy[_served.id] -= 1

        originals[served.id] = name
        setattr(served.model, name, counting)
    try:
        with ThreadPoolExecutor(8) as pool:
            concurrent = list(pool.map(send, requests))
    finally:
        for served in app.state.models.values():
            delattr(served.model, originals[served.id])  # the class's method again
    assert concurrent == sequential
    assert most["en-es"] == most["gpt-char"] == most["vit"] == most["bert"] == 1


def _layers(view: dict) -> dict[str, tuple[str, int, list[str], list[str]]]:
    assert "error" not in view, view
    for layer in view["layers"]:
        weights = torch.tensor(layer["weights"])  # (H, Tq, Tk), rows sum to 1
        assert weights.shape == (layer["heads"], len(layer["queries"]), len(layer["keys"]))
        assert weights.sum(-1) == pytest.approx(torch.ones(weights.shape[:2]), abs=1e-3)
    return {l["name"]: (l["kind"], l["heads"], l["queries"], l["keys"]) for l in view["layers"]}


def test_every_result_carries_its_attention_view_with_labels(client, checkpoints, make_png):
    from formers.inference.attention import attention_maps

    body = client.post("/api/translate", json={"model": "en-es", "text": "the cat sat"}).json()
    layers = _layers(body["attention"])
    source, target = body["source_tokens"], body["target_tokens"]
    assert layers == {"encoder.layers.0.self_attn": ("self", 2, source, source),
                      "decoder.layers.0.self_attn": ("self", 2, target, target),
                      "decoder.layers.0.cross_attn": ("cross", 2, target, source)}

    done = stream_events(client.post("/api/generate", json={"model": "gpt-char", "prompt": "To be", "greedy": True,
                                                            "max_new_tokens": 6}))[-1]
    tokens = list("To be") + done["tokens"]
    assert _layers(done["attention"]) == {f"layers.{i}.self_attn": ("self", 2, tokens, tokens) for i in range(2)}
    model, tok = formers.from_pretrained(checkpoints["generate"]), load_tokenizer(checkpoints["generate"])
    _, records = attention_maps(model, torch.tensor([tok.encode("To be" + done["text"])]))
    for layer, record in zip(done["attention"]["layers"], records, strict=True):
        assert torch.tensor(layer["weights"]) == pytest.approx(record.weights[0], abs=1e-4)

    view = client.post("/api/classify", data={"model": "vit"},
                       files={"image": ("x.png", make_png(), "image/png")}).json()["attention"]
    patches = ["[CLS]"] + [f"{r},{c}" for r in range(4) for c in range(4)]
    assert _layers(view) == {f"blocks.{i}.self_attn": ("self", 2, patches, patches) for i in range(2)}
    assert {(l["grid"][0], l["grid"][1], l["prefix_tokens"]) for l in view["layers"]} == {(4, 4, 1)}

    view = client.post("/api/detect", data={"model": "detr"},
                       files={"image": ("x.png", make_png(64, 32), "image/png")}).json()["attention"]
    layers = _layers(view)
    queries = ["q0", "q1", "q2", "q3"]
    kind, heads, rows, keys = layers["decoder.0.cross_attn"]
    assert (kind, rows) == ("cross", queries) and keys == layers["encoder.0.self_attn"][2] and keys[1] == "0,1"
    assert layers["decoder.0.self_attn"] == ("self", 2, queries, queries)

    body = client.post("/api/embed", json={"model": "bert", "sentences": ["the weather", "he drove"],
                                           "attention_of": 1}).json()
    tokens = ["[CLS]", "he", "drove", "[SEP]"]
    assert _layers(body["attention"]) == {"layers.0.self_attn": ("self", 2, tokens, tokens)}


def test_long_inputs_keep_the_attention_of_their_last_tokens(checkpoints):
    app = create_app([checkpoints["generate"]], Limits(max_attention_values=2 * 2 * 10 * 10))
    with TestClient(app) as c:
        done = stream_events(c.post("/api/generate", json={"model": "gpt-char", "prompt": "To be, or not",
                                                           "max_new_tokens": 7, "greedy": True}))[-1]
    view = done["attention"]
    assert view["trimmed"] == 10 and [len(l["queries"]) for l in view["layers"]] == [10, 10]
    assert view["layers"][0]["keys"] == list(("To be, or not" + done["text"])[-10:])



def multipart(model_id: str, image: bytes, boundary: str = "b0undary") -> bytes:
    """A multipart form holding ``model`` and ``image``, as a browser sends it."""
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model_id}\r\n--{boundary}\r\n'
            f'Content-Disposition: form-data; name="image"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n')
    return head.encode() + image + f"\r\n--{boundary}--\r\n".encode()


def test_a_chunked_upload_is_refused_once_it_passes_the_limit(client, make_png):
    def chunks(data: bytes):  # no Content-Length: the server counts as it reads
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    headers = {"content-type": "multipart/form-data; boundary=b0undary"}
    r = client.post("/api/classify", content=chunks(multipart("vit", b"\0" * 200_000)), headers=headers)
    assert r.status_code == 413 and r.json()["detail"].startswith("the request has")  # stopped while reading
    r = client.post("/api/classify", content=chunks(multipart("vit", make_png())), headers=headers)
    assert r.status_code == 200, r.text


def test_a_failure_during_generation_ends_the_stream_with_its_message_and_frees_the_model(app, client):
    served = app.state.models["gpt-char"]
    forward, calls = served.model.forward, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("out of memory on the device (simulated)")
        return forward(*args, **kwargs)

    served.model.forward = failing
    try:
        events = stream_events(client.post("/api/generate", json={"model": "gpt-char", "prompt": "To",
                                                                   "max_new_tokens": 10, "greedy": True}))
    finally:
        del served.model.forward
    assert [set(e) for e in events] == [{"text"}] * 3 + [{"error"}]
    assert events[-1]["error"] == "out of memory on the device (simulated)"
    assert not served.lock.locked()
    done = stream_events(client.post("/api/generate", json={"model": "gpt-char", "prompt": "To", "greedy": True,
                                                            "max_new_tokens": 3}))[-1]
    assert done["done"] and len(done["text"]) == 3


def test_the_page_ships_as_package_data():
    import fnmatch
    from pathlib import Path

    import tomllib

    import formers.serve

    package = Path(formers.__file__).parent
    patterns = tomllib.loads((package.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["formers"]
    files = [p.relative_to(package).as_posix() for p in (Path(formers.serve.__file__).parent / "static").iterdir()]
    assert sorted(files) == ["serve/static/app.js", "serve/static/index.html", "serve/static/style.css"] and all(
        any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files), (files, patterns)
