"""Where a training step's time goes: host (Python + launches) against GPU kernels, and the top kernels and ops.

Two questions this answers with one short GPU call:

- ``gpt2``: formers' and Hugging Face's compiled GPT-2 124M steps (the setup of ``benchmarks/gpt2_speed.py``). Their
  ratio moved from 1.19x on one H200 host to 1.56x on another while formers' step time stayed at 34.4 ms; the GPU-busy
  fraction of each step says whether Hugging Face's step is host-bound there.
- a recipe name (e.g. ``vit-fashion-mnist``): the Trainer's own steps of that recipe (compiled, as the recipe says),
  profiled after a warm-up; the small Fashion-MNIST models take 14-30 ms per step on an H200, far more than their
  arithmetic needs. Before profiling, a recipe whose Trainer replays CUDA graphs per batch shape runs until a chunk
  of ``--settle-steps`` steps captures no new shape (each new one costs an eager step and a capture, which would
  otherwise fill a short profile).

For each profiled run it prints the wall time per step, the summed kernel time per step, the GPU-busy fraction, the
top kernels by device time and the top operators by host time, and writes it all to ``$OUT/step_profile_<name>.json``
(or ``--out``).

Usage on a GPU machine: ``PYTHONPATH=src python benchmarks/step_profile.py gpt2 vit-fashion-mnist``
(``--smoke``: tiny models on the CPU, checks the script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _device_time_us(event) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def summarize(prof, steps: int, wall_s: float, top: int) -> dict:
    """Per-step wall and kernel time, the GPU-busy fraction, and the top kernels / host operators."""
    events = prof.key_averages()
    kernels = [e for e in events if _device_time_us(e) > 0 and e.device_type.name in ("CUDA", "PrivateUse1")]
    kernel_us = sum(_device_time_us(e) for e in kernels)
    host = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    wall_ms = wall_s / steps * 1e3
    kernel_ms = kernel_us / steps / 1e3
    return {
        "steps": steps,
        "wall_ms_per_step": wall_ms,
        "kernel_ms_per_step": kernel_ms,
        "gpu_busy_fraction": kernel_ms / wall_ms if wall_ms else 0.0,
        "kernel_launches_per_step": sum(e.count for e in kernels) / steps,
        "top_kernels": [
            {"name": e.key[:120], "ms_per_step": _device_time_us(e) / steps / 1e3, "calls_per_step": e.count / steps}
            for e in sorted(kernels, key=_device_time_us, reverse=True)[:top]
        ],
        "top_host_ops": [
            {
                "name": e.key[:120],
                "self_ms_per_step": e.self_cpu_time_total / steps / 1e3,
                "calls_per_step": e.count / steps,
            }
            for e in host[:top]
        ],
    }


def profiled(fn, steps: int, device: torch.device, top: int) -> dict:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type == "cuda":
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        fn(steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    return summarize(prof, steps, wall, top)


def profile_gpt2(args, device: torch.device) -> dict:
    """formers and Hugging Face GPT-2, each compiled, same weights and batches (gpt2_speed.py's Trainer)."""
    from gpt2_speed import HF_LOSS, Trainer, build_pair, formers_loss

    from formers.layers.validation import value_checks

    torch.manual_seed(0)
    ours, hf = build_pair(device, args.smoke)
    seq, batch = (64, 2) if args.smoke else (ours.config.max_seq_len, args.batch)
    data = torch.randint(0, ours.config.vocab_size, (batch, seq + 1), generator=torch.Generator().manual_seed(1))
    batches = [(data[:, :-1].contiguous().to(device), data[:, 1:].contiguous().to(device))]
    out = {}
    for name, model, loss_of in (("formers_compiled", ours, formers_loss), ("hf_compiled", hf, HF_LOSS)):
        tr = Trainer(name, model, loss_of, batches, device, compile_it=not args.smoke)
        with value_checks(False):
            for _ in range(args.warmup):
                tr.step()
            out[name] = profiled(lambda n, tr=tr: [tr.step() for _ in range(n)], args.steps, device, args.top)
        torch._dynamo.reset()
    return out


def profile_recipe(name: str, args, device: torch.device) -> dict:
    """The recipe's own Trainer: ``warmup`` steps (compilation), then ``steps`` and ``2 * steps`` more, each a resumed
    ``fit`` under the profiler; their difference is ``steps`` steps without a ``fit`` call's fixed costs (loading
    the checkpoint, the final checkpoint write and the plot)."""
    from formers.recipes.recipe import load_recipe
    from formers.recipes.run import TASKS, build_optimization
    from formers.training.trainer import Trainer

    overrides = {"train.progress_bar": False, "train.tensorboard": False, "train.max_minutes": None,
                 "train.eval_every": 0, "train.save_every": 0, "train.log_every": 10**9,
                 "train.max_steps": args.warmup, "optim.warmup_steps": 1, "train.best_metric": None}
    if args.smoke:
        overrides.update(
            {"train.compile": False, "train.precision": "fp32", "data.batch_size": 8, "train.device": "cpu"}
        )
    from formers.config import parse_set_args

    recipe = load_recipe(name, {**parse_set_args(args.set), **overrides})
    with tempfile.TemporaryDirectory() as run_dir:
        setup = TASKS[recipe.task].setup(recipe, Path(run_dir), False)
        setup.model.to(device)
        optimizer, scheduler = build_optimization(setup.model, recipe.optim, args.warmup + 3 * args.steps)
        trainer = Trainer(setup.model, setup.task, setup.train_loader, recipe.train, run_dir,
                          optimizer=optimizer, scheduler=scheduler, eval_loader=None)
        trainer.fit()  # warm-up: compilation and the first steps, then a checkpoint

        def more(n: int) -> None:
            trainer.config.max_steps += n
            trainer.fit(resume=True)  # continues from the last checkpoint with the same compiled model

        warmup = settle(trainer, more, args.settle_steps, args.max_warmup)
        short = profiled(more, args.steps, device, args.top)
        clock = StepClock(trainer, device, 2 * args.steps)
        long = profiled(more, 2 * args.steps, device, args.top)
    return {**steady(short, long, args.steps, clock.ms_per_step()),
            "warmup": {"steps": args.warmup + warmup, **graph_counts(trainer)}}


class StepClock:
    """Wall time per step of the next ``steps`` optimizer steps of ``trainer``, between the end of the ``skip``-th and
    of the last: the device is synchronised there only, so what a ``fit`` call costs around its steps (loading the
    checkpoint, starting the loader's workers, the final checkpoint) lies outside, however much it varies."""

    def __init__(self, trainer, device: torch.device, steps: int, skip: int = 5, clock=time.perf_counter) -> None:
        if not 0 < skip < steps:
            raise ValueError(f"need 0 < skip < steps, got skip={skip}, steps={steps}")
        self.trainer, self.device, self.steps, self.skip, self.clock = trainer, device, steps, skip, clock
        self.original = trainer._optimizer_step
        self.calls, self.start, self.end = 0, None, None
        trainer._optimizer_step = self  # the Trainer calls it once per optimizer step

    def __call__(self, *args, **kwargs):
        out = self.original(*args, **kwargs)
        self.calls += 1
        if self.calls in (self.skip, self.steps):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            now = self.clock()
            if self.calls == self.skip:
                self.start = now
            else:
                self.end = now
                self.trainer._optimizer_step = self.original
        return out

    def ms_per_step(self) -> float | None:
        """The steady per-step wall time in ms, or None if the fit ended before its last step."""
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start) / (self.steps - self.skip) * 1e3


