from __future__ import annotations

import json
import math

import pytest
import yaml

import formers
from formers.cli.main import main
from formers.data.tokenizers.char import CharTokenizer
from formers.recipes.recipe import load_recipe
from formers.recipes.run import run_recipe

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
) * 40


def test_causal_lm_recipe_end_to_end_from_a_text_file(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT, encoding="utf-8")
    run = tmp_path / "run"
    code = main(["train", "gpt-shakespeare-char-cpu", "--run-dir", str(run), "--set", f"data.text={text}",  # README's
                 "--set", "data.block_size=32", "--set", "train.max_steps=60",
                 "--set", "train.eval_every=30", "--set", "train.save_every=30", "--set", "train.progress_bar=false",
                 "--set", "model.embed_dim=32", "--set", "task_options.sample_tokens=20", "--set", "optim.warmup_steps=5"])
    out = capsys.readouterr().out
    assert code == 0
    results = json.loads((run / "results.json").read_text())
    vocab = CharTokenizer.from_corpus(TEXT).vocab_size
    assert results["steps"] == 60 and results["val_loss_best"] < math.log(vocab) - 0.7  # uniform: log(vocab)
    assert "sample:" in out and (run / "sample.txt").is_file()
    model = formers.from_pretrained(run)
    assert model.config.vocab_size == vocab
    assert (run / "checkpoints" / "latest").is_file() and (run / "data" / "train.bin").is_file()


def test_a_data_source_on_the_command_line_replaces_the_recipes(tmp_path):
    recipe = load_recipe("gpt-shakespeare-char-cpu", {"data.text": "my.txt"})
    assert recipe.data["text"] == "my.txt" and "corpus" not in recipe.data and recipe.data["block_size"] == 64
    assert "corpus" not in load_recipe("gpt-shakespeare-char-cpu", {"data.prepared": "prep"}).data
    assert load_recipe("gpt-shakespeare-char-cpu", {"data.block_size": 32}).data["corpus"] == "tinyshakespeare"
    assert load_recipe("gpt-shakespeare-char-cpu", {"data.text": None}).data["corpus"] == "tinyshakespeare"
    spam = load_recipe("bert-finetune-spam-cpu", {"data.train_file": "a.csv", "data.valid_file": "b.csv"})
    assert "dataset" not in spam.data and spam.data["train_file"] == "a.csv"
    # a recipe file that names two sources is still refused
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump({"name": "both", "task": "causal_lm", "model": {"name": "gpt_mini"},
                                    "data": {"corpus": "tinyshakespeare", "text": "my.txt"}}))
    with pytest.raises(ValueError, match=r"exactly one of corpus, text or prepared; got \['corpus', 'text'\]"):
        run_recipe(load_recipe(str(both)), tmp_path / "run")
