"""Self-attention against recurrence on one GPU: the ``multi30k-en-de`` Transformer recipe and its LSTM twin.

Both recipes share data (Multi30k en->de, joint BPE 10k), optimizer, precision (bf16) and
the 6-minute training budget; they differ in the model (``multi30k-en-de-lstm``: Luong-attention LSTM,
34.5M parameters; ``multi30k-en-de``: pre-norm Transformer, 36.7M) and in the batch each trains best with in the
budget (Transformer 16,384 tokens, its steps replayed as CUDA graphs; LSTM 8,192 tokens, eager). Each recipe is trained in turn, alone on the GPU,
by the same code as ``formers train``, and measured as:

- BLEU on val: sacreBLEU of the recipe's own final report (beam 4, alpha 0.6, all 1,014 sentences) for the final,
  best and averaged weights;
- training target tokens/s: the median of the Trainer's logged ``tokens_per_s`` rows (a row whose window holds an
  evaluation or a checkpoint is slower; the median ignores those), and the steps taken in the budget;
- decoding sentences/s: the run's final weights translating every val sentence in float32 with beam 4 and greedily,
  batched by source length as ``formers translate`` does (``Translator``), timed after a warm-up batch.

Run on a CUDA machine from the repository root (about 8 minutes per recipe; ``--recipes`` runs one at a time and
merges into the same JSON, for machines that limit a command's time):

    PYTHONPATH=src python benchmarks/rnn_vs_transformer.py [--data-dir DIR_WITH_multi30k] [--recipes NAME,...]

Writes ``benchmarks/results/rnn_vs_transformer_<gpu>.json`` (and a copy in ``$OUT`` when set) and prints a table.
``--smoke`` runs the same code on CPU at a tiny size on the embedded Bible corpus (a few steps each) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from formers.data.corpora import load_corpus_split
from formers.data.tokenizers import SubwordTokenizer
from formers.hub import from_pretrained
from formers.inference.translate import Translator
from formers.recipes.recipe import load_recipe
from formers.recipes.run import run_recipe
from formers.tasks.metrics import corpus_bleu

RECIPES = {"transformer": "multi30k-en-de", "lstm": "multi30k-en-de-lstm"}
RESULTS = Path(__file__).resolve().parent / "results"

SMOKE_DATA = {  # the embedded Bible corpus, a few hundred pairs, a few steps: checks the script, measures nothing
    "data.corpus": "bible-en-es", "data.tgt_lang": "es", "data.valid_split": "valid", "data.vocab_size": 300,
    "data.max_len": 32, "data.max_tokens": 512, "data.max_train_pairs": 200, "data.max_valid_pairs": 6,
    "train.max_minutes": None, "train.max_steps": 4, "train.save_every": 2, "train.eval_every": 2,
    "train.log_every": 1, "train.precision": "fp32", "train.device": "cpu", "task_options.average_last": 2,
    "task_options.max_bleu_sentences": 2, "optim.warmup_steps": 2,
}
SMOKE_MODEL = {
    "transformer": {"model.embed_dim": 32, "model.ffn_dim": 64, "model.num_heads": 2, "model.num_encoder_layers": 1,
                    "model.num_decoder_layers": 1},
    "lstm": {"model.embed_dim": 16, "model.hidden_dim": 32, "model.num_encoder_layers": 1,
             "model.num_decoder_layers": 1},
}


def training_speed(run_dir: Path) -> dict[str, float]:
    """Median target tokens/s over the logged rows (the first two, warm-up, left out) and the steps taken."""
    with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("tokens_per_s")]
    speeds = [float(r["tokens_per_s"]) for r in rows]
    kept = speeds[2:] if len(speeds) > 4 else speeds
    return {
        "train_target_tokens_per_s_median": round(statistics.median(kept), 1) if kept else float("nan"),
        "train_log_rows": len(speeds),
        "train_steps_logged": int(float(rows[-1]["step"])) if rows else 0,
    }


def decoding_speed(run_dir: Path, sources: list[str], references: list[str], device: torch.device) -> dict:
    """Sentences/s and BLEU of the run's final weights decoding ``sources`` with beam 4 and greedily (float32)."""
    tokenizer = SubwordTokenizer.load(run_dir / "tokenizer.json")
    model = from_pretrained(run_dir, device=device)
    out = {}
    for name, beam in (("beam4", 4), ("greedy", 1)):
        translator = Translator(model, tokenizer, beam_size=beam, alpha=0.6)
        with torch.inference_mode():
            translator.translate(sources[:32])  # warm-up: kernels, cuDNN plans, allocator
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            hyps = translator.translate(sources)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
        out[name] = {
            "sentences": len(sources),
            "seconds": round(seconds, 3),
            "sentences_per_s": round(len(sources) / seconds, 1),
            "bleu": round(corpus_bleu(hyps, references), 2),
        }
    return out


