"""``formers classify-text`` on a tiny text classifier trained end to end with ``formers train``."""

from __future__ import annotations

import io
import json
import random
import sys

import pytest
import torch
import yaml

import formers
from formers.cli.main import main
from formers.data.tokenizers.wordpiece import WordPieceTokenizer
from formers.inference.text_classification import TextClassifier, classify_texts
from formers.models.bert import BertConfig, BertModel

POSITIVE, NEGATIVE = ["good", "great", "lovely", "fine", "happy"], ["bad", "awful", "poor", "sad", "ugly"]
FILLER = ["the", "film", "was", "very", "and", "a", "day", "it", "food"]


def _text(rng: random.Random, words: list[str]) -> str:
    return " ".join(rng.sample(FILLER, 3) + rng.sample(words, 2))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify-text")
    rng = random.Random(0)
    for split, n in (("train", 96), ("valid", 24)):
        rows = [{"text": _text(rng, POSITIVE if i % 2 else NEGATIVE), "label": "pos" if i % 2 else "neg"}
                for i in range(n)]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = WordPieceTokenizer.train([" ".join(POSITIVE + NEGATIVE + FILLER)] * 3, vocab_size=100, min_frequency=1)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, embed_dim=32, num_heads=2, num_layers=1, ffn_dim=64,
                        max_seq_len=16)
    pretrained = formers.save_pretrained(BertModel(config), root / "pretrained")
    tokenizer.save(pretrained)
    recipe = {
        "name": "tiny-sentiment", "task": "text_classification",
        "model": {"pretrained": str(pretrained), "dropout": 0.0},
        "data": {"train_file": str(root / "train.jsonl"), "valid_file": str(root / "valid.jsonl"), "max_len": 16,
                 "batch_size": 16},
        "optim": {"name": "adamw", "lr": 0.005, "schedule": "constant", "warmup_steps": 0},
        "train": {"max_steps": 40, "log_every": 20, "progress_bar": False, "tensorboard": False},
    }
    (root / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", str(root / "tiny.yaml"), "--run-dir", str(root / "run")]) == 0
    assert json.loads((root / "run" / "results.json").read_text())["valid_accuracy_final"] >= 0.9
    return root / "run"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_text_labels_new_texts(run, capsys):
    capsys.readouterr()
    code, out, err = run_cli(capsys, "classify-text", "--checkpoint", str(run), "what a lovely happy day",
                             "the food was awful and sad")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "what a lovely happy day" and lines[1].endswith("pos") and lines[2].endswith("neg")
    assert lines[3] == "the food was awful and sad" and lines[4].endswith("neg")
    probs = [float(line.split()[1].rstrip("%")) for line in (lines[1], lines[2])]
    assert probs[0] > 50 and abs(sum(probs) - 100) < 0.02
    # the library call gives the same ranking; stdin and --file work too
    ranked = classify_texts(run, ["what a lovely happy day"], top_k=1)
    assert ranked[0][0][0] == "pos" and len(ranked[0]) == 1


def test_classify_text_reads_stdin_and_files(run, capsys, tmp_path, monkeypatch):
    (tmp_path / "in.txt").write_text("the film was great fine\nthe food was poor ugly\n")
    code, out, _ = run_cli(capsys, "classify-text", "--checkpoint", str(run), "--file", str(tmp_path / "in.txt"),
                           "--top-k", "1")
    assert code == 0 and out.splitlines()[1].endswith("pos") and out.splitlines()[3].endswith("neg")
    monkeypatch.setattr(sys, "stdin", io.StringIO("the day was great happy\n"))  # training texts: 3 fillers, 2 cues
    code, out, _ = run_cli(capsys, "classify-text", "--checkpoint", str(run), "--top-k", "1")
    assert code == 0 and out.splitlines()[1].endswith("pos")


def test_classify_text_refuses_clearly(run, capsys):
    long = " ".join(["good"] * 40)  # 42 tokens with [CLS]/[SEP], max_seq_len 16
    cases = [
        (["   "], "text 0 is empty"),
        ([long], "longer than the model's max_seq_len=16 tokens (text 0: 42 tokens)"),
        (["good", "--top-k", "0"], "top_k must be an int >= 1"),
        (["--checkpoint", str(run.parent / "pretrained"), "good"], "labels.json"),
    ]
    for argv, message in cases:
        checkpoint = [] if "--checkpoint" in argv else ["--checkpoint", str(run)]
        code, out, err = run_cli(capsys, "classify-text", *checkpoint, *argv)
        assert code == 2 and out == "" and message in err and err.count("\n") == 1, (argv, err)
    code, out, _ = run_cli(capsys, "classify-text", "--checkpoint", str(run), "--truncate", long)
    assert code == 0 and out.splitlines()[1].endswith("pos")


def test_a_model_that_is_not_a_text_classifier_is_refused(run):
    classifier = TextClassifier.from_pretrained(run)
    with pytest.raises(ValueError, match="needs a BERT sequence classifier"):
        TextClassifier(formers.create_model("gpt_mini", vocab_size=50, eos_id=None), classifier.tokenizer,
                       classifier.labels)
