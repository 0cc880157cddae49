"""``formers average``: average the weights of the last N checkpoints, as the paper does (sec. 6.1)."""

from __future__ import annotations

import argparse
from pathlib import Path

from formers.training.checkpoint import average_run_checkpoints


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("average", help="average the last N checkpoints of a run into a new model directory")
    p.add_argument("run_dir", type=Path, help="training run directory (holding checkpoints/)")
    p.add_argument("--last", type=int, default=5, help="how many of the latest step checkpoints (default 5)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: RUN_DIR/averaged)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.out or args.run_dir / "averaged"
    used = average_run_checkpoints(args.run_dir, args.last, out)
    print(f"averaged {len(used)} checkpoints ({', '.join(p.name for p in used)}) into {out}")
    return 0
