from __future__ import annotations

import json

import numpy as np
import pytest

from formers.cli.main import main
from formers.inference.word_vectors import WordVectors
from formers.recipes.recipe import list_recipes, load_recipe

# Two word families that share contexts: after training, words of a family are each other's neighbours.
WORDS_A, WORDS_B = ["cat", "dog", "cow", "pig"], ["red", "blue", "green", "pink"]


def _text(path, lines: int = 600) -> str:
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(lines):
        family, verb = (WORDS_A, "runs") if rng.random() < 0.5 else (WORDS_B, "shines")
        picks = rng.choice(family, 3)
        rows.append(f"the {picks[0]} {verb} and the {picks[1]} {verb} near a {picks[2]}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def _evaluation_files(tmp_path) -> tuple[str, str]:
    analogies = tmp_path / "questions.txt"
    analogies.write_text(": animals\ncat dog cow pig\ndog cow pig cat\n: gram-colours\nred blue green pink\n")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("# word1 word2 score\ncat\tdog\t9\nred\tblue\t9\ncat\tred\t1\ndog\tgreen\t1\ncow\tpig\t8\n")
    return str(analogies), str(pairs)


def _train(tmp_path, *extra: str) -> int:
    analogies, pairs = _evaluation_files(tmp_path)
    return main([
        "train", "word2vec-cbow-cpu", "--run-dir", str(tmp_path / "run"), "--set", "data.corpus=null",
        "--set", f"data.text={_text(tmp_path / 'corpus.txt')}", "--set", "data.min_count=2",
        "--set", "data.words_per_batch=2000", "--set", "model.embed_dim=16", "--set", "model.sample=0",
        "--set", "task_options.words_per_update=50", "--set", f"task_options.analogies={analogies}",
        "--set", f"task_options.pairs={pairs}", "--set", "task_options.restrict_vocab=100",
        "--set", "train.max_epochs=3", "--set", "task_options.alpha=0.05", *extra,
    ])


def test_the_word2vec_recipes_load():
    recipes = list_recipes()
    for name in ("word2vec-skipgram", "word2vec-cbow", "word2vec-cbow-cpu"):
        recipe = recipes[name]
        assert recipe.task == "word2vec" and recipe.optim.name == "sgd" and recipe.train.max_steps is None
    assert load_recipe("word2vec-skipgram").model["name"] == "word2vec_skipgram"


def test_recipe_trains_reports_and_writes_vectors_gensim_reads(tmp_path, capsys):
    assert _train(tmp_path) == 0
    out = capsys.readouterr().out
    assert "final: analogy_accuracy" in out and "vectors:" in out
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["recipe"] == "word2vec-cbow-cpu" and results["pairs_spearman"] > 0.5, results
    vectors = WordVectors.load(run / "vectors.bin")
    assert set(dict(vectors.most_similar("cat", topn=3))) == {"dog", "cow", "pig"}
    from_checkpoint = WordVectors.load(run)  # the run directory's latest checkpoint and its vocab.txt
    assert from_checkpoint.words == vectors.words
    np.testing.assert_array_equal(from_checkpoint.vectors.numpy(), vectors.vectors.numpy())
    assert WordVectors.load(run / "vectors").words == vectors.words
    keyed = pytest.importorskip("gensim.models.keyedvectors")
    kv = keyed.KeyedVectors.load_word2vec_format(str(run / "vectors.bin"), binary=True)
    assert kv.index_to_key == vectors.words and np.array_equal(kv.vectors, vectors.vectors.numpy())
    kv = keyed.KeyedVectors.load_word2vec_format(str(run / "vectors.txt"), binary=False)
    assert np.array_equal(kv.vectors, vectors.vectors.numpy())


def test_cli_queries_and_evaluates_the_vectors(tmp_path, capsys):
    assert _train(tmp_path) == 0
    capsys.readouterr()
    vectors = str(tmp_path / "run" / "vectors.bin")
    assert main(["similar", "--vectors", vectors, "cat", "red", "--topn", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cat:\n") and "red:" in out and len(out.strip().splitlines()) == 8
    assert main(["analogy", "--vectors", str(tmp_path / "run"), "cat", "dog", "red", "--topn", "2"]) == 0
    assert capsys.readouterr().out.startswith("cat : dog :: red : ?\n")
    analogies, pairs = _evaluation_files(tmp_path)
    assert main(["evaluate", "--vectors", vectors, "--analogies", analogies, "--pairs", pairs]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["analogies"]["evaluated"] == 3 and report["pairs"]["evaluated"] == 5
    assert report["analogies"]["sections"]["animals"][1] == 2
    assert main(["similar", "--vectors", vectors, "zebra"]) == 2
    assert "word 'zebra' is not in the vocabulary" in capsys.readouterr().err
    assert main(["evaluate", "--vectors", vectors]) == 2
    assert "--vectors needs --analogies and/or --pairs" in capsys.readouterr().err
    assert main(["evaluate"]) == 2
    assert "evaluate needs --checkpoint (a translation model) or --vectors" in capsys.readouterr().err


def test_recipe_rejects_an_optimizer_that_would_change_the_update(tmp_path, capsys):
    assert _train(tmp_path, "--set", "optim.lr=0.025") == 2
    assert "word2vec recipes need optim.lr=1.0" in capsys.readouterr().err
    assert _train(tmp_path, "--set", "train.max_grad_norm=1.0") == 2
    assert "need train.max_grad_norm=0.0" in capsys.readouterr().err


def test_recipe_reports_a_corpus_without_frequent_words(tmp_path, capsys):
    (tmp_path / "rare.txt").write_text("a b c\n", encoding="utf-8")
    code = main(["train", "word2vec-cbow-cpu", "--run-dir", str(tmp_path / "run"), "--set", "data.corpus=null",
                 "--set", f"data.text={tmp_path / 'rare.txt'}"])
    assert code == 2
    assert "no word of" in capsys.readouterr().err
