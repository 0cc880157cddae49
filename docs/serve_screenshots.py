"""Screenshots of `formers serve` for the README: docs/serve_<task>.png, one per task.

    python docs/serve_screenshots.py --translate runs/quickstart --generate runs/gpt-shakespeare-char-cpu \\
        --classify runs/digits-cpu --embed path/to/all-MiniLM-L6-v2 [--detect runs/fashion-detect-cpu]

Starts the playground on a free localhost port with the given checkpoints, drives Debian's Chromium through each
task with Playwright (as tests/serve/test_browser.py does) and writes each panel as a palette PNG (small files). A
task without a checkpoint gets a tiny random model, and the screenshot says so in its model id
("random-<task>"). Needs the serve extra and Chromium (`apt-get install -y chromium`).
"""

from __future__ import annotations

import argparse
import io
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

import formers
from formers.data.detection_loader import DetectionPreprocessing
from formers.data.tokenizers import SubwordTokenizer
from formers.data.tokenizers.char import CharTokenizer
from formers.data.tokenizers.wordpiece import WordPieceTokenizer
from formers.models.detr import DETR, DETRConfig
from formers.serve import Limits, create_app

REPO = Path(__file__).resolve().parents[1]
TASKS = ("translate", "generate", "classify", "detect", "embed")


def random_checkpoint(task: str, root: Path) -> Path:
    """A tiny random model for ``task`` with its tokenizer or preprocessing, in ``root/random-<task>``."""
    from formers.data.image_transforms import Preprocessing

    torch.manual_seed(0)
    out = root / f"random-{task}"
    if task == "translate":
        corpus = ["the cat sat on the mat", "el gato se sento en la alfombra"] * 10
        tok = SubwordTokenizer.train(corpus, vocab_size=60, min_frequency=1)
        model = formers.create_model("transformer_tiny", embed_dim=32, num_heads=4, ffn_dim=64, num_encoder_layers=2,
                                     num_decoder_layers=2, src_vocab_size=tok.vocab_size,
                                     tgt_vocab_size=tok.vocab_size, max_seq_len=96)
        formers.save_pretrained(model, out)
        tok.save(out / "tokenizer.json")
    elif task == "generate":
        tok = CharTokenizer.from_corpus("abcdefghijklmnopqrstuvwxyz ,.:;!?'\nABCDEFGHIJKLMNOPQRSTUVWXYZ")
        model = formers.create_model("gpt_mini", vocab_size=tok.vocab_size, eos_id=None, embed_dim=32, num_heads=4,
                                     num_layers=2, max_seq_len=64)
        formers.save_pretrained(model, out)
        tok.save(out / "tokenizer.json")
    elif task == "classify":
        model = formers.create_model("vit_mini_28", image_size=32, patch_size=4, in_channels=3, num_classes=4,
                                     embed_dim=32, num_layers=2, num_heads=4)
        formers.save_pretrained(model, out)
        Preprocessing(["cat", "dog", "bird", "tree"], (32, 32), 3, [0.5] * 3, [0.25] * 3).save(out)
    elif task == "detect":
        model = DETR(DETRConfig(num_classes=2, backbone_block="basic", backbone_depths=[1, 1, 1, 1],
                                backbone_width=8, embed_dim=32, num_encoder_layers=1, num_decoder_layers=2,
                                num_heads=4, ffn_dim=64, num_queries=8))
        formers.save_pretrained(model, out)
        DetectionPreprocessing(["tree", "shrub"], [1, 2], [0.5] * 3, [0.25] * 3, size=320, max_size=480).save(out)
    else:
        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "weather", "is", "lovely", "today", "it", "so",
                 "sunny", "outside", "he", "drove", "to", "stadium", ".", "!", "'", "s"]
        tok = WordPieceTokenizer(words)
        model = formers.create_model("bert_tiny", vocab_size=tok.vocab_size, embed_dim=32, num_heads=4, num_layers=2,
                                     ffn_dim=64, max_seq_len=32)
        formers.save_pretrained(model, out)
        tok.save(out)
    return out


def default_image(task: str, directory: Path, root: Path) -> Path:
    """An image to upload: a digit from scikit-learn for an 8x8 classifier, a real airborne photo of trees from
    ../shared/data/deepforest where present, else a gradient."""
    from PIL import Image

    path = root / f"{task}.png"
    from formers.data.image_transforms import Preprocessing

    size = tuple(Preprocessing.load(directory).image_size) if task == "classify" else None
    if size == (8, 8):
        from sklearn.datasets import load_digits

        digits = load_digits()
        Image.fromarray((digits.images[1797 - 7] * 16).clip(0, 255).astype("uint8"), mode="L").save(path)
        return path
    trees = REPO.parent / "shared" / "data" / "deepforest" / "OSBS_029.png"
    if trees.is_file():
        with Image.open(trees) as im:
            im.convert("RGB").save(path)
        return path
    gradient = torch.linspace(0, 255, 128).to(torch.uint8)
    pixels = torch.stack([gradient[None].expand(96, 128), gradient[:96, None].expand(96, 128),
                          torch.full((96, 128), 128, dtype=torch.uint8)], -1)
    Image.fromarray(pixels.numpy()).save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_small(png: bytes, path: Path) -> None:
    """Writes a screenshot as a 256-colour palette PNG."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for task in TASKS:
        p.add_argument(f"--{task}", type=Path, help=f"checkpoint for the {task} panel (default: a tiny random one)")
    p.add_argument("--classify-image", type=Path, help="image to classify (default: a digit or a photo)")
    p.add_argument("--detect-image", type=Path, help="image to detect objects in (default: a photo of trees)")
    p.add_argument("--out", type=Path, default=REPO / "docs", help="folder for serve_<task>.png (default docs/)")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = p.parse_args(argv)
    import uvicorn
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="serve-screenshots-"))
    checkpoints = {t: getattr(args, t) or random_checkpoint(t, root) for t in TASKS}
    app = create_app([checkpoints[t] for t in TASKS], Limits())
    ids = {m.task: m.id for m in app.state.models.values()}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.config.port}"
    images = {"classify": args.classify_image or default_image("classify", checkpoints["classify"], root),
              "detect": args.detect_image or default_image("detect", checkpoints["detect"], root)}
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1180, "height": 900})
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        for task in TASKS:
            section = page.locator(f"section[data-model='{ids[task]}']")
            if task == "translate":
                section.locator("textarea").fill("And God said, Let there be light: and there was light.")
                section.locator("input[name=beam]").fill("4")
            elif task == "generate":
                section.locator("textarea").fill("ROMEO:")
                section.locator("input[name=max_new_tokens]").fill("120")
            elif task in ("classify", "detect"):
                section.locator("input[type=file]").set_input_files(images[task])
                if task == "detect":
                    section.locator("input[name=threshold]").fill("0.5")
            button = {"translate": "Translate", "generate": "Generate", "classify": "Classify", "detect": "Detect",
                      "embed": "Compare"}[task]
            section.get_by_role("button", name=button).click()
            section.locator("xpath=self::*[@data-state='done' or @data-state='error']").wait_for(timeout=120_000)
            if section.get_attribute("data-state") != "done":
                print(f"{task}: {section.locator('.output').inner_text()}", file=sys.stderr)
                return 1
            path = args.out / f"serve_{task}.png"
            save_small(section.screenshot(), path)
            print(f"wrote {path} ({path.stat().st_size // 1024} kB)")
        browser.close()
    server.should_exit = True
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
