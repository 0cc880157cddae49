"""word2vec quality: formers against gensim 4 on the same corpus, tokenization and hyperparameters, side by side.

Trains CBOW and skip-gram with gensim's defaults (100-d, window 5, 5 negatives, sample 1e-3, min_count 5,
alpha 0.025 -> 0.0001, ``--epochs`` 5) on the shared English corpus (``$FORMERS_DATA_DIR/word2vec`` or
``../shared/data/word2vec``; lower-cased runs of a-z, one line per sentence), with each of ``--seeds``, both
libraries in this one run on this one machine. Scores: analogy accuracy on Google's ``questions-words.txt`` among
the 30,000 most frequent words (and its semantic / syntactic split) and WordSim-353 Spearman, each library's vectors
scored by the same evaluator (formers' ``WordVectors``, which gives gensim's own numbers: see its tests); reports
per-seed values, means over seeds and formers minus gensim in points. The issue's target: within 1 point.

    PYTHONPATH=src python benchmarks/word2vec_quality.py --device cuda                 # the full comparison
    PYTHONPATH=src python benchmarks/word2vec_quality.py --device cpu --threads 1 --workers 2 --archs cbow
    PYTHONPATH=src python benchmarks/word2vec_quality.py --smoke                        # a CPU check of the script

Writes ``benchmarks/results/word2vec_quality_<tag>.json`` (and a copy in ``$OUT`` when set) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
from datetime import date
from pathlib import Path

import torch
from word2vec_runs import (
    Settings,
    evaluate,
    load_setup,
    machine,
    scratch_dir,
    train_formers,
    train_gensim,
    write_corpus,
)

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("analogy", "semantic", "syntactic", "wordsim_spearman")


def summarize(runs: list[dict]) -> dict[str, float]:
    """Mean of each metric (and of words/s) over seeds."""
    keys = [*METRICS, "words_per_s"]
    return {k: round(statistics.mean(r[k] for r in runs), 4) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with corpus.txt.gz and eval/ (default: search)")
    parser.add_argument("--archs", nargs="+", default=["cbow", "skipgram"], choices=["cbow", "skipgram"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="gensim threads (default: every core)")
    parser.add_argument("--words-per-batch", type=int, default=None, help="default: 1M on CUDA, 100k on CPU")
    parser.add_argument("--words-per-update", type=int, default=None, help="default: 1000 on CUDA, 250 on CPU")
    parser.add_argument("--max-words", type=int, default=None, help="train on the first N words only")
    parser.add_argument("--smoke", action="store_true", help="200k words, 1 epoch, 1 seed, on the CPU")
    parser.add_argument("--tag", default=None, help="file name tag (default: the device)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/...)")
    args = parser.parse_args()
    if args.smoke:
        args.device, args.epochs, args.seeds = "cpu", 1, args.seeds[:1]
        args.max_words = args.max_words or 200_000
    folder, sentences, words_per_batch = load_setup(args)
    tag = args.tag or ("smoke" if args.smoke else "cuda" if args.device.startswith("cuda") else "cpu")
    out = args.out or RESULTS / f"word2vec_quality_{tag}.json"
    report = {
        "benchmark": "word2vec quality: formers vs gensim, same corpus, tokenization and hyperparameters",
        "date": date.today().isoformat(),
        "machine": machine(args.device, torch.get_num_threads(), args.workers),
        "corpus": {"path": str(folder / "corpus.txt.gz"), "sentences": len(sentences),
                   "words": sum(map(len, sentences)), "tokenizer": "lowercase_letters"},
        "evaluation": "questions-words.txt among the 30,000 most frequent words; wordsim353.tsv (OOV pairs skipped)",
        "formers_options": {"words_per_batch": words_per_batch, "words_per_update": args.words_per_update},
        "seeds": args.seeds,
        "runs": {},
    }
    eval_dir = folder / "eval"
    with scratch_dir() as tmp:
        text = write_corpus(sentences, Path(tmp))
        for arch in args.archs:
            settings = Settings(architecture=arch, epochs=args.epochs)
            runs: dict = {"settings": vars(settings), "formers": [], "gensim": []}
            report["runs"][arch] = runs
            for seed in args.seeds:
                vectors, timing = train_formers(text, settings, seed, args.device, words_per_batch,
                                                args.words_per_update, Path(tmp) / f"{arch}-{seed}")
                runs["formers"].append({"seed": seed, **timing, **evaluate(vectors, eval_dir, 30_000)})
                vectors, timing = train_gensim(sentences, settings, seed, args.workers)
                runs["gensim"].append({"seed": seed, **timing, **evaluate(vectors, eval_dir, 30_000)})
                print(json.dumps({arch: {"formers": runs["formers"][-1], "gensim": runs["gensim"][-1]}}), flush=True)
                shutil.rmtree(Path(tmp) / f"{arch}-{seed}", ignore_errors=True)
            ours, theirs = summarize(runs["formers"]), summarize(runs["gensim"])
            runs["mean"] = {"formers": ours, "gensim": theirs,
                            "formers_minus_gensim_points": {k: round(100 * (ours[k] - theirs[k]), 2) for k in METRICS}}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")  # after each architecture
    copy = Path(os.environ["OUT"]) / out.name if os.environ.get("OUT") else None
    if copy is not None and copy.resolve() != out.resolve():  # --out may already be under $OUT
        shutil.copy(out, copy)
    print(f"\nmeans over seeds {args.seeds} ({args.epochs} epochs; written to {out})")
    print(f"{'arch':<10}{'library':<9}" + "".join(f"{m:>18}" for m in METRICS))
    for arch, runs in report["runs"].items():
        for library in ("formers", "gensim"):
            print(f"{arch:<10}{library:<9}" + "".join(f"{runs['mean'][library][m]:>18.4f}" for m in METRICS))
        print(f"{'':<10}{'diff pts':<9}" + "".join(
            f"{runs['mean']['formers_minus_gensim_points'][m]:>18.2f}" for m in METRICS))


if __name__ == "__main__":
    main()