def run_one(key: str, args: argparse.Namespace, work: Path) -> dict:
    """Trains recipe ``key`` into ``work/key`` and measures it."""
    overrides: dict = {"train.progress_bar": False, "train.tensorboard": False}
    if args.data_dir:  # the folder holding multi30k/, or multi30k/ itself
        folder = Path(args.data_dir)
        overrides["data.data_dir"] = str(folder / "multi30k" if (folder / "multi30k").is_dir() else folder)
    if args.minutes is not None:
        overrides["train.max_minutes"] = args.minutes
    if args.smoke:
        overrides.update(SMOKE_DATA)
        overrides.update(SMOKE_MODEL[key])
    recipe = load_recipe(RECIPES[key], overrides)
    run_dir = work / key
    if run_dir.exists():
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    results = run_recipe(recipe, run_dir)
    wall = time.perf_counter() - start
    device = torch.device(recipe.train.device if recipe.train.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    data = recipe.data
    sources, references = load_corpus_split(data["corpus"], data["valid_split"], data["src_lang"], data["tgt_lang"],
                                            data.get("data_dir"))
    if data.get("max_valid_pairs"):
        sources, references = sources[: data["max_valid_pairs"]], references[: data["max_valid_pairs"]]
    model = from_pretrained(run_dir)
    return {
        "recipe": recipe.name,
        "model": recipe.model["name"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_minutes_budget": recipe.train.max_minutes,
        "run_wall_s": round(wall, 1),
        "steps": results["steps"],
        **training_speed(run_dir),
        "bleu_val": {k: v for k, v in results.items() if k.startswith("bleu_")},
        "decoding_val_fp32": decoding_speed(run_dir, sources, references, device),
    }


def hardware() -> str:
    if torch.cuda.is_available():
        cudnn = torch.backends.cudnn.version()
        return f"1x {torch.cuda.get_device_name()} (torch {torch.__version__}, cuDNN {cudnn})"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores (torch {torch.__version__})"


def print_table(report: dict) -> None:
    print(f"\n{'':<12} {'params':>8} {'steps':>6} {'train tok/s':>12} {'BLEU final':>10} {'BLEU avg':>9} "
          f"{'beam4 sent/s':>13} {'greedy sent/s':>14}")
    for key, r in report["runs"].items():
        bleu = r["bleu_val"]
        avg = next((v for k, v in bleu.items() if k.startswith("bleu_averaged")), float("nan"))
        dec = r["decoding_val_fp32"]
        print(f"{key:<12} {r['parameters'] / 1e6:>7.1f}M {r['steps']:>6} {r['train_target_tokens_per_s_median']:>12.0f} "
              f"{bleu.get('bleu_final', float('nan')):>10.2f} {avg:>9.2f} {dec['beam4']['sentences_per_s']:>13.1f} "
              f"{dec['greedy']['sentences_per_s']:>14.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="transformer,lstm", help=f"comma-separated keys of {sorted(RECIPES)}")
    parser.add_argument("--data-dir", default=os.environ.get("FORMERS_DATA_DIR"),
                        help="folder holding multi30k/ (default: $FORMERS_DATA_DIR, else ../shared/data)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default: benchmarks/results/rnn_vs_transformer_<gpu>.json; --smoke needs it)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training budget of every recipe (default: the recipes' own, 6 minutes)")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run on the Bible corpus: checks the script")
    args = parser.parse_args()
    keys = [k.strip() for k in args.recipes.split(",") if k.strip()]
    unknown = sorted(set(keys) - set(RECIPES))
    if unknown:
        raise SystemExit(f"--recipes: unknown {unknown}; choose from {sorted(RECIPES)}")
    if args.smoke and args.out is None:
        raise SystemExit("--smoke writes no result into the repository: give --out PATH")
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("this benchmark measures a GPU; use --smoke to check it on a CPU")
    gpu = "cpu"
    if torch.cuda.is_available():  # "NVIDIA H100 80GB HBM3" -> h100
        name = torch.cuda.get_device_name()
        gpu = next((w.lower() for w in name.split() if w[:1] in "HABL" and w[1:2].isdigit()), name.split()[-1].lower())
    out = args.out or RESULTS / f"rnn_vs_transformer_{gpu}.json"
    report = json.loads(out.read_text()) if out.is_file() else {"runs": {}}  # merge runs made one at a time
    report.update({
        "hardware": hardware(),
        "command": "PYTHONPATH=src python benchmarks/rnn_vs_transformer.py --recipes " + ",".join(keys)
                   + (f" --minutes {args.minutes:g}" if args.minutes is not None else "") + (" --smoke" if args.smoke else ""),
        "protocol": "each recipe trained alone on the device, as `formers train`; BLEU from its final report (beam 4, "
                    "alpha 0.6, whole val set); training speed: median logged target tokens/s; decoding: final "
                    "weights in float32, whole val set, Translator batching (4096 source tokens)",
        "date": date.today().isoformat(),
    })
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="rnn_vs_transformer_"))
    for key in keys:
        print(f"== {key}: {RECIPES[key]}", flush=True)
        report["runs"][key] = run_one(key, args, work)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")  # after each run: partial results survive
        copy = Path(os.environ["OUT"]) / out.name if os.environ.get("OUT") else None
        if copy is not None and copy.resolve() != out.resolve():
            shutil.copy(out, copy)
    runs = report["runs"]
    if {"transformer", "lstm"} <= set(runs):
        t, r = runs["transformer"], runs["lstm"]
        report["transformer_over_lstm"] = {
            "train_target_tokens_per_s": round(t["train_target_tokens_per_s_median"]
                                               / r["train_target_tokens_per_s_median"], 2),
            "decoding_beam4_sentences_per_s": round(t["decoding_val_fp32"]["beam4"]["sentences_per_s"]
                                                    / r["decoding_val_fp32"]["beam4"]["sentences_per_s"], 2),
            "decoding_greedy_sentences_per_s": round(t["decoding_val_fp32"]["greedy"]["sentences_per_s"]
                                                     / r["decoding_val_fp32"]["greedy"]["sentences_per_s"], 2),
        }
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        copy = Path(os.environ["OUT"]) / out.name if os.environ.get("OUT") else None
        if copy is not None and copy.resolve() != out.resolve():
            shutil.copy(out, copy)
    print_table(report)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
