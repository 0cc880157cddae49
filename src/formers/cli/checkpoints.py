"""``formers average``: average the weights of the last N checkpoints, as the paper does (sec. 6.1)."""

from __future__ import annotations

import argparse
from pathlib import Path

import shutil

from formers.training.checkpoint import step_checkpoints, write_averaged_model


def average_run_checkpoints(run_dir: Path, last: int, out: Path) -> list[Path]:
    """Averages the last ``last`` step checkpoints of ``run_dir`` into model directory ``out``.

    Files saved beside the weights (``tokenizer.json``) are copied from the newest checkpoint.
    """
    if last < 2:
        raise ValueError(f"--last must be >= 2 to average anything, got {last}")
    paths = step_checkpoints(run_dir)[-last:]
    if len(paths) < 2:
        raise ValueError(f"{run_dir} holds {len(paths)} step checkpoint(s); averaging needs at least 2")
    write_averaged_model(paths, out)
    for extra in paths[-1].glob("*.json"):
        if extra.name not in ("config.json", "trainer_state.json") and not (out / extra.name).exists():
            shutil.copyfile(extra, out / extra.name)
    return paths


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
