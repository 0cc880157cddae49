"""Transformer-base training speed: formers' ``transformer_base`` against ``torch.nn.Transformer``, one run.

Both are the paper's base model (6+6 post-norm layers, 512 wide, 8 heads, FFN 2048, ReLU, dropout 0.1 on the
residuals, attention weights and FFN hidden layer) with the SAME embedding and output layer: one token matrix shared
by source and target (vocabulary 32,000), scaled by sqrt(512), plus the paper's interleaved sinusoidal positions
(``formers.layers.positional.sinusoidal_table``), and the output projection tied to it. ``nn.Transformer`` always
puts a final LayerNorm after its encoder and decoder stacks (two LayerNorms formers' post-norm model does not have;
a negligible cost). Both see the same random batches: 128 sentence pairs of 128 source and 128 target tokens, no
padding, a causal decoder mask (``is_causal`` for formers, ``tgt_mask`` + ``tgt_is_causal=True`` for PyTorch).

A step is forward + label-smoothed cross-entropy (epsilon 0.1, ``F.cross_entropy`` on float32 logits, the same
function for both) under bf16 autocast, backward, fused AdamW step and zeroing the gradients; forward and loss are
``torch.compile``d together for both (``--no-compile``: eager). Target tokens per second come from CUDA events
around ``--steps`` steps after ``--warmup`` steps (``vision_bench.timed``); the two models are timed alternately,
``--rounds`` times each, and the best round is kept. formers' host-side value checks read the device, so they are
off (``value_checks(False)``), as in the training tasks. A third run, ``formers (targets=)``, is formers as its
translation task trains it: the model is given the targets and computes the same smoothed loss itself (compiled, the
output projection and loss written so that inductor fuses them and the float32 logits are never stored). The ratio
the issue's target is judged by is ``speedup_vs_nn_transformer`` (same loss function for both);
``speedup_targets_vs_nn_transformer`` is the one a formers user gets. On CUDA, two more runs replay their compiled
steps as CUDA graphs, each the way its library offers: ``formers (targets=, graphed)`` through
:class:`formers.training.step_graphs.StepGraphs` as ``formers train`` does with ``train.compile`` and
``train.cuda_graphs``, ``nn.Transformer (reduce-overhead)`` through ``torch.compile(mode="reduce-overhead")``
(``speedup_graphed_vs_nn_transformer_graphed``; a CUDA-graph step pays off where the compiled step leaves the GPU
waiting on the host). ``--profile`` adds a profile of 5 steps of each run without CUDA graphs (GPU-busy fraction,
top kernels and host operators, as ``benchmarks/step_profile.py``; with the graphed runs too, the process ended
without a message on an H100).

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/transformer_speed.py`` (``--smoke``: a tiny model on the
CPU, eager, one round: checks the script). Writes ``benchmarks/results/transformer_speed_<gpu>.json`` (or ``--out``;
``--smoke`` writes only to ``--out``), and ``$OUT/transformer_speed.json`` when ``$OUT`` is set; prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_profile import profiled
from vision_bench import timed

import formers
from formers.files import atomic_file
from formers.layers import value_checks
from formers.layers.positional import sinusoidal_table
from formers.training.step_graphs import StepGraphs
from formers.training.task import StepOutput

RESULTS = Path(__file__).resolve().parent / "results"
BASE = {"vocab_size": 32000, "embed_dim": 512, "num_heads": 8, "ffn_dim": 2048, "num_layers": 6, "batch_size": 128,
        "seq_len": 128}
SMOKE = {"vocab_size": 512, "embed_dim": 32, "num_heads": 2, "ffn_dim": 64, "num_layers": 1, "batch_size": 4,
         "seq_len": 16}
PAD_ID = 0


class TorchTransformer(nn.Module):
    """``nn.Transformer`` between formers' embedding recipe and a tied output layer (see the module docstring).

    Args:
        vocab_size: V, shared by source and target.
        embed_dim, num_heads, ffn_dim, num_layers, dropout: the ``nn.Transformer`` sizes (encoder and decoder alike).
        max_seq_len: rows of the sinusoidal table.
    """

    def __init__(self, vocab_size: int, embed_dim: int, num_heads: int, ffn_dim: int, num_layers: int,
                 dropout: float, max_seq_len: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        nn.init.normal_(self.embed.weight, std=embed_dim**-0.5)
        self.register_buffer("table", sinusoidal_table(max_seq_len, embed_dim, "interleaved"), persistent=False)
        self.scale = math.sqrt(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.core = nn.Transformer(embed_dim, num_heads, num_layers, num_layers, ffn_dim, dropout, batch_first=True)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """(B, T) ids -> (B, T, D): scaled token embedding plus positions, then dropout."""
        return self.dropout(self.embed(ids) * self.scale + self.table[: ids.shape[1]])

    def forward(self, src_ids: Tensor, tgt_ids: Tensor) -> Tensor:
        """Sources (B, S) and decoder inputs (B, T) -> logits (B, T, V)."""
        t = tgt_ids.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=tgt_ids.device)  # (T, T), -inf above
        hidden = self.core(self.embed_tokens(src_ids), self.embed_tokens(tgt_ids), tgt_mask=causal,
                           tgt_is_causal=True)  # (B, T, D)
        return F.linear(hidden, self.embed.weight)  # (B, T, V), tied


def build_models(size: dict[str, int], dropout: float) -> dict[str, nn.Module]:
    """``{"formers": transformer_base at ``size``, "nn.Transformer": TorchTransformer at ``size``}`` on the CPU."""
    ours = formers.create_model(
        "transformer_base", src_vocab_size=size["vocab_size"], tgt_vocab_size=size["vocab_size"],
        embed_dim=size["embed_dim"], num_heads=size["num_heads"], ffn_dim=size["ffn_dim"],
        num_encoder_layers=size["num_layers"], num_decoder_layers=size["num_layers"], dropout=dropout,
        attn_dropout=dropout, activation_dropout=dropout, max_seq_len=max(256, size["seq_len"]), pad_id=PAD_ID,
    )
    ref = TorchTransformer(size["vocab_size"], size["embed_dim"], size["num_heads"], size["ffn_dim"],
                           size["num_layers"], dropout, max(256, size["seq_len"]))
    return {"formers": ours, "nn.Transformer": ref}


OWN_LOSS = "formers (targets=)"  # formers computing its own loss: the same model object as "formers"
GRAPHED = "formers (targets=, graphed)"  # OWN_LOSS with the compiled forward and backward replayed as a CUDA graph
PEER_GRAPHED = "nn.Transformer (reduce-overhead)"  # the peer's own way to CUDA graphs: torch.compile's mode


def make_step(name: str, model: nn.Module, batch: tuple[Tensor, ...], smoothing: float, compile_it: bool,
              losses: list[float]) -> Callable[[], None]:
    """One training step closure on the fixed ``batch`` (src (B, S), tgt_in (B, T), tgt_out (B, T), src mask)."""
    src, tgt_in, tgt_out, src_mask = batch
    device = src.device
    amp_dtype = torch.bfloat16

    def loss_of(src: Tensor, tgt_in: Tensor, tgt_out: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=amp_dtype, cache_enabled=name != GRAPHED):
            if name in (OWN_LOSS, GRAPHED):
                return model(src, tgt_in, src_padding_mask=src_mask, targets=tgt_out, label_smoothing=smoothing).loss
            if name == "formers":
                logits = model(src, tgt_in, src_padding_mask=src_mask).logits  # (B, T, V)
            else:
                logits = model(src, tgt_in)  # (B, T, V)
        return F.cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(), label_smoothing=smoothing)

    mode = "reduce-overhead" if name == PEER_GRAPHED else "default"
    loss_fn = torch.compile(loss_of, mode=mode) if compile_it else loss_of
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda" or None)
    if name == GRAPHED:
        return graphed_step(model, loss_fn, opt, batch[:3], compile_it, losses)

    def step() -> None:
        if mode == "reduce-overhead":  # a new iteration: the outputs of the last replay may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        loss = loss_fn(src, tgt_in, tgt_out)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach() if mode == "default" else loss.detach().clone())

    return step


def graphed_step(model: nn.Module, loss_fn: Callable[..., Tensor], opt: torch.optim.Optimizer,
                 batch: tuple[Tensor, ...], compiled: bool, losses: list) -> Callable[[], None]:
    """The step as ``formers train`` runs it with ``train.compile`` and ``train.cuda_graphs``: forward and backward
    replayed by :class:`formers.training.step_graphs.StepGraphs` (the first call warms up, the second captures),
    then the fused AdamW update and gradients zeroed in place."""
    params = [p for p in model.parameters() if p.requires_grad]

    def forward_backward(b: tuple[Tensor, ...]) -> StepOutput:
        loss = loss_fn(*b)
        loss.backward()
        return StepOutput(loss=loss.detach())

    graphs = StepGraphs(forward_backward, params, batch[0].device, compiled=compiled)

    def step() -> None:
        losses.append(graphs(batch).loss)
        opt.step()
        opt.zero_grad(set_to_none=False)

    return step


def measure(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Times both models alternately, best of ``args.rounds``; returns the result record."""
    size = SMOKE if args.smoke else BASE
    size = {**size, **{k: getattr(args, k) for k in ("batch_size", "seq_len") if getattr(args, k) is not None}}
    torch.manual_seed(0)
    models = {k: m.to(device).train() for k, m in build_models(size, args.dropout).items()}
    gen = torch.Generator().manual_seed(1)
    b, t, v = size["batch_size"], size["seq_len"], size["vocab_size"]
    src = torch.randint(3, v, (b, t), generator=gen)
    tgt = torch.randint(3, v, (b, t + 1), generator=gen)
    tgt[:, 0] = 1  # the decoder start
    batch = (src.to(device), tgt[:, :-1].contiguous().to(device), tgt[:, 1:].contiguous().to(device),
             torch.ones(b, t, dtype=torch.bool, device=device))
    compile_it = not args.no_compile and not args.smoke
    runs = {**models, OWN_LOSS: models["formers"]}
    if device.type == "cuda" and compile_it:  # CUDA graphs: formers' StepGraphs against torch.compile's own
        runs.update({GRAPHED: models["formers"], PEER_GRAPHED: models["nn.Transformer"]})
    losses: dict[str, list] = {k: [] for k in runs}
    steps = {k: make_step(k, m, batch, args.label_smoothing, compile_it, losses[k]) for k, m in runs.items()}
    best = dict.fromkeys(steps, 0.0)
    with value_checks(False):
        for _ in range(args.rounds):
            for name, step in steps.items():
                best[name] = max(best[name], b * t / timed(step, args.warmup, args.steps, device))
    last = {k: float(v[-1]) for k, v in losses.items()}
    result: dict[str, Any] = {
        "model": "Transformer-base" if not args.smoke else "tiny (smoke)",
        **size,
        "dropout": args.dropout,
        "label_smoothing": args.label_smoothing,
        "dtype": "bf16 autocast",
        "compiled": compile_it,
        "warmup": args.warmup, "steps": args.steps, "rounds": args.rounds,
        "parameters": {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()},
        "last_loss": last,
        "target_tokens_per_s": best,
        "speedup_vs_nn_transformer": best["formers"] / best["nn.Transformer"],
        "speedup_targets_vs_nn_transformer": best[OWN_LOSS] / best["nn.Transformer"],
    }
    if GRAPHED in best:
        result["speedup_graphed_vs_nn_transformer"] = best[GRAPHED] / best["nn.Transformer"]
        result["speedup_graphed_vs_nn_transformer_graphed"] = best[GRAPHED] / best[PEER_GRAPHED]
    if device.type == "cuda":
        result["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if args.profile:
        with value_checks(False):
            result["profile"] = {k: profiled(lambda n, step=step: [step() for _ in range(n)], 5, device, 15)
                                 for k, step in steps.items() if k not in (GRAPHED, PEER_GRAPHED)}
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=None, help="sentence pairs per step (default 128)")
    parser.add_argument("--seq-len", type=int, default=None, help="source and target tokens (default 128)")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="time both eager")
    parser.add_argument("--profile", action="store_true", help="also profile 5 steps of each: kernels, host ops")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default: benchmarks/results/transformer_speed_<gpu>.json)")
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU, eager, one round: checks the script")
    args = parser.parse_args(argv)
    if args.smoke:
        args.warmup, args.steps, args.rounds = 1, 2, 1
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    result = {"device": device_name, "torch": torch.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "smoke": args.smoke,
              **measure(args, device)}
    print(f"{result['model']}, batch {result['batch_size']} x {result['seq_len']}+{result['seq_len']} tokens, "
          f"vocab {result['vocab_size']}, bf16, compiled {result['compiled']}, {device_name}")
    for name, tps in result["target_tokens_per_s"].items():
        print(f"  {name:34s} {tps:12,.0f} target tokens/s")
    print(f"  formers / nn.Transformer: {result['speedup_vs_nn_transformer']:.2f}x (same loss function), "
          f"{result['speedup_targets_vs_nn_transformer']:.2f}x (formers given targets=)", flush=True)
    if "speedup_graphed_vs_nn_transformer_graphed" in result:
        print(f"  CUDA graphs, formers / nn.Transformer: {result['speedup_graphed_vs_nn_transformer_graphed']:.2f}x "
              f"(reduce-overhead), {result['speedup_graphed_vs_nn_transformer']:.2f}x (default mode)", flush=True)
    for name, prof in result.get("profile", {}).items():
        print(f"== {name}: {prof['wall_ms_per_step']:.1f} ms per step, kernels {prof['kernel_ms_per_step']:.1f} ms "
              f"({prof['gpu_busy_fraction']:.0%} busy), {prof['kernel_launches_per_step']:.0f} launches")
        for k in prof["top_kernels"]:
            print(f"   {k['ms_per_step']:7.2f} ms  x{k['calls_per_step']:5.0f}  {k['name']}")
    text = json.dumps(result, indent=2) + "\n"
    if args.out is not None or not args.smoke:
        tag = device_name.lower().replace("nvidia ", "").split()[0] if device.type == "cuda" else "cpu"
        path = args.out if args.out is not None else RESULTS / f"transformer_speed_{tag}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "transformer_speed.json").write_text(text, encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
