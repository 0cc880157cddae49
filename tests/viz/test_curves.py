from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.image
import pytest

from formers.viz.curves import plot_curves, read_metrics_csv


def _write_csv(path: Path) -> None:
    columns = ["step", "epoch", "loss", "lr", "eval_loss", "eval_bleu"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for step in range(1, 11):
            writer.writerow({"step": step, "epoch": 0, "loss": 5.0 / step, "lr": 1e-3})
            if step % 5 == 0:
                writer.writerow({"step": step, "epoch": 0, "eval_loss": 4.0 / step, "eval_bleu": 2.0 * step})
        writer.writerow({"step": 11, "epoch": 0, "loss": "nan", "lr": 1e-3})  # a skipped step's NaN is ignored


def test_read_metrics_csv_series(tmp_path: Path) -> None:
    _write_csv(tmp_path / "m.csv")
    series = read_metrics_csv(tmp_path / "m.csv")
    assert series["loss"][0] == (1, 5.0) and len(series["loss"]) == 10
    assert series["eval_bleu"] == [(5, 10.0), (10, 20.0)]


def test_plot_curves_writes_a_valid_png(tmp_path: Path) -> None:
    _write_csv(tmp_path / "m.csv")
    out = plot_curves(tmp_path / "m.csv", tmp_path / "curves.png", title="run")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out)  # (H, W, 4)
    assert image.ndim == 3 and image.shape[2] == 4
    assert image.shape[1] > image.shape[0]  # two panels side by side: loss and bleu
    assert image[..., :3].std() > 0.01  # something was drawn
    assert not list(tmp_path.glob(".*tmp"))


def test_plot_curves_rejects_a_csv_without_steps(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="expected a 'step' column"):
        plot_curves(tmp_path / "bad.csv", tmp_path / "c.png")
