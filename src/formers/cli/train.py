"""``formers train RECIPE_OR_CONFIG [--set key=value ...] [--resume]``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from formers.config import parse_set_args
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
    p.set_defaults(func=run)


def resume_command(args: argparse.Namespace, run_dir: Path) -> str:
    """The command that continues this run: the same arguments, ``--run-dir`` spelled out, and ``--resume``."""
    argv = ["formers", "train", args.recipe]
    for item in args.overrides:
        argv += ["--set", item]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.deterministic:
        argv.append("--deterministic")
    return shlex.join([*argv, "--run-dir", str(run_dir), "--resume"])


def run(args: argparse.Namespace) -> int:
    overrides = parse_set_args(args.overrides)
    if args.deterministic:
        overrides["train.deterministic"] = True
    if args.seed is not None:
        overrides["train.seed"] = args.seed
    recipe = load_recipe(args.recipe, overrides)
    run_dir = args.run_dir or Path("runs") / recipe.name
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
