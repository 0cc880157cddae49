"""Training logs: ``metrics.csv`` (columns added as metrics appear) and the per-window sums behind each row."""

from __future__ import annotations

import csv
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

from torch import Tensor

from formers.training.task import StepOutput

METRICS_CSV = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
BASE_COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "nonfinite_skips")


class MetricsCSV:
    """``metrics.csv`` with columns added as metrics appear (the file is rewritten when its header grows).

    Args:
        path: the CSV file.
        keep_until_step: when resuming, rows up to this step are kept and later ones (logged after the checkpoint
            by an interrupted run) dropped; ``None`` starts a new file.
    """

    def __init__(self, path: Path, keep_until_step: int | None = None) -> None:
        self.path = path
        self.columns: list[str] = list(BASE_COLUMNS)
        self.rows: list[dict[str, Any]] = []
        if keep_until_step is not None and path.exists():
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                self.columns += [c for c in reader.fieldnames or [] if c not in self.columns]
                self.rows = [r for r in reader if r.get("step", "").isdigit() and int(r["step"]) <= keep_until_step]
        self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)

    def write(self, row: dict[str, Any]) -> None:
        """Appends ``row`` (floats written with full precision)."""
        row = {k: (repr(float(v)) if isinstance(v, float) else v) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
            return
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=self.columns, restval="").writerow(row)


class StepWindow:
    """Sums over the steps since the last log row; tensors stay on the device until :meth:`read`."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.losses: list[float] = []
        self.norms: list[float] = []
        self.tokens: int | Tensor = 0
        self.metric_sums: dict[str, Tensor | float] = {}
        self.micro_batches = 0

    def add_micro(self, out: StepOutput) -> None:
        self.micro_batches += 1
        tokens = out.num_tokens.detach() if isinstance(out.num_tokens, Tensor) else out.num_tokens
        self.tokens = self.tokens + tokens
        for k, v in out.metrics.items():
            v = v.detach().float() if isinstance(v, Tensor) else float(v)
            self.metric_sums[k] = self.metric_sums[k] + v if k in self.metric_sums else v

    def read(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        finite_losses = [x for x in self.losses if math.isfinite(x)]
        finite_norms = [x for x in self.norms if math.isfinite(x)]
        row = {
            "loss": sum(finite_losses) / len(finite_losses) if finite_losses else float("nan"),
            "grad_norm": sum(finite_norms) / len(finite_norms) if finite_norms else float("nan"),
            "tokens_per_s": float(self.tokens) / elapsed,
        }
        for k, v in self.metric_sums.items():  # the one sync per log row
            row[f"train_{k}"] = float(v) / max(self.micro_batches, 1)
        return row


def open_logs(run_dir: Path, keep_until_step: int | None, tensorboard: bool) -> tuple[MetricsCSV, Any]:
    """``run_dir/metrics.csv`` and, when asked for and installed, a TensorBoard writer in ``run_dir/tensorboard``
    (``None`` otherwise). Resuming (``keep_until_step``) drops the rows and events an interrupted run logged after
    its last checkpoint."""
    csv_log = MetricsCSV(run_dir / METRICS_CSV, keep_until_step=keep_until_step)
    if not tensorboard:
        return csv_log, None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed: logging to metrics.csv only", stacklevel=4)
        return csv_log, None
    purge = keep_until_step + 1 if keep_until_step is not None else None
    return csv_log, SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=purge)


def add_scalars(tb: Any, section: str, values: dict[str, Any], step: int) -> None:
    """Writes ``values``' finite numbers to TensorBoard as ``section/name`` at ``step`` (``tb`` None: nothing);
    a ``train_`` prefix is dropped from the names."""
    if tb is None:
        return
    for k, v in values.items():
        if k not in ("step", "epoch") and math.isfinite(v := float(v)):
            tb.add_scalar(f"{section}/{k.removeprefix('train_')}", v, step)


CURVES_PNG = "curves.png"


def draw_curves(run_dir: Path) -> None:
    """Draws ``run_dir/curves.png`` from its ``metrics.csv``; a failure only warns (it must never end a training
    run)."""
    from formers.viz.curves import plot_curves

    try:
        plot_curves(run_dir / METRICS_CSV, run_dir / CURVES_PNG)
    except Exception as e:
        warnings.warn(f"could not draw {run_dir / CURVES_PNG}: {e}", stacklevel=3)
