from __future__ import annotations

import json
import math

import formers
from formers.cli.main import main
from formers.data.tokenizers.char import CharTokenizer

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
) * 40


def test_causal_lm_recipe_end_to_end_from_a_text_file(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT, encoding="utf-8")
    run = tmp_path / "run"
    code = main(["train", "gpt-shakespeare-char-cpu", "--run-dir", str(run), "--set", f"data.text={text}",
                 "--set", "data.corpus=null", "--set", "data.block_size=32", "--set", "train.max_steps=60",
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
