"""Every speed comparison of issue 15 in one run on one machine, into one JSON the README's speed table comes from.

Each benchmark is one of the scripts beside this file, run as a subprocess (``PYTHONPATH=src``, the same Python)
with its own timeout: a benchmark that fails or runs out of time is recorded as such (exit code, the tail of its
output) and the others still run. The JSON holds the machine (GPU name), the versions (Python, torch, CUDA, cuDNN,
transformers, timm, gensim, the formers commit), the date, the command, and per benchmark: its status, seconds, the
command it ran, its whole JSON (``result``) and the rows of the README table (``rows``: the workload, formers' figure,
the peer's, their ratio, issue 15's target and whether it is met). The file is rewritten after every benchmark, so
the benchmarks that finished survive an interrupted run.

The benchmarks (``--only`` / ``--skip`` take these names, or ``step_profile`` for every recipe profile):

- ``generate``: GPT-2 124M ``model.generate`` greedy batch 1 / 32 and sampling against Hugging Face ``generate``;
  beam-4 translation with the ``multi30k-en-de`` model size against a ``MarianMTModel`` (``generate_speed.py``).
- ``multi30k_train``: the ``multi30k-en-de`` recipe trained as ``formers train`` runs it for ``--multi30k-minutes``
  minutes; median logged target tokens/s from its metrics.csv (``rnn_vs_transformer.py --recipes transformer``).
- ``transformer_base``: Transformer-base training against ``nn.Transformer``, both compiled (``transformer_speed.py``).
- ``vit``, ``swin``: ViT-B/16 and Swin-T training and inference against timm, both compiled (``vit_speed.py``,
  ``swin_speed.py --compile``).
- ``gpt2_train``: GPT-2 124M training tokens/s against Hugging Face, both compiled, and formers alone at batch 64
  (llm.c's micro-batch; ``gpt2_speed.py --batch-sweep 64``).
- ``profile-<recipe>``: the GPU-busy fraction of each GPU recipe's Trainer steps (``step_profile.py <recipe>``).
- ``detr``: DETR-R50 training against Hugging Face's ``DetrForObjectDetection`` (``detr_speed.py --compile``).
- ``word2vec``: word2vec CBOW and skip-gram words/s against gensim (``word2vec_speed.py``).
- ``linear_ce``: the chunked linear + cross-entropy against ``F.cross_entropy(F.linear(...))`` at GPT-2 sizes, both
  compiled: rows/s, with each one's peak memory (``linear_cross_entropy.py --compile``).

Run on one GPU machine from the repository root (data in ``$FORMERS_DATA_DIR``):
``python benchmarks/run_all.py`` writes ``benchmarks/results/all_<gpu>.json``; then
``python benchmarks/readme_tables.py benchmarks/results/all_<gpu>.json`` puts its table into the README.
``--smoke`` runs every benchmark's CPU mode (tiny models; the recipe profiles have none and are skipped) into a
temporary folder unless ``--out`` is given: it checks the harness end to end and measures nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
RECIPES = REPO / "src" / "formers" / "recipes"
TAIL_CHARS = 3000
SCHEMA = 1

Row = dict[str, Any]


@dataclass(frozen=True)
class Benchmark:
    """One comparison: how to run it (full and ``--smoke``), where its JSON lands, and its README rows.

    Attributes:
        name: what ``--only`` / ``--skip`` name it by.
        group: a second name selecting several benchmarks at once (``step_profile``).
        script: file name in ``benchmarks/``.
        args: work folder -> arguments of the full run.
        smoke_args: work folder -> arguments of the CPU check, or None where the script has no CPU mode.
        result: the JSON's file name inside the work folder.
        timeout_s: seconds before the full run is killed (``--timeout-scale`` multiplies it; smoke runs get 600).
        rows: the benchmark's JSON -> README table rows (see :func:`row`).
    """

    name: str
    group: str
    script: str
    args: Callable[[Path], list[str]]
    smoke_args: Callable[[Path], list[str]] | None
    result: str
    timeout_s: float
    rows: Callable[[dict], list[Row]]


def row(workload: str, unit: str, formers: float | None, peer_name: str | None = None, peer: float | None = None,
        target_ratio: float | None = None, target_value: float | None = None, note: str = "") -> Row:
    """One README row: formers' figure against the peer's, and whether issue 15's target is met.

    ``target_ratio``: formers / peer at least this; ``target_value``: formers' figure at least this (both when both
    are given); ``met`` is None where there is no target or a figure is missing.
    """
    ratio = formers / peer if formers is not None and peer else None
    checks = []
    if target_ratio is not None:
        checks.append(None if ratio is None else ratio >= target_ratio)
    if target_value is not None:
        checks.append(None if formers is None else formers >= target_value)
    met = None if not checks or None in checks else all(checks)
    return {"workload": workload, "unit": unit, "formers": formers, "peer_name": peer_name, "peer": peer,
            "ratio": ratio, "target_ratio": target_ratio, "target_value": target_value, "met": met, "note": note}


def _get(d: dict, *keys: str) -> Any:
    """``d[k1][k2]...`` or None where a key is missing (a run that recorded an error instead of a figure)."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def generate_rows(r: dict) -> list[Row]:
    w = _get(r, "gpt2", "workloads") or {}
    tps = lambda name, run: _get(w, name, "runs", run, "tokens_per_s")
    greedy_b1 = tps("greedy_b1", "formers_generate")
    rows = [
        row("GPT-2 124M greedy, batch 1, 256 new tokens: `model.generate` vs HF `generate`", "tokens/s",
            greedy_b1, "HF generate", tps("greedy_b1", "hf_generate"), target_ratio=10, target_value=3000),
        row("GPT-2 124M greedy, batch 32: `model.generate` vs HF `generate`", "tokens/s",
            tps("greedy_b32", "formers_generate"), "HF generate", tps("greedy_b32", "hf_generate"), target_ratio=3),
        row("GPT-2 124M top-k/top-p sampling, batch 1: `model.generate` vs HF `generate` (target: within 10% of "
            "greedy)", "tokens/s", tps("sample_b1", "formers_generate"), "HF generate",
            tps("sample_b1", "hf_generate"), target_value=None if greedy_b1 is None else 0.9 * greedy_b1),
    ]
    t = r.get("translation") or {}
    marian = _get(t, "runs", "hf_marian_generate", "sentences_per_s")
    rows.append(row(f"beam-4 translation, {t.get('sentences', '?')} sentences, multi30k-en-de model size vs "
                    "MarianMTModel", "sentences/s", _get(t, "runs", "formers_beam_search", "sentences_per_s"),
                    "HF Marian generate", marian, target_ratio=10))
    kept = _get(t, "runs", "formers_beam_search_kept", "sentences_per_s")
    if kept is not None:
        rows.append(row("same, the batch shapes' graphs kept from the pass before (`Translator(keep_graphs=True)`)",
                        "sentences/s", kept, "HF Marian generate", marian, target_ratio=10))
    return rows


