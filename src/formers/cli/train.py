"""``formers train RECIPE_OR_CONFIG [--set key=value ...] [--resume]``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from formers.config import parse_set_args
from formers.recipes.launch import LaunchFailed, launch
from formers.recipes.recipe import load_recipe
from formers.recipes.run import run_recipe
from formers.training.checkpoint import latest_checkpoint
from formers.training.interrupt import TrainingInterrupted

INTERRUPTED = 130  # the shell's code for a run ended by Ctrl-C (128 + SIGINT)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a recipe (see `formers recipes`) or a YAML config")
    p.add_argument("recipe", help="built-in recipe name or path to a .yaml/.json config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.embed_dim=256 --set train.max_steps=100")
    p.add_argument("--run-dir", type=Path, default=None, help="output directory (default: runs/<recipe name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run directory's latest checkpoint (refused when it has none); only when and "
                        "how to train may change (train.max_steps, eval_every, save_every, device, ...), not what")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (same as --set train.deterministic=true); slower on GPU")
    p.add_argument("--seed", type=int, default=None, help="random seed (same as --set train.seed=N)")
    p.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                   help="train on N processes of this machine (one per GPU) through torchrun; train.parallel "
                        "(ddp or fsdp) picks how, ddp when the recipe says none. Several machines: see the README")
    p.set_defaults(func=run)


def train_argv(args: argparse.Namespace) -> list[str]:
    """The arguments after ``formers train`` that repeat this run's recipe, overrides, seed and determinism."""
    argv = [args.recipe]
    for item in args.overrides:
        argv += ["--set", item]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.deterministic:
        argv.append("--deterministic")
    return argv


def resume_command(args: argparse.Namespace, run_dir: Path) -> str:
    """The command that continues this run: the same arguments, ``--run-dir`` spelled out, and ``--resume``."""
    nproc = ["--nproc-per-node", str(args.nproc_per_node)] if getattr(args, "nproc_per_node", None) else []
    return shlex.join(["formers", "train", *train_argv(args), "--run-dir", str(run_dir), "--resume", *nproc])


def run(args: argparse.Namespace) -> int:
    overrides = parse_set_args(args.overrides)
    if args.deterministic:
        overrides["train.deterministic"] = True
    if args.seed is not None:
        overrides["train.seed"] = args.seed
    recipe = load_recipe(args.recipe, overrides)
    run_dir = args.run_dir or Path("runs") / recipe.name
    if args.nproc_per_node is not None:
        return _launch(args, recipe.train.parallel, run_dir)
    try:
        run_recipe(recipe, run_dir, resume=args.resume)
    except KeyboardInterrupt as e:  # TrainingInterrupted during training, a plain one in setup or the final report
        print(f"formers train: {e if isinstance(e, TrainingInterrupted) else 'interrupted'}", file=sys.stderr)
        try:
            latest = latest_checkpoint(run_dir)
        except (OSError, ValueError):
            latest = None
        if latest is not None:
            print(f"resume with: {resume_command(args, run_dir)}", file=sys.stderr)
        return INTERRUPTED
    return 0


def _launch(args: argparse.Namespace, parallel: str, run_dir: Path) -> int:
    argv = train_argv(args) + ["--run-dir", str(run_dir)] + (["--resume"] if args.resume else [])
    if parallel == "none" and args.nproc_per_node > 1:
        print("formers train: train.parallel is 'none': using ddp on "
              f"{args.nproc_per_node} processes (--set train.parallel=fsdp to shard the model)", file=sys.stderr)
        argv += ["--set", "train.parallel=ddp"]
    try:
        launch(args.nproc_per_node, argv)
    except LaunchFailed as e:
        print(f"formers train: error: {e}", file=sys.stderr)
        try:
            latest = latest_checkpoint(run_dir)
        except (OSError, ValueError):
            latest = None
        if latest is not None:
            print(f"resume with: {resume_command(args, run_dir)}", file=sys.stderr)
        return 1
    return 0
