"""benchmarks/linear_cross_entropy.py runs on the CPU at tiny sizes and writes its JSON."""

from __future__ import annotations

import json

import pytest


def test_tiny_cpu_run_measures_both_losses(load_benchmark, tmp_path, capsys):
    module = load_benchmark("linear_cross_entropy")
    out = tmp_path / "lce.json"
    report = module.main(["--device", "cpu", "--tiny", "--steps", "1", "--warmup", "1", "--label-smoothing", "0.1",
                          "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(report))
    full, chunked = saved["runs"]["full"], saved["runs"]["chunked"]
    assert full["ms"] > 0 and chunked["ms"] > 0
    assert chunked["loss"] == pytest.approx(full["loss"], rel=1e-3)  # bf16 GEMMs both
    # the full loss holds 256 x 500 float32 logits (and more); the chunked one 64-row chunks of them
    assert full["accounted_peak_mb"] * 2**20 >= 256 * 500 * 4
    assert chunked["accounted_peak_mb"] < full["accounted_peak_mb"] / 2
    assert "chunked" in capsys.readouterr().out
