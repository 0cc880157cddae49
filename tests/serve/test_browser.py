"""The playground page in a real browser: Playwright drives Debian's Chromium through each task against a live
uvicorn server, checks the rendered result and its attention view, and takes a screenshot of each panel; and the
generation stream reaches the client token by token, while the model is still generating."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="pip install 'formers[serve]' (fastapi, uvicorn, python-multipart, httpx)")
pytest.importorskip("torchvision", reason="pip install 'formers[vision]'")

from formers.serve import Limits, create_app  # noqa: E402

CHROMIUM = next((p for p in (os.environ.get("FORMERS_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                             shutil.which("chromium-browser")) if p and Path(p).is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(checkpoints):
    """A uvicorn server of every task's checkpoint on a free localhost port: (url, app)."""
    uvicorn = pytest.importorskip("uvicorn")
    app = create_app(list(checkpoints.values()), Limits(max_new_tokens=64))
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{config.port}", app
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is absent: install Debian's package (apt-get install -y chromium), or set "
                    "FORMERS_CHROMIUM to a Chromium executable")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in the serve extra)")
    with sync_api.sync_playwright() as p:
        args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # root has no sandbox
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    url, _ = server
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else errors.append(r.url))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    yield page
    page.close()
    assert not errors, errors  # no script error, and nothing fetched from outside the server


