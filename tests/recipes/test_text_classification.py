from __future__ import annotations

import json
import random

import torch
import yaml

import formers
from formers.cli.main import main
from formers.data.tokenizers.wordpiece import WordPieceTokenizer
from formers.hub import resolve_checkpoint_dir
from formers.models.bert import (
    BertConfig,
    BertModel,
)

TINY = dict(embed_dim=32, num_heads=2, num_layers=2, ffn_dim=64, max_seq_len=32)


def _tokenizer(tmp_path, words):
    tokenizer = WordPieceTokenizer.train([" ".join(words)] * 3, vocab_size=120, min_frequency=1)
    return tokenizer, tokenizer.save(tmp_path / "tok")


def test_token_classification_recipe_learns_entities_from_jsonl(tmp_path, capsys):
    # A synthetic NER set: names and cities from closed lists in carrier sentences.
    names, cities = ["anna", "boris", "carla", "dmitri"], ["paris", "oslo", "lima", "quito"]
    verbs = ["visited", "left", "loves", "saw"]
    rng = random.Random(0)

    def record():
        name, city, verb = rng.choice(names), rng.choice(cities), rng.choice(verbs)
        if rng.random() < 0.5:
            return {"tokens": [name, verb, city], "tags": ["B-PER", "O", "B-LOC"]}
        return {"tokens": ["in", city, name, verb, "it"], "tags": ["O", "B-LOC", "B-PER", "O", "O"]}

    for split, n in (("train", 80), ("valid", 24)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(record()) + "\n" for _ in range(n)))
    tokenizer, _ = _tokenizer(tmp_path, names + cities + verbs + ["in", "it"])
    torch.manual_seed(0)
    tok_dir = formers.save_pretrained(BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **TINY)), tmp_path / "pre")
    tokenizer.save(tok_dir)  # a pretrained directory holds its vocabulary
    recipe = {
        "name": "tiny-ner", "task": "token_classification",
        "model": {"pretrained": str(tok_dir), "dropout": 0.0},
        "data": {"train_file": str(tmp_path / "train.jsonl"), "valid_file": str(tmp_path / "valid.jsonl"),
                 "max_len": 16, "batch_size": 8},
        "optim": {"name": "adamw", "lr": 0.003, "schedule": "constant", "warmup_steps": 0},
        "train": {"max_steps": 50, "log_every": 10, "progress_bar": False, "tensorboard": False, "eval_every": 25,
                  "best_metric": "entity_f1", "best_mode": "max"},
    }
    (tmp_path / "ner.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", str(tmp_path / "ner.yaml"), "--run-dir", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["valid_entity_f1_best"] > 0.9 and results["valid_accuracy_best"] > 0.9, results
    labels = json.loads((resolve_checkpoint_dir(tmp_path / "run") / "labels.json").read_text())
    assert labels == {"labels": ["B-LOC", "B-PER", "O"]}
