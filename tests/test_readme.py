"""The README's two commands are the ones CI runs, and the main job does what the README says."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from formers.files import read_pointer

REPO = Path(__file__).resolve().parents[1]

IMPORT_NAMES = {
    "pytest": "pytest", "pytest-timeout": "pytest_timeout", "transformers": "transformers",
    "sentencepiece": "sentencepiece", "timm": "timm", "torchvision": "torchvision", "pillow": "PIL",
    "scikit-learn": "sklearn", "import-linter": "importlinter", "hypothesis": "hypothesis", "scipy": "scipy",
    "pycocotools": "pycocotools", "gensim": "gensim",
    "fastapi": "fastapi", "uvicorn": "uvicorn", "python-multipart": "python_multipart", "httpx": "httpx",
    "swagger-ui-bundle-v2": "swagger_ui_bundle", "anyio": "anyio",
    "playwright": "playwright",
}
"""The module each optional dependency installs."""


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_commands_and_ci_runs_them():
    commands = readme_commands()
    assert len(commands) == 2, commands
    install_and_run, test = commands
    steps = [s.strip() for s in install_and_run.split("&&")]
    assert steps[-1] == ".venv/bin/formers train quickstart"
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    for step in steps[:-1]:  # the install, step by step, exactly as the README says
        assert step in ci, (step, ci)
    assert ci[-1] == test.strip()  # and the README's test command last


def test_quickstart_command_trains_prints_bleu_and_saves_a_usable_checkpoint(tmp_path):
    """Runs the README's main job exactly (``formers train quickstart``) and then its translate example."""
    formers_bin = Path(sys.executable).parent / "formers"
    main_job = readme_commands()[0].split("&&")[-1].split()
    assert main_job[1:] == ["train", "quickstart"]
    done = subprocess.run([str(formers_bin), *main_job[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    match = re.search(r"final: final\s+sacreBLEU\s+([\d.]+)", done.stdout)
    assert match, done.stdout
    bleu = float(match.group(1))
    # It learns. The 4-minute budget stops a busy machine early and the score follows the steps taken (all 3,000
    # score about 10-13; 0.06 after 139 steps with five jobs on the 2 cores), so the bar follows the steps: the
    # training loss falls whatever the machine, and BLEU (an untrained model scores ~0) once there were steps enough.
    stopped = re.search(r"stopped by the time budget .* at step ([\d,]+)", done.stdout)
    steps = int(stopped.group(1).replace(",", "")) if stopped else 3000
    run = tmp_path / "runs" / "quickstart"
    with open(run / "metrics.csv", newline="", encoding="utf-8") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh) if r.get("loss")]
    checkpoint = read_pointer(run / "checkpoints" / "latest")
    vocab = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))["config"]["tgt_vocab_size"]
    assert losses and losses[-1] < 0.9 * math.log(vocab), (losses, vocab)  # a uniform guess scores ln(vocab)
    if steps >= 3000:
        assert bleu > 8.0, bleu
    elif steps >= 1000:
        assert bleu > 1.0, (bleu, steps)
    assert (tmp_path / "runs" / "quickstart" / "checkpoints" / "latest").is_file()
    example = re.search(r"\(`\.venv/bin/formers (translate [^`]+)`\)", (REPO / "README.md").read_text()).group(1)
    out = subprocess.run([str(formers_bin), *shlex.split(example)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def installed_requirements(names: set[str]) -> set[str]:
    """``names`` and everything they require, recursively, as installed here (requirements of extras left out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r.replace('"', "").replace("'", "")]
    return seen


def optional_modules() -> set[str]:
    """Modules of the optional extras ([dev], [vision], [detection]) that no required dependency pulls in."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    required = installed_requirements({_name(r) for r in project["dependencies"]})
    optional = {_name(r) for extra in project["optional-dependencies"].values() for r in extra} - required
    unmapped = optional - IMPORT_NAMES.keys()
    assert not unmapped, f"add the import names of {sorted(unmapped)} to IMPORT_NAMES"
    return {IMPORT_NAMES[n] for n in optional}


BLOCKER = """
import json, sys
for name in BLOCKED:  # what an uninstalled package looks like: import raises, importlib.util.find_spec gives None
    sys.modules[name] = None
from formers.cli.main import main
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    if code:
        sys.exit(code)
"""


def test_quickstart_needs_no_optional_dependency(tmp_path):
    """``pip install formers`` (no [dev], no [vision]) is enough for ``formers train quickstart`` and ``translate``."""
    blocked = optional_modules()
    assert {"torchvision", "transformers", "timm", "sklearn", "pytest"} <= blocked
    tiny = ["--set", "train.max_minutes=null", "--set", "train.max_steps=3", "--set", "data.max_train_pairs=200",
            "--set", "data.max_valid_pairs=4", "--set", "data.vocab_size=300", "--set", "model.embed_dim=32",
            "--set", "model.ffn_dim=64", "--set", "task_options.final_beam_size=1"]
    commands = [["train", "quickstart", *tiny], ["translate", "--checkpoint", "runs/quickstart", "And God said."]]
    done = subprocess.run(
        [sys.executable, "-c", f"BLOCKED = {sorted(blocked)!r}" + BLOCKER, json.dumps(commands)], cwd=tmp_path,
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sacreBLEU" in done.stdout and done.stdout.strip().splitlines()[-1], done.stdout


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)\n```", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.S)


def _tiny_hf_directories(root: Path) -> None:
    """The ``path/to/hf-*-dir`` folders the README loads: tiny random Hugging Face models, saved as safetensors."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    models = {
        "hf-marian-dir": transformers.MarianMTModel(transformers.MarianConfig(
            vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
            pad_token_id=63, decoder_start_token_id=63, eos_token_id=0, forced_eos_token_id=None)),
        "hf-gpt2-dir": transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=50257, n_positions=64, n_embd=16, n_layer=1, n_head=2, eos_token_id=50256,
            bos_token_id=50256)),
        "hf-bert-dir": transformers.BertModel(transformers.BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=32)),
        "hf-vit-dir": transformers.ViTForImageClassification(transformers.ViTConfig(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32,
            patch_size=8, num_labels=3)),
    }
    for name, model in models.items():
        model.save_pretrained(root / "path" / "to" / name)


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    """Every Python block of the README runs as printed (in a scratch folder, with tiny stand-ins for its paths)."""
    blocks = readme_python_blocks()
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FORMERS_DATA_DIR", str(tmp_path / "data"))  # the shipped GPT-2 files unpack here
    if any("timm" in b or "path/to/hf-" in b for b in blocks):
        pytest.importorskip("timm")
        _tiny_hf_directories(tmp_path)
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), {"__name__": f"readme_block_{i + 1}"})
        except Exception as e:  # noqa: BLE001 (name the block that failed)
            raise AssertionError(f"README python block {i + 1} fails: {type(e).__name__}: {e}\n{block}") from e
    out = capsys.readouterr().out
    assert "torch.Size([2, " in out  # the forward pass printed (B, T, V)


def test_readme_tables_are_whole():
    """A Markdown table ends at a blank line: every table starts with a header and its |---| row, none is cut."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            assert i + 1 < len(lines) and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1]), (
                f"README.md line {i + 1} starts a table without a header row: {line[:80]!r}"
            )
