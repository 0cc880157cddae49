from __future__ import annotations

import json

import formers
from formers.cli.main import main
from formers.data.tokenizers.wordpiece import WordPieceTokenizer
from formers.hub import resolve_checkpoint_dir
from formers.models.bert import BertForMaskedLM

TINY = dict(embed_dim=32, num_heads=2, num_layers=2, ffn_dim=64, max_seq_len=32, dropout=0.0, attn_dropout=0.0)
# A tiny "corpus" whose masked words are predictable from their neighbours.
SENTENCES = [
    "the cat sat on the mat .", "the dog lay on the rug .", "a bird sang in the tree .",
    "the fish swam in the pond .", "a cow ate in the field .", "the king sat on the throne .",
]


def _corpus_file(tmp_path, repeats=30):
    docs = []
    for i in range(repeats):
        docs.append("\n".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(4)))
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def test_pretrain_recipe_end_to_end_then_fine_tune_from_the_run(tmp_path, capsys):
    corpus = _corpus_file(tmp_path, repeats=40)
    run = tmp_path / "pre"
    common = ["--set", "train.progress_bar=false", "--set", "train.tensorboard=false", "--set", "optim.warmup_steps=2"]
    code = main(["train", "bert-pretrain-cpu", "--run-dir", str(run), "--set", f"data.text={corpus}",
                 "--set", "data.corpus=null", "--set", "data.vocab_size=80", "--set", "data.min_frequency=1",
                 "--set", "data.heldout_every=4", "--set", "data.batch_size=8", "--set", "data.max_len=32",
                 "--set", "model.embed_dim=32", "--set", "model.ffn_dim=64", "--set", "train.max_steps=30",
                 "--set", "train.eval_every=15", "--set", "train.save_every=15", *common])
    out = capsys.readouterr().out
    assert code == 0 and "held-out MLM accuracy" in out and "fill-mask:" in out
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 30 and 0 <= results["mlm_accuracy_final"] <= 1
    assert results["perplexity_final"] < 80  # uniform guessing over the ~80-token vocabulary
    model = formers.from_pretrained(run)
    assert type(model) is BertForMaskedLM
    tokenizer = WordPieceTokenizer.from_directory(run / "checkpoints" / "best")
    assert tokenizer.vocab_size == model.config.vocab_size
    assert model.config.tokenizer["vocab_sha256"] == tokenizer.fingerprint

    # fine-tune the pre-trained run on a labelled CSV: is the sentence about an animal on a mat/rug?
    rows = [(s, "home" if ("mat" in s or "rug" in s) else "out") for s in SENTENCES] * 6
    for name in ("train", "valid"):
        (tmp_path / f"{name}.csv").write_text("sentence,where\n" + "".join(f"{s},{y}\n" for s, y in rows))
    fine = tmp_path / "fine"
    code = main(["train", "bert-finetune-spam-cpu", "--run-dir", str(fine), "--set", f"model.pretrained={run}",
                 "--set", "data.dataset=null", "--set", f"data.train_file={tmp_path / 'train.csv'}",
                 "--set", f"data.valid_file={tmp_path / 'valid.csv'}", "--set", "data.text_column=sentence",
                 "--set", "data.label_column=where", "--set", "data.max_train_examples=null",
                 "--set", "data.max_len=16",
                 "--set", "data.batch_size=6", "--set", "train.max_steps=60", "--set", "model.dropout=0.0",
                 "--set", "optim.lr=0.003", *common])
    capsys.readouterr()
    assert code == 0
    results = json.loads((fine / "results.json").read_text())
    assert results["valid_accuracy_final"] == 1.0
    saved = resolve_checkpoint_dir(fine)
    assert json.loads((saved / "labels.json").read_text()) == {"labels": ["home", "out"]}
    assert (saved / "vocab.txt").read_text() == (run / "tokenizer" / "vocab.txt").read_text()
