"""``formers train RECIPE_OR_CONFIG [--set key=value ...] [--resume]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from formers.config import parse_set_args
from formers.recipes.recipe import load_recipe
from formers.recipes.run import run_recipe


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a recipe (see `formers recipes`) or a YAML config")
    p.add_argument("recipe", help="built-in recipe name or path to a .yaml/.json config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.embed_dim=256 --set train.max_steps=100")
    p.add_argument("--run-dir", type=Path, default=None, help="output directory (default: runs/<recipe name>)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (same as --set train.deterministic=true); slower on GPU")
    p.add_argument("--seed", type=int, default=None, help="random seed (same as --set train.seed=N)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = parse_set_args(args.overrides)
    if args.deterministic:
        overrides["train.deterministic"] = True
    if args.seed is not None:
        overrides["train.seed"] = args.seed
    recipe = load_recipe(args.recipe, overrides)
    run_dir = args.run_dir or Path("runs") / recipe.name
    if not args.resume and (run_dir / "checkpoints" / "latest").exists():
        raise ValueError(
            f"run directory {run_dir} already holds checkpoints; pass --resume to continue it or --run-dir for a new run"
        )
    run_recipe(recipe, run_dir, resume=args.resume)
    return 0
