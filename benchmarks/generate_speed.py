"""Decoding speed as a user gets it: formers' default ``model.generate`` / ``beam_search`` against Hugging Face.

GPT-2 124M (random weights; Hugging Face's ``GPT2LMHeadModel`` holds the same weights, converted with
``formers.interop.gpt2``), a 16-token random prompt, 256 new tokens, no end token (every token is generated), bf16
weights on CUDA:

- greedy, batch 1 and batch 32; sampling (top-k 50, top-p 0.9, temperature 1), batch 1;
- formers ``model.generate`` as called by default (on CUDA: the static-cache, CUDA-graph path, its step compiled for
  batch 1), the eager loop (``fast=False``), the fast path with ``compile=False`` and with ``compile=True``; Hugging
  Face ``generate`` (dynamic cache). The warm-up call compiles and captures; its time is recorded as ``first_s``.

Translation: beam 4 (length penalty 0.6) of N random "sentences" (lengths 6-30 tokens, Multi30k-like), batched
by sorted length as ``Translator`` batches them (``--max-tokens`` source tokens), with the ``multi30k-en-de`` recipe's model (``transformer_base``, 4 heads, FFN 1024, pre-norm,
vocabulary 10,000; random weights) against a Hugging Face ``MarianMTModel`` of the same size (6+6 layers, 512 wide,
4 heads, FFN 1024), both limited to ``--max-new-tokens`` new tokens. Random weights rarely end a hypothesis, so
both run to about the limit: the same amount of decoding. formers' default pass ends as a ``Translator`` call ends,
freeing its captured steps, so every pass captures its batch shapes anew (what ``formers translate`` pays); the
``kept`` run keeps them across passes (``Translator(keep_graphs=True)``, ``formers serve``).

Exactness (float32, on the same device): the fast path's greedy and seeded sampled tokens (padded batch) against the
eager loop's, and fast against eager beam search (one batch).

Run: ``PYTHONPATH=src python benchmarks/generate_speed.py --out results.json`` on a CUDA machine;
``--device cpu --tiny`` runs the same code on tiny models (a smoke test). Times are medians of ``--repeats`` calls
after a warm-up call (which captures the graphs), with the device synchronised around each call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import traceback
from pathlib import Path

import torch

import formers
from formers.files import atomic_file
from formers.generation.seq2seq import beam_search
from formers.generation.static_lm import clear_decoders
from formers.interop.gpt2 import convert_gpt2_state_dict

RESULTS = Path(__file__).resolve().parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def decode_run_record(device: torch.device, new_tokens: int, **fields) -> dict:
    """The head of a decoding benchmark's JSON: commit (``FORMERS_COMMIT``), device, torch, date, tokens per call."""
    return {
        "commit": os.environ.get("FORMERS_COMMIT"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "new_tokens": new_tokens, **fields,
    }


def save_json(out: dict, path) -> dict:
    """Writes ``out`` to ``path`` atomically, and returns it."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(out, indent=2) + "\n")
    return out


def timed(fn, device: torch.device, repeats: int, warmup: int = 1) -> tuple[list[float], object]:
    """Times ``repeats`` calls after ``warmup`` untimed ones; the warm-ups' total is ``timed.first_s``."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    sync(device)
    timed.first_s = time.perf_counter() - t0
    times, result = [], None
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times, result


def gpt2_pair(device: torch.device, tiny: bool, dtype: torch.dtype):
    """HF GPT2LMHeadModel (random, sdpa, no end token) and a formers GPT with the same weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    size = dict(n_layer=2, n_head=2, n_embd=64, vocab_size=512, n_positions=320, bos_token_id=0, eos_token_id=0)
    size = size if tiny else {}
    hf = GPT2LMHeadModel._from_config(
        GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **size), attn_implementation="sdpa"
    )
    small = dict(num_layers=2, num_heads=2, embed_dim=64, vocab_size=512, max_seq_len=320) if tiny else {}
    ours = formers.create_model("gpt2", dropout=0.0, attn_dropout=0.0, eos_id=None, **small)
    missing, unexpected = ours.load_state_dict(convert_gpt2_state_dict(hf.state_dict(), ours.config), strict=False)
    assert set(missing) <= {"output.weight"} and not unexpected, (missing, unexpected)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    return ours.to(device, dtype).eval(), hf.to(device, dtype).eval()


def bench_gpt2(args, device: torch.device, dtype: torch.dtype, out: dict) -> None:
    torch.manual_seed(0)
    ours, hf = gpt2_pair(device, args.tiny, dtype)
    new = args.new_tokens
    g = out["gpt2"] = {"prompt_len": 16, "new_tokens": new, "dtype": str(dtype), "workloads": {}}
    workloads = {
        "greedy_b1": (1, dict(do_sample=False)),
        "greedy_b32": (32, dict(do_sample=False)),
        "sample_b1": (1, dict(do_sample=True, top_k=50, top_p=0.9)),
    }
    for name, (batch, options) in workloads.items():
        prompt = torch.randint(0, ours.config.vocab_size, (batch, 16), generator=torch.Generator().manual_seed(2))
        prompt = prompt.to(device)
        mask = torch.ones_like(prompt)
        seed = dict(seed=0) if options["do_sample"] else {}
        runs = {
            "formers_generate": lambda: ours.generate(prompt, new, **options, **seed),
            "formers_eager": lambda: ours.generate(prompt, new, fast=False, **options, **seed),
            "hf_generate": lambda: hf.generate(prompt, attention_mask=mask, max_new_tokens=new, **options)[:, 16:],
        }
        if device.type != "cuda":  # the default is the eager loop here: time the static path too
            runs["formers_fast"] = lambda: ours.generate(prompt, new, fast=True, **options, **seed)
        if device.type == "cuda":  # the default compiles batch 1 only
            runs["formers_uncompiled"] = lambda: ours.generate(prompt, new, compile=False, **options, **seed)
        if device.type == "cuda" or args.compile:
            runs["formers_fast_compiled"] = lambda: ours.generate(prompt, new, fast=True, compile=True, **options, **seed)
        w = g["workloads"][name] = {"batch": batch, **options, "runs": {}}
        for run, fn in runs.items():
            try:
                ts, ids = timed(fn, device, args.repeats)
                med = statistics.median(ts)
                tokens = ids.shape[0] * ids.shape[1]
                w["runs"][run] = {"s_median": med, "tokens": tokens, "tokens_per_s": tokens / med, "times_s": ts,
                                  "first_s": timed.first_s}
                print(f"gpt2 {name:10s} {run:22s} {tokens / med:10.0f} tokens/s", flush=True)
            except Exception as e:
                w["runs"][run] = {"error": f"{type(e).__name__}: {e}"[:800]}
                traceback.print_exc()
        for run in ("formers_generate", "formers_fast_compiled"):
            if "tokens_per_s" in w["runs"].get(run, {}) and "tokens_per_s" in w["runs"]["hf_generate"]:
                w[f"{run}_vs_hf"] = w["runs"][run]["tokens_per_s"] / w["runs"]["hf_generate"]["tokens_per_s"]

    if device.type == "cuda":
        g["kernels_per_token_greedy_b1"] = kernel_profile(ours, device, new)

    # Exactness in float32: the fast path against the eager loop, greedy and seeded sampling, padded batch.
    ours32 = ours.float()
    prompt = torch.randint(0, ours.config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(3)).to(device)
    padding = torch.ones_like(prompt, dtype=torch.bool)
    padding[1, :5] = False
    checks = {}
    for label, options in (("greedy", {}), ("sampling", dict(do_sample=True, top_k=50, top_p=0.9, seed=[1, 2, 3, 4]))):
        default = ours32.generate(prompt, 64, padding_mask=padding, fast=True, **options)
        eager = ours32.generate(prompt, 64, padding_mask=padding, fast=False, **options)
        checks[label] = default.tolist() == eager.tolist()
    g["fast_equals_eager_fp32"] = checks
    print(f"gpt2 fast == eager (fp32): {checks}", flush=True)


def profile_kernels(call, device: torch.device, per: int, unit: str, top: int) -> dict:
    """The GPU kernels (and copies) of ``call()``, run once before (captures) and once profiled, per ``unit``
    (``per`` of them in a call): launches and device microseconds, the ``top`` kernels by time."""
    from torch.profiler import ProfilerActivity, profile

    try:
        call()
        sync(device)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            call()
            sync(device)
        events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
        rows = sorted(
            ({"kernel": e.key[:120], f"launches_per_{unit}": e.count / per, f"us_per_{unit}": e.device_time_total / per}
             for e in events),
            key=lambda r: -r[f"us_per_{unit}"],
        )
        return {
            f"kernels_per_{unit}": sum(r[f"launches_per_{unit}"] for r in rows),
            f"device_us_per_{unit}": sum(r[f"us_per_{unit}"] for r in rows),
            "top": rows[:top],
        }
    except Exception as e:  # a profile is extra information
        traceback.print_exc()
        return {"error": f"{type(e).__name__}: {e}"[:800]}


def kernel_profile(model, device: torch.device, new: int, top: int = 15) -> dict:
    """The GPU kernels one default greedy batch-1 call launches, per generated token: where a token's time goes."""
    prompt = torch.randint(0, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(5)).to(device)
    return profile_kernels(lambda: model.generate(prompt, new), device, new, "token", top)


def beam_kernel_profile(model, batch: tuple[torch.Tensor, torch.Tensor], steps: int, top: int = 20) -> dict:
    """The GPU kernels one default beam-4 call on one batch launches, per decoding step."""
    s, k = batch
    call = lambda: beam_search(model, s, k, beam_size=4, alpha=0.6, max_new_tokens=steps)  # noqa: E731
    return {"rows": s.shape[0] * 4, "source_length": s.shape[1], **profile_kernels(call, s.device, steps, "step", top)}


def translation_pair(device: torch.device, tiny: bool, dtype: torch.dtype):
    """The multi30k-en-de model (random) and a MarianMTModel of the same size (random)."""
    from transformers import MarianConfig, MarianMTModel

    vocab = 300 if tiny else 10000
    size = dict(embed_dim=32, num_heads=2, ffn_dim=64, num_encoder_layers=2, num_decoder_layers=2) if tiny else dict(
        num_heads=4, ffn_dim=1024
    )
    ours = formers.create_model(
        "transformer_base", src_vocab_size=vocab, tgt_vocab_size=vocab, max_seq_len=128, dropout=0.0,
        norm_first=True, final_norm=True, **size,
    )
    c = ours.config
    hf_config = MarianConfig(
        vocab_size=vocab, decoder_vocab_size=vocab, d_model=c.embed_dim, encoder_layers=c.num_encoder_layers,
        decoder_layers=c.num_decoder_layers, encoder_attention_heads=c.num_heads, decoder_attention_heads=c.num_heads,
        encoder_ffn_dim=c.ffn_dim, decoder_ffn_dim=c.ffn_dim, max_position_embeddings=128, dropout=0.0,
        pad_token_id=c.pad_id, eos_token_id=c.eos_id, decoder_start_token_id=c.bos_id, forced_eos_token_id=None,
        scale_embedding=True, share_encoder_decoder_embeddings=True,
    )
    hf = MarianMTModel(hf_config)
    return ours.to(device, dtype).eval(), hf.to(device, dtype).eval()


def translation_batches(c, sentences: int, max_tokens: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``sentences`` random sources (6-30 tokens, seed 4) batched as ``Translator`` batches them: sorted by length,
    at most ``max_tokens`` source tokens (padding included) per batch; (ids, mask) pairs on ``device``."""
    gen = torch.Generator().manual_seed(4)
    lengths = sorted(torch.randint(6, 31, (sentences,), generator=gen).tolist())
    batches, start = [], 0
    while start < len(lengths):
        end = start + 1
        while end < len(lengths) and lengths[end] * (end + 1 - start) <= max_tokens:
            end += 1
        chunk, start = lengths[start:end], end
        src = torch.full((len(chunk), max(chunk)), c.pad_id, dtype=torch.long)
        for i, n in enumerate(chunk):
            src[i, :n] = torch.randint(3, c.src_vocab_size, (n,), generator=gen)
        batches.append((src.to(device), (src != c.pad_id).to(device)))
    return batches


def bench_translation(args, device: torch.device, dtype: torch.dtype, out: dict) -> None:
    torch.manual_seed(0)
    ours, hf = translation_pair(device, args.tiny, dtype)
    batches = translation_batches(ours.config, args.sentences, args.max_tokens, device)
    m = args.max_new_tokens
    t = out["translation"] = {
        "sentences": args.sentences, "max_tokens": args.max_tokens, "batches": len(batches), "beam_size": 4,
        "max_new_tokens": m,
        "dtype": str(dtype), "runs": {},
    }

    def ours_run(fast, keep=False):
        def run():
            out = [beam_search(ours, s, k, beam_size=4, alpha=0.6, max_new_tokens=m, fast=fast) for s, k in batches]
            if not keep:  # as a Translator call ends (formers translate): the next pass captures every shape anew
                clear_decoders(ours)
            return out

        return run

    def hf_run():
        return [
            hf.generate(input_ids=s, attention_mask=k.long(), num_beams=4, length_penalty=0.6, max_new_tokens=m,
                        early_stopping=True, do_sample=False)
            for s, k in batches
        ]

    runs_to_time = [("formers_beam_search", ours_run(None)), ("formers_beam_search_eager", ours_run(False)),
                    ("formers_beam_search_kept", ours_run(None, keep=True))]  # graphs kept: Translator(keep_graphs)
    if device.type != "cuda":  # the default is the eager loop here: time the static path too
        runs_to_time.append(("formers_beam_search_fast", ours_run(True)))
    for run, fn in (*runs_to_time, ("hf_marian_generate", hf_run)):
        try:
            ts, _ = timed(fn, device, args.translation_repeats)
            med = statistics.median(ts)
            t["runs"][run] = {"s_median": med, "sentences_per_s": args.sentences / med, "times_s": ts}
            print(f"translation beam-4 {run:26s} {args.sentences / med:10.1f} sentences/s", flush=True)
        except Exception as e:
            t["runs"][run] = {"error": f"{type(e).__name__}: {e}"[:800]}
            traceback.print_exc()
    runs = t["runs"]
    if "sentences_per_s" in runs.get("formers_beam_search", {}) and "sentences_per_s" in runs.get("hf_marian_generate", {}):
        t["formers_vs_hf"] = runs["formers_beam_search"]["sentences_per_s"] / runs["hf_marian_generate"]["sentences_per_s"]
    if device.type == "cuda":
        t["kernel_profile"] = beam_kernel_profile(ours, batches[len(batches) // 2], m)
    ours32 = ours.float()
    s, k = batches[0]
    fast = beam_search(ours32, s, k, beam_size=4, max_new_tokens=m, fast=True)
    t["fast_equals_eager_fp32"] = fast == beam_search(ours32, s, k, beam_size=4, max_new_tokens=m, fast=False)
    print(f"translation fast == eager (fp32): {t['fast_equals_eager_fp32']}", flush=True)


def table(out: dict) -> str:
    lines = [f"{out['device']} | torch {out['torch']} | transformers {out['transformers']} | {out['date']}", ""]
    lines.append(f"{'workload':12s} {'formers default':>16s} {'uncompiled':>11s} {'formers eager':>14s} "
                 f"{'fast+compile':>13s} {'HF':>10s} {'default/HF':>11s}  (tokens/s)")
    for name, w in out.get("gpt2", {}).get("workloads", {}).items():
        r = w["runs"]
        cell = lambda k: f"{r[k]['tokens_per_s']:.0f}" if "tokens_per_s" in r.get(k, {}) else "-"
        ratio = f"{w['formers_generate_vs_hf']:.2f}x" if "formers_generate_vs_hf" in w else "-"
        lines.append(f"{name:12s} {cell('formers_generate'):>16s} {cell('formers_uncompiled'):>11s} {cell('formers_eager'):>14s} "
                     f"{cell('formers_fast_compiled'):>13s} {cell('hf_generate'):>10s} {ratio:>11s}")
    t = out.get("translation")
    if t:
        r = t["runs"]
        cell = lambda k: f"{r[k]['sentences_per_s']:.1f}" if "sentences_per_s" in r.get(k, {}) else "-"
        ratio = f"{t['formers_vs_hf']:.2f}x" if "formers_vs_hf" in t else "-"
        lines += ["", f"translation beam-4, {t['sentences']} sentences (sentences/s): formers default "
                  f"{cell('formers_beam_search')}, formers eager {cell('formers_beam_search_eager')}, HF Marian "
                  f"{cell('hf_marian_generate')}, default/HF {ratio}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny random models (a CPU smoke test of this script)")
    p.add_argument("--new-tokens", type=int, default=None, help="GPT-2 new tokens (default 256; --tiny 24)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per GPT-2 run (default 5; --tiny 1)")
    p.add_argument("--compile", action="store_true", help="also time fast+compile off CUDA")
    p.add_argument("--sentences", type=int, default=None, help="translation sentences (default 1014; --tiny 12)")
    p.add_argument("--max-tokens", type=int, default=4096, help="source tokens per translation batch (as Translator)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="translation limit (default 40; --tiny 8)")
    p.add_argument("--translation-repeats", type=int, default=None, help="timed passes (default 2; --tiny 1)")
    p.add_argument("--skip", nargs="*", default=[], choices=["gpt2", "translation"])
    p.add_argument("--out", type=Path, default=None, help="JSON results (default benchmarks/results/generate_speed_<device>.json)")
    args = p.parse_args(argv)
    defaults = dict(new_tokens=(24, 256), repeats=(1, 5), sentences=(12, 1014), max_new_tokens=(8, 40),
                    translation_repeats=(1, 2))
    for name, (tiny, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    import transformers

    out = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "tiny": args.tiny,
    }
    path = args.out or RESULTS / f"generate_speed_{device.type}{'_tiny' if args.tiny else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    sections = [(name, fn) for name, fn in (("gpt2", bench_gpt2), ("translation", bench_translation))
                if name not in args.skip]
    for done, (name, bench) in enumerate(sections, 1):
        bench(args, device, dtype, out)
        out["complete"] = done == len(sections)  # written after each section: a run cut short keeps what it measured
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