def multi30k_rows(r: dict) -> list[Row]:
    run = _get(r, "runs", "transformer") or {}
    return [row("`multi30k-en-de` recipe training (median logged rate)", "target tokens/s",
                run.get("train_target_tokens_per_s_median"), target_value=4 * 59_000,
                note="target: 4x issue 15's 59k on an H200")]


def transformer_rows(r: dict) -> list[Row]:
    tps = r.get("target_tokens_per_s") or {}
    how = "compiled" if r.get("compiled") else "eager"
    what = f"Transformer-base training, {r.get('batch_size')}x{r.get('seq_len')} tokens, vocab {r.get('vocab_size')}"
    rows = [row(f"{what}, {how}", "target tokens/s", tps.get("formers"), f"nn.Transformer ({how})",
                tps.get("nn.Transformer"), target_ratio=1.5)]
    if "formers (targets=)" in tps:  # formers computing its own loss, as its translation task trains it
        rows.append(row(f"{what}, {how}, formers given `targets=`", "target tokens/s", tps["formers (targets=)"],
                        f"nn.Transformer ({how})", tps.get("nn.Transformer"), target_ratio=1.5))
    if "formers (targets=, graphed)" in tps:  # both steps replayed as CUDA graphs: StepGraphs / reduce-overhead
        rows.append(row(f"{what}, {how}, CUDA graphs: formers' StepGraphs (`train.cuda_graphs`), torch.compile's "
                        "reduce-overhead", "target tokens/s", tps["formers (targets=, graphed)"],
                        "nn.Transformer (reduce-overhead)", tps.get("nn.Transformer (reduce-overhead)"),
                        target_ratio=1.5))
    return rows


def vision_rows(label: str, target: float) -> Callable[[dict], list[Row]]:
    def rows(r: dict) -> list[Row]:
        ips = r.get("images_per_second") or {}
        compiled = "formers compiled" in ips
        ours, ref = ("formers compiled", "timm compiled") if compiled else ("formers", "timm")
        return [row(f"{label} {'training' if kind == 'train' else 'inference'}, batch {r.get('batch_size')}, "
                    f"{'compiled' if compiled else 'eager'}", "images/s", _get(ips, ours, kind), ref,
                    _get(ips, ref, kind), target_ratio=target) for kind in ("train", "infer")]

    return rows


