"""Training curves: the loss and every eval metric of a run, read from its ``metrics.csv``, drawn to a PNG.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so it is safe in
headless training jobs and in processes that use another backend.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

TRAIN_LOSS = "loss"
EVAL_PREFIX = "eval_"


def read_metrics_csv(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Reads a metrics CSV into ``{column: [(step, value), ...]}``, skipping empty and non-numeric cells."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "step" not in reader.fieldnames:
            raise ValueError(f"{path} is not a metrics CSV: expected a 'step' column, got {reader.fieldnames}")
        for row in reader:
            try:
                step = int(row["step"])
            except (TypeError, ValueError):
                continue
            for key, cell in row.items():
                if key == "step" or cell in (None, ""):
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    continue
                if math.isfinite(value):
                    series.setdefault(key, []).append((step, value))
    return series


def plot_curves(csv_path: str | Path, output_path: str | Path, title: str | None = None) -> Path:
    """Draws the training loss (with ``eval_loss`` when present) and one panel per other eval metric.

    Args:
        csv_path: a metrics CSV with a ``step`` column, ``loss`` and ``eval_*`` columns (as the Trainer writes).
        output_path: the PNG to write (replaced atomically, so a reader never sees half an image).
        title: optional figure title.

    Returns:
        ``output_path``.
    """
    series = read_metrics_csv(csv_path)
    eval_metrics = sorted(k for k in series if k.startswith(EVAL_PREFIX) and k != EVAL_PREFIX + "loss")
    panels = 1 + len(eval_metrics)
    fig = Figure(figsize=(5.0 * panels, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    loss_ax = axes[0]
    for key, label in ((TRAIN_LOSS, "train loss"), (EVAL_PREFIX + "loss", "eval loss")):
        if key in series:
            steps, values = zip(*series[key])
            loss_ax.plot(steps, values, label=label, marker="o" if key != TRAIN_LOSS else None, markersize=3)
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss")
    if loss_ax.has_data():
        loss_ax.legend()
    for ax, key in zip(axes[1:], eval_metrics):
        steps, values = zip(*series[key])
        ax.plot(steps, values, marker="o", markersize=3)
        ax.set_xlabel("step")
        ax.set_title(key.removeprefix(EVAL_PREFIX))
    for ax in axes:
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    output_path = Path(output_path)
    tmp = output_path.with_name(f".{output_path.name}.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(output_path)
    return output_path