def api(server, path: str, body: dict) -> dict:
    import httpx

    r = httpx.post(server[0] + path, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json() if "ndjson" not in r.headers["content-type"] else json.loads(r.text.splitlines()[-1])


def api_detect(server, image) -> dict:
    import httpx

    r = httpx.post(server[0] + "/api/detect", data={"model": "detr", "threshold": "0"},
                   files={"image": ("x.png", image.read_bytes(), "image/png")}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def panel(page, model_id: str):
    return page.locator(f"section[data-model='{model_id}']")


def run_and_wait(section, button: str) -> None:
    section.get_by_role("button", name=button).click()
    section.locator("xpath=self::*[@data-state='done' or @data-state='error']").wait_for(timeout=20_000)
    assert section.get_attribute("data-state") == "done", section.locator(".output").inner_text()


def heatmap(section) -> dict:
    """The attention canvas's size, its rows and columns, and how many distinct colours it holds."""
    return section.locator("canvas.heatmap").evaluate("""c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const colours = new Set();
        for (let i = 0; i < d.length; i += 4) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        return {width: c.width, height: c.height, queries: Number(c.dataset.queries), keys: Number(c.dataset.keys),
                colours: colours.size};
    }""")


def labels_stay_in_their_margins(section) -> bool:
    """No label pixel inside the heatmap's cells: every cell is one flat colour (give or take rounding)."""
    return section.locator("canvas.heatmap").evaluate("""c => {
        const q = Number(c.dataset.queries), k = Number(c.dataset.keys);
        const cell = Math.max(3, Math.min(24, Math.floor(420 / Math.max(q, k))));
        const left = c.width - 2 - k * cell, top = c.height - 2 - q * cell;
        const d = c.getContext('2d').getImageData(left, top, k * cell, q * cell);
        for (let y = 0; y < q * cell; y++) for (let x = 0; x < k * cell; x++) {
            const i = 4 * (y * k * cell + x), j = 4 * ((y - y % cell) * k * cell + (x - x % cell));
            if (Math.abs(d.data[i] - d.data[j]) + Math.abs(d.data[i + 1] - d.data[j + 1]) > 24) return false;
        }
        return true;
    }""")


def layer_names(section) -> list[str]:
    return section.locator("select.layer option").all_inner_texts()


def test_the_page_lists_a_panel_per_model(page):
    tasks = page.locator("section.panel").evaluate_all("s => s.map(x => [x.dataset.model, x.dataset.task])")
    assert tasks == [["en-es", "translate"], ["gpt-char", "generate"], ["vit", "classify"], ["detr", "detect"],
                     ["bert", "embed"]]


def test_the_api_docs_render_offline(page, server):
    pytest.importorskip("swagger_ui_bundle", reason="pip install swagger-ui-bundle-v2 (in the serve extra)")
    page.goto(server[0] + "/docs")
    for path in ("/api/models", "/api/translate", "/api/generate", "/api/classify", "/api/detect", "/api/embed"):
        page.get_by_text(path, exact=True).first.wait_for(timeout=15_000)


def test_translate_shows_the_translation_and_the_cross_attention(page, server, tmp_path):
    section = panel(page, "en-es")
    section.locator("textarea[name=text]").fill("the dog ran in the park")
    run_and_wait(section, "Translate")
    expected = api(server, "/api/translate", {"model": "en-es", "text": "the dog ran in the park"})
    assert section.locator(".translation").inner_text() == expected["translation"]
    assert layer_names(section) == ["encoder.layers.0.self_attn (self)", "decoder.layers.0.self_attn (self)",
                                    "decoder.layers.0.cross_attn (cross)"]
    section.locator("select.layer").select_option(label="decoder.layers.0.cross_attn (cross)")
    drawn = heatmap(section)
    assert (drawn["queries"], drawn["keys"]) == (len(expected["target_tokens"]), len(expected["source_tokens"]))
    assert drawn["colours"] > 10  # cells in many shades, and the labels
    assert labels_stay_in_their_margins(section)
    section.locator("select.head").select_option("mean")
    assert heatmap(section)["queries"] == len(expected["target_tokens"])
    section.screenshot(path=tmp_path / "translate.png")
    assert (tmp_path / "translate.png").stat().st_size > 5000


def test_generate_streams_text_into_the_page(page, server, tmp_path):
    section = panel(page, "gpt-char")
    section.locator("textarea[name=prompt]").fill("To be")
    section.locator("input[name=max_new_tokens]").fill("20")
    section.locator("input[name=greedy]").check()
    run_and_wait(section, "Generate")
    expected = api(server, "/api/generate", {"model": "gpt-char", "prompt": "To be", "max_new_tokens": 20,
                                             "greedy": True})
    out = section.locator(".generated")
    assert out.inner_text() == "To be" + expected["text"]
    assert out.get_attribute("data-pieces") == "20"  # each token's text arrived as its own piece
    assert layer_names(section) == ["layers.0.self_attn (self)", "layers.1.self_attn (self)"]
    drawn = heatmap(section)
    assert drawn["queries"] == drawn["keys"] == 25 and drawn["colours"] > 10
    section.screenshot(path=tmp_path / "generate.png")
    section.locator("input[name=greedy]").uncheck()  # sampled, with the page's temperature and seed
    section.locator("input[name=temperature]").fill("1.5")
    section.locator("input[name=seed]").fill("3")
    run_and_wait(section, "Generate")
    sampled = api(server, "/api/generate", {"model": "gpt-char", "prompt": "To be", "max_new_tokens": 20,
                                            "temperature": 1.5, "seed": 3})
    assert out.inner_text() == "To be" + sampled["text"] and sampled["text"] != expected["text"]


def test_classify_shows_probabilities_and_patch_attention(page, server, tmp_path, make_png):
    image = tmp_path / "photo.png"
    image.write_bytes(make_png(48, 48, seed=5))
    section = panel(page, "vit")
    section.locator("input[type=file]").set_input_files(image)
    run_and_wait(section, "Classify")
    names = section.locator(".bars .name").all_inner_texts()
    assert sorted(names) == ["bird", "cat", "dog"]
    probs = [float(p.rstrip("%")) for p in section.locator(".bars .prob").all_inner_texts()]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 100) < 0.5
    assert section.locator("canvas.image").evaluate("c => [c.width, c.height]") == [240, 240]  # shown 5x
    drawn = heatmap(section)
    assert drawn["queries"] == drawn["keys"] == 17 and drawn["colours"] > 10
    overlay = section.locator("canvas.overlay")  # the [CLS] token's attention over the 4x4 patches
    assert overlay.is_visible() and overlay.get_attribute("data-cells") == "16"
    assert section.locator("select.query").input_value() == "0"
    section.screenshot(path=tmp_path / "classify.png")


def test_detect_draws_the_boxes_and_the_queries_attention(page, server, tmp_path, make_png):
    image = tmp_path / "scene.png"
    image.write_bytes(make_png(96, 64, seed=2))
    section = panel(page, "detr")
    section.locator("input[type=file]").set_input_files(image)
    section.locator("input[name=threshold]").fill("0")
    run_and_wait(section, "Detect")
    canvas = section.locator("canvas.image")
    assert canvas.get_attribute("data-boxes") == "4" and section.locator(".detections li").count() == 4
    best = api_detect(server, image)["detections"][0]["query"]  # the last layer's overlay starts at its query
    assert section.locator("select.query option:checked").inner_text() == f"q{best}"
    assert f"(query q{best})" in section.locator(".detections li").first.inner_text()
    assert "cross" in " ".join(layer_names(section))
    section.locator("select.layer").select_option(label="decoder.0.cross_attn (cross)")
    assert heatmap(section)["queries"] == 4
    section.locator("select.query").select_option(label="q2")  # that object query's attention over the image
    overlay = section.locator("canvas.overlay")
    assert overlay.is_visible() and overlay.get_attribute("data-cells") == "6"  # 64x96 -> 2x3 features
    section.locator("select.layer").select_option(label="decoder.0.self_attn (self)")
    assert not overlay.is_visible()  # queries among queries: nothing to lay over the image
    section.screenshot(path=tmp_path / "detect.png")


def test_embed_shows_the_similarities_and_an_error_for_a_bad_request(page, server, tmp_path):
    section = panel(page, "bert")
    sentences = ["the weather is lovely today", "it's so sunny outside!", "he drove to the stadium."]
    section.locator("textarea[name=sentences]").fill("\n".join(sentences))
    run_and_wait(section, "Compare")
    expected = api(server, "/api/embed", {"model": "bert", "sentences": sentences})["similarity"]
    cells = [float(c) for c in section.locator("table.sim td").all_inner_texts()]
    assert cells == pytest.approx([v for row in expected for v in row], abs=1e-3)
    assert heatmap(section)["queries"] == 7  # [CLS] the weather is lovely today [SEP]: sentence 0
    section.screenshot(path=tmp_path / "embed.png")
    section.locator("textarea[name=sentences]").fill("only one sentence")
    section.get_by_role("button", name="Compare").click()
    section.locator("xpath=self::*[@data-state='error']").wait_for(timeout=10_000)
    assert "sentences" in section.locator(".error").inner_text()


def test_generated_tokens_reach_the_client_while_the_model_is_still_running(server):
    import httpx

    url, app = server
    served = app.state.models["gpt-char"]
    forward = served.model.forward

    def slow(*args, **kwargs):
        time.sleep(0.05)
        return forward(*args, **kwargs)

    served.model.forward = slow
    try:
        arrivals = []
        with httpx.stream("POST", url + "/api/generate", json={"model": "gpt-char", "prompt": "To", "greedy": True,
                                                               "max_new_tokens": 20}, timeout=30) as r:
            for line in r.iter_lines():
                arrivals.append((time.monotonic(), json.loads(line)))
    finally:
        del served.model.forward
    assert arrivals[-1][1]["done"] and len(arrivals) == 21
    assert arrivals[-1][0] - arrivals[0][0] > 0.5  # the first piece came about 19 forward passes before the end


def test_a_client_that_goes_away_stops_its_generation(server):
    import httpx

    url, app = server
    served = app.state.models["gpt-char"]
    forward, calls = served.model.forward, []

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(0.02)
        return forward(*args, **kwargs)

    served.model.forward = slow
    try:
        with httpx.stream("POST", url + "/api/generate", json={"model": "gpt-char", "prompt": "To", "greedy": True,
                                                               "max_new_tokens": 60}, timeout=30) as r:
            lines = r.iter_lines()
            assert "text" in json.loads(next(lines))
        deadline = time.monotonic() + 10
        while served.lock.locked() and time.monotonic() < deadline:  # the model is freed soon after
            time.sleep(0.01)
        assert not served.lock.locked()
    finally:
        del served.model.forward
    assert len(calls) < 40  # of the 60 steps (+ the attention pass) it would have run


def test_the_readme_screenshot_script_writes_a_picture_per_task(tmp_path):
    """``docs/serve_screenshots.py`` with no checkpoints (tiny random models), into a temporary folder (in a process
    of its own: Playwright's sync API runs one browser session per thread)."""
    import subprocess
    import sys

    if CHROMIUM is None:
        pytest.skip("Chromium is absent: install Debian's package (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (in the serve extra)")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(repo / "docs" / "serve_screenshots.py"), "--out", str(tmp_path),
                           "--chromium", CHROMIUM], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from PIL import Image

    for task in ("translate", "generate", "classify", "detect", "embed"):
        with Image.open(tmp_path / f"serve_{task}.png") as im:
            assert im.mode == "P" and im.width > 800 and im.height > 300  # a palette PNG of the whole panel