def gpt2_train_rows(r: dict) -> list[Row]:
    runs = _get(r, "training", "runs") or {}
    seq = _get(r, "training", "seq_len")
    rows = [row(f"GPT-2 124M training, {_get(r, 'training', 'batch')}x{seq} tokens, compiled", "tokens/s",
                _get(runs, "formers_compiled", "tokens_per_s"), "HF compiled", _get(runs, "hf_compiled", "tokens_per_s"),
                target_value=560_000)]
    for name, run in runs.items():  # --batch-sweep: formers alone at other batch sizes (HF ran at the main one)
        if name.startswith("formers_compiled_b") and not name.endswith("_tuned"):
            batch = name.removeprefix("formers_compiled_b")
            rows.append(row(f"same, formers at {batch}x{seq} tokens", "tokens/s", run.get("tokens_per_s"),
                            target_value=560_000, note="HF not run at this batch size"))
    return rows


def profile_rows(recipe: str) -> Callable[[dict], list[Row]]:
    return lambda r: [row(f"`{recipe}` Trainer steps: GPU-busy fraction", "fraction",
                          _get(r, recipe, "gpu_busy_fraction"), target_value=0.8,
                          note=f"{_get(r, recipe, 'wall_ms_per_step') or float('nan'):.1f} ms per step")]


def detr_rows(r: dict) -> list[Row]:
    ips = r.get("images_per_second") or {}
    ours, ref = ("formers compiled", "hf compiled") if "formers compiled" in ips else ("formers", "hf")
    return [row(f"DETR-R50 training, batch {r.get('batch_size')}, {r.get('image_size')}px, "
                f"{'compiled' if 'compiled' in ours else 'eager'}", "images/s", ips.get(ours),
                f"HF DETR ({ref})", ips.get(ref), target_ratio=1.5, note="target: benchmarks/README's aim")]


def word2vec_rows(r: dict) -> list[Row]:
    return [row(f"word2vec {arch} training", "words/s", _get(run, "formers", "words_per_s"),
                "gensim 4 (every core)", _get(run, "gensim", "words_per_s"))
            for arch, run in (r.get("runs") or {}).items()]


def linear_ce_rows(r: dict) -> list[Row]:
    runs, rows = r.get("runs") or {}, (r.get("sizes") or {}).get("n")
    ours, ref = ("chunked_compiled", "full_compiled") if "chunked_compiled" in runs else ("chunked", "full")

    def speed(name: str) -> float | None:
        run = runs.get(name) or {}
        return rows * 1000 / run["ms"] if rows and run.get("ms") and not run.get("oom") else None

    peaks = {n: (runs.get(n) or {}).get("peak_mb") for n in (ours, ref)}
    note = f"peak {peaks[ours]:,.0f} MB against {peaks[ref]:,.0f} MB" if None not in peaks.values() else ""
    return [row(f"linear + cross-entropy, {rows} rows, {r.get('precision')} ({ours})", "rows/s", speed(ours),
                f"F.linear + F.cross_entropy ({ref})", speed(ref), note=note)]


def gpu_recipes() -> list[str]:
    """Recipes whose YAML names an H100 / H200 as their hardware, sorted."""
    found = []
    for path in sorted(RECIPES.glob("*.yaml")):
        hardware = re.search(r"^\s*hardware:\s*(.*)$", path.read_text(encoding="utf-8"), re.MULTILINE)
        if hardware and re.search(r"\bH[12]00\b|GPU", hardware.group(1)):
            found.append(path.stem)
    return found


