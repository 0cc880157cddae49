"""`formers train` checks the whole recipe before writing anything, seeds everything first, and keeps the run
directory's rules (a new run needs an empty one, a resumed run a checkpoint and the same recipe)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from formers.cli.main import main
from formers.recipes.recipe import list_recipes, load_recipe
from formers.recipes.run import RESUMABLE_KEYS, TASKS, resolve_recipe


def _digits_recipe(tmp_path: Path) -> Path:
    recipe = {
        "name": "digits-tiny",
        "task": "image_classification",
        "model": {"name": "vit_mini_28", "patch_size": 4, "embed_dim": 16, "num_layers": 1, "num_heads": 2},
        "data": {"dataset": "digits", "batch_size": 16, "eval_batch_size": 400},
        "task_options": {"crop_padding": 1},
        "optim": {"name": "adamw", "lr": 3e-3, "schedule": "constant", "warmup_steps": 0},
        "train": {"max_steps": 3, "log_every": 1, "device": "cpu", "progress_bar": False, "tensorboard": False},
    }
    path = tmp_path / "digits.json"
    path.write_text(json.dumps(recipe))
    return path


def _losses(run_dir: Path) -> list[str]:
    return [row["loss"] for row in csv.DictReader(open(run_dir / "metrics.csv")) if row["loss"]]


def test_the_same_command_twice_gives_the_same_losses(tmp_path: Path, capsys) -> None:
    recipe = _digits_recipe(tmp_path)
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "a")]) == 0
    torch.rand(7)  # whatever ran before must not matter: the model is built after seeding
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "b")]) == 0
    first = _losses(tmp_path / "a")
    assert len(first) == 3 and first == _losses(tmp_path / "b")
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "c"), "--seed", "1"]) == 0
    assert _losses(tmp_path / "c")[0] != first[0]  # the seed is what decides


TYPOS = [
    ("quickstart", "model.num_layerz=3", "model.num_layerz"),
    ("quickstart", "model.embed_dim=wide", "embed_dim"),
    ("quickstart", "model.name=transformer_tiniest", "unknown model name 'transformer_tiniest'"),
    ("quickstart", "data.vocab=3", "data.vocab"),
    ("quickstart", "data.corpus=files", "data.train_src"),
    ("quickstart", "task_options.beam=2", "task_options.beam"),
    ("quickstart", "optim.schedule=cosin", "recipe section 'optim'"),
    ("quickstart", "optim.warmup_steps=-1", "warmup_steps"),
    ("gpt-shakespeare-char-cpu", "model.n_layer=2", "model.n_layer"),
    ("gpt-shakespeare-char-cpu", "data.block=32", "data.block"),
    ("gpt-shakespeare-char-cpu", "data.corpus=wikipedia", "data.corpus must be 'tinyshakespeare'"),
    ("bert-pretrain-cpu", "model.num_layerz=2", "model.num_layerz"),
    ("bert-pretrain-cpu", "model.name=gpt_mini", "trains BERT variants"),
    ("bert-pretrain-cpu", "data.vocab=100", "data.vocab"),
    ("bert-finetune-spam-cpu", "model.dropoutt=0.2", "model.dropoutt"),
    ("bert-finetune-spam-cpu", "task_options.x=1", "takes no task_options"),
    ("digits-cpu", "data.dataset=mnist", "data.dataset must be"),
    ("digits-cpu", "task_options.mixup=0.2", "task_options.mixup"),
    ("multi30k-en-de", "model.embed_dimm=8", "model.embed_dimm"),
]


@pytest.mark.parametrize("recipe, override, message", TYPOS)
def test_a_typo_is_reported_first_and_nothing_is_written(
    tmp_path: Path, monkeypatch, capsys, recipe: str, override: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", recipe, "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # no run directory, no tokenizer, no data
    # next to an existing run the typo is what is reported, not the run directory's rule
    existing = tmp_path / "existing"
    (existing / "checkpoints").mkdir(parents=True)
    (existing / "checkpoints" / "latest").write_text("step_00000001\n")
    for extra in ([], ["--resume"]):
        assert main(["train", recipe, "--set", override, "--run-dir", str(existing), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "already holds checkpoints" not in err
    assert sorted(p.name for p in existing.rglob("*")) == ["checkpoints", "latest"]


_SECTIONS = ("model", "data", "task_options")
_key = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)


@settings(max_examples=80, deadline=None)
@given(recipe=st.sampled_from(sorted(list_recipes())), section=st.sampled_from(_SECTIONS), key=_key,
       value=st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none()))
def test_any_key_is_checked_before_anything_is_built(recipe: str, section: str, key: str, value) -> None:
    """A key set in a free-form section is either refused by name, or a real key that the resolved recipe records."""
    changed = load_recipe(recipe, {f"{section}.{key}": value})
    try:
        resolved = resolve_recipe(changed)
    except (TypeError, ValueError) as e:
        assert key in str(e) or "takes no task_options" in str(e), str(e)
    else:
        assert f"{section}.{key}" in resolved or any(k.startswith(f"{section}.{key}.") for k in resolved)


def test_resumable_keys_are_trainer_keys_that_exist() -> None:
    from dataclasses import fields

    from formers.training.trainer import TrainerConfig

    names = {f"train.{f.name}" for f in fields(TrainerConfig)}
    assert {k for k in RESUMABLE_KEYS if k.startswith("train.")} <= names
    # what decides the trained weights is never resumable
    for key in ("train.seed", "train.grad_accum_steps", "train.best_metric", "train.best_mode"):
        assert key not in RESUMABLE_KEYS
    for module in set(TASKS.values()):
        assert all(k.startswith("task_options.") for k in module.RESUMABLE)