def graph_counts(trainer) -> dict:
    """The Trainer's step graphs so far: captured shapes, replayed and eager steps (empty without graphs)."""
    graphs = trainer._step_graphs
    if graphs is None:
        return {}
    counts = {"graphs": graphs.captured, "replayed": graphs.replayed, "eager": graphs.eager}
    return {**counts, "disabled": graphs.disabled} if graphs.disabled else counts  # why every step ran eagerly


def settle(trainer, more, chunk: int, most: int) -> int:
    """Runs ``chunk`` more steps at a time until a chunk captures no new step graph (a loader that pads to a few
    shapes meets each within a few hundred steps; each new shape costs an eager warm-up step and a capture, which
    are not the steady state a profile should measure), at most ``most`` steps; returns the steps run."""
    if trainer._step_graphs is None:
        return 0
    done = 0
    while done < most:
        before = trainer._step_graphs.captured
        more(chunk)
        done += chunk
        if trainer._step_graphs.captured == before:
            break
    return done


def steady(short: dict, long: dict, steps: int, clocked_ms: float | None = None) -> dict:
    """Per-step figures of the ``steps`` steps by which ``long`` (2 * steps) exceeds ``short`` (steps): what a fit
    call costs besides its steps cancels. The wall time per step is ``clocked_ms`` where given (a
    :class:`StepClock`'s, timed between steps of the long fit: robust where the fit's fixed costs vary from call to
    call, which the difference is not); the difference's is kept beside it. Top kernels and host operators are the long
    run's."""
    def extra(key: str) -> float:
        return (long[key] * 2 * steps - short[key] * steps) / steps

    difference, kernel = extra("wall_ms_per_step"), extra("kernel_ms_per_step")
    wall = clocked_ms if clocked_ms is not None else difference
    return {**long, "steps": steps, "wall_ms_per_step": wall, "wall_ms_per_step_fit_difference": difference,
            "kernel_ms_per_step": kernel, "gpu_busy_fraction": kernel / wall if wall > 0 else 0.0,
            "kernel_launches_per_step": extra("kernel_launches_per_step"),
            "with_fit_overheads": {"short": {k: short[k] for k in ("steps", "wall_ms_per_step", "gpu_busy_fraction")},
                                   "long": {k: long[k] for k in ("steps", "wall_ms_per_step", "gpu_busy_fraction")}},
            "note": "kernels per step: a fit of 2 * steps minus a fit of steps (resumed from the checkpoint before); "
                    + ("wall per step: timed between the long fit's steps" if clocked_ms is not None
                       else "wall per step: the same difference")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="+", help="gpt2 and/or recipe names (e.g. vit-fashion-mnist)")
    parser.add_argument("--steps", type=int, default=60,
                        help="profiled steps (a recipe: the difference of fits of 2N and N steps; 20 left noise of 2x)")
    parser.add_argument("--warmup", type=int, default=10, help="steps before profiling (compilation)")
    parser.add_argument("--settle-steps", type=int, default=50,
                        help="recipes with step graphs: then warm up this many steps at a time until no new shape "
                             "is captured")
    parser.add_argument("--max-warmup", type=int, default=2000, help="most steps of that settling")
    parser.add_argument("--batch", type=int, default=16, help="GPT-2 batch (sequences of 1024)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON files (default: $OUT or .)")
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU (checks the script)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe setting, as formers train takes it (e.g. --set train.cuda_graphs=true)")
    parser.add_argument("--tag", default="", help="added to the JSON's name (step_profile_<target><tag>.json)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    out_dir = args.out or Path(os.environ.get("OUT", "."))
    out_dir.mkdir(parents=True, exist_ok=True)
    for target in args.targets:
        result = profile_gpt2(args, device) if target == "gpt2" else {target: profile_recipe(target, args, device)}
        meta = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__}
        meta["settings"] = args.set
        (out_dir / f"step_profile_{target}{args.tag}.json").write_text(json.dumps({**meta, **result}, indent=2) + "\n")
        for run, r in result.items():
            print(f"== {run}: {r['wall_ms_per_step']:.2f} ms/step wall, {r['kernel_ms_per_step']:.2f} ms of kernels "
                  f"({100 * r['gpu_busy_fraction']:.0f}% busy), {r['kernel_launches_per_step']:.0f} launches/step"
                  + (f", after warm-up {r['warmup']}" if "warmup" in r else ""))
            for k in r["top_kernels"][:8]:
                print(f"   kernel {k['ms_per_step']:8.3f} ms  x{k['calls_per_step']:<6.1f} {k['name'][:90]}")
            for k in r["top_host_ops"][:8]:
                print(f"   host   {k['self_ms_per_step']:8.3f} ms  x{k['calls_per_step']:<6.1f} {k['name'][:90]}")


if __name__ == "__main__":
    main()