def benchmarks(multi30k_minutes: float) -> list[Benchmark]:
    """Every comparison, in the order they run."""
    out = lambda d: ["--out", str(d / "result.json")]
    items = [
        Benchmark("generate", "generate", "generate_speed.py", out,
                  lambda d: ["--device", "cpu", "--tiny", "--new-tokens", "8", "--sentences", "4", *out(d)],
                  "result.json", 1800, generate_rows),
        Benchmark("multi30k_train", "multi30k_train", "rnn_vs_transformer.py",
                  lambda d: ["--recipes", "transformer", "--minutes", f"{multi30k_minutes:g}", "--work-dir",
                             str(d / "runs"), *out(d)],
                  lambda d: ["--smoke", "--recipes", "transformer", "--work-dir", str(d / "runs"), *out(d)],
                  "result.json", 600 + 60 * multi30k_minutes, multi30k_rows),
        Benchmark("transformer_base", "transformer_base", "transformer_speed.py", out,
                  lambda d: ["--smoke", *out(d)], "result.json", 900, transformer_rows),
        Benchmark("vit", "vit", "vit_speed.py", lambda d: ["--compile", *out(d)], lambda d: ["--smoke", *out(d)],
                  "result.json", 1200, vision_rows("ViT-B/16", 1.15)),
        Benchmark("swin", "swin", "swin_speed.py", lambda d: ["--compile", *out(d)], lambda d: ["--smoke", *out(d)],
                  "result.json", 1200, vision_rows("Swin-T", 1.4)),
        Benchmark("gpt2_train", "gpt2_train", "gpt2_speed.py",
                  lambda d: ["--skip-generation", "--hf-default-only", "--batch-sweep", "64", "--output",
                             str(d / "result.json")],
                  lambda d: ["--smoke", "--skip-generation", "--hf-default-only", "--output", str(d / "result.json")],
                  "result.json", 1200, gpt2_train_rows),
    ]
    for recipe in gpu_recipes():
        items.append(Benchmark(f"profile-{recipe}", "step_profile", "step_profile.py",
                               lambda d, recipe=recipe: [recipe, "--out", str(d)], None,
                               f"step_profile_{recipe}.json", 900, profile_rows(recipe)))
    items += [
        Benchmark("detr", "detr", "detr_speed.py", lambda d: ["--compile", *out(d)], lambda d: ["--smoke", *out(d)],
                  "result.json", 1500, detr_rows),
        Benchmark("word2vec", "word2vec", "word2vec_speed.py", out, lambda d: ["--smoke", *out(d)],
                  "result.json", 1800, word2vec_rows),
        Benchmark("linear_ce", "linear_ce", "linear_cross_entropy.py", lambda d: ["--compile", *out(d)],
                  lambda d: ["--device", "cpu", "--tiny", *out(d)], "result.json", 600, linear_ce_rows),
    ]
    return items


def select(items: list[Benchmark], only: list[str] | None, skip: list[str]) -> list[Benchmark]:
    """The benchmarks ``--only`` names (all by default) less those ``--skip`` names; unknown names raise."""
    known = {b.name for b in items} | {b.group for b in items}
    for flag, names in (("--only", only or []), ("--skip", skip)):
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"{flag}: unknown benchmark(s) {unknown}; expected names from {sorted(known)}")
    chosen = [b for b in items if only is None or b.name in only or b.group in only]
    return [b for b in chosen if b.name not in skip and b.group not in skip]


def versions() -> dict[str, str | None]:
    """Python, torch (with its CUDA and cuDNN), transformers, timm, gensim and the formers commit."""
    import torch

    found: dict[str, str | None] = {"python": sys.version.split()[0], "torch": torch.__version__,
                                    "cuda": torch.version.cuda,
                                    "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available()
                                    else None}
    for package in ("transformers", "timm", "gensim"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    found["formers_commit"] = os.environ.get("FORMERS_COMMIT") or None  # set where the copy's git is not the tree's
    if found["formers_commit"] is None:
        try:
            found["formers_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                                     capture_output=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            found["formers_commit"] = None
    return found


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def gpu_tag(name: str | None) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``h100``; no GPU -> ``cpu``."""
    if not name:
        return "cpu"
    found = re.search(r"\b([a-z]\d{2,4})\b", name.lower())
    return found.group(1) if found else re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def tail(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return text[-TAIL_CHARS:]


def run_one(bench: Benchmark, work: Path, smoke: bool, timeout_s: float) -> dict[str, Any]:
    """Runs ``bench`` as a subprocess in its own process group; returns its record (never raises)."""
    folder = work / bench.name
    folder.mkdir(parents=True, exist_ok=True)
    if smoke and bench.smoke_args is None:
        return {"status": "skipped", "reason": "no CPU mode"}
    args = bench.smoke_args(folder) if smoke else bench.args(folder)
    cmd = [sys.executable, str(BENCH / bench.script), *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    env.pop("OUT", None)  # the scripts copy into $OUT; the combined JSON is what this run hands back
    log = folder / "output.log"
    record: dict[str, Any] = {"command": "PYTHONPATH=src python " + " ".join([f"benchmarks/{bench.script}", *args]),
                              "timeout_s": timeout_s, "log": str(log)}
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the benchmark and whatever it started (compile workers)
            proc.wait()
            rc = None
    record["seconds"] = round(time.perf_counter() - start, 1)
    record["returncode"] = rc
    result_path = folder / bench.result
    result = None
    if result_path.is_file():
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            record["result_error"] = f"unreadable JSON: {e}"
    if rc is None:
        record["status"] = "timeout"
    elif rc != 0:
        record["status"] = "failed"
    else:
        record["status"] = "ok" if result is not None else "failed"
        if result is None:
            record.setdefault("result_error", f"the script wrote no {bench.result}")
    if record["status"] != "ok":
        record["output_tail"] = tail(log)
    if result is not None:  # a partial JSON of a failed run is kept too
        record["result"] = result
        try:
            record["rows"] = bench.rows(result)
        except Exception as e:  # noqa: BLE001 - an unexpected layout must not stop the other benchmarks
            record["rows_error"] = f"{type(e).__name__}: {e}"
    return record


def write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these benchmarks (or groups)")
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME", help="leave these benchmarks (or groups) out")
    parser.add_argument("--smoke", action="store_true", help="every benchmark's CPU mode: checks the harness")
    parser.add_argument("--out", type=Path, default=None,
                        help="the JSON (default: benchmarks/results/all_<gpu>.json; --smoke: a temporary folder)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="each benchmark's JSON and output log (default: a temporary folder)")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiplies every benchmark's timeout")
    parser.add_argument("--multi30k-minutes", type=float, default=2.0, help="training budget of multi30k_train")
    parser.add_argument("--append", action="store_true",
                        help="add to the JSON at --out (same GPU and versions): its other benchmarks are kept, a "
                             "benchmark run again is replaced; the commands and dates of every run are recorded")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.timeout_scale <= 0:
        parser.error(f"--timeout-scale must be > 0, got {args.timeout_scale}")
    if args.append and (args.out is None or not args.out.is_file()):
        parser.error(f"--append needs --out naming an existing run_all JSON, got {args.out}")
    return args


def appended(report: dict[str, Any], path: Path) -> dict[str, Any]:
    """``report`` (a new run, no benchmarks yet) added to the run_all JSON at ``path``.

    The earlier run must come from the same GPU, software versions and code (else SystemExit: their figures would not
    be one run's); ``runs`` lists every run's command and date, ``command`` / ``date`` become all of them joined.
    """
    old = json.loads(path.read_text(encoding="utf-8"))
    for key in ("schema", "gpu", "smoke", "versions"):
        if old.get(key) != report[key]:
            raise SystemExit(f"run_all.py: --append: {path} has {key} {old.get(key)!r}, this run {report[key]!r}")
    runs = old.get("runs") or [{"command": old.get("command"), "date": old.get("date")}]
    runs.append({"command": report["command"], "date": report["date"]})
    return {**report, "runs": runs, "command": " ; ".join(r["command"] for r in runs),
            "date": f"{runs[0]['date']} to {report['date']}", "benchmarks": dict(old.get("benchmarks", {}))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    items = benchmarks(args.multi30k_minutes)
    if args.list:
        for b in items:
            print(f"{b.name:32s} {b.script:24s} timeout {b.timeout_s:6.0f} s  CPU mode: {b.smoke_args is not None}")
        return {}
    try:
        chosen = select(items, args.only, args.skip)
    except ValueError as e:
        raise SystemExit(f"run_all.py: {e}") from None
    gpu = gpu_name()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="run_all_"))
    if args.out is not None:
        out = args.out
    elif args.smoke:
        out = work / "all_smoke.json"
    else:
        out = RESULTS / f"all_{gpu_tag(gpu)}.json"
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "gpu": gpu,
        "smoke": args.smoke,
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/run_all.py"
                   + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "benchmarks": {},
    }
    if args.append:
        report = appended(report, out)
    for bench in chosen:
        timeout = 600.0 if args.smoke else bench.timeout_s * args.timeout_scale
        print(f"== {bench.name} ({bench.script}, timeout {timeout:.0f} s)", flush=True)
        record = run_one(bench, work, args.smoke, timeout)
        report["benchmarks"].pop(bench.name, None)  # a benchmark run again goes to the end, in this run's order
        report["benchmarks"][bench.name] = record
        print(f"   {record['status']} in {record.get('seconds', 0)} s", flush=True)
        for r in record.get("rows", []):
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
            print(f"   {r['workload']}: formers {r['formers']}, {r['peer_name']} {r['peer']}, {ratio}, met {r['met']}")
        write(report, out)
    write(report, out)
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
