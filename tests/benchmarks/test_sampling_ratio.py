"""benchmarks/sampling_ratio.py runs on CPU with a tiny model and writes its JSON."""

from __future__ import annotations

import json


def test_tiny_cpu_run_times_greedy_and_sampling_alternately(load_benchmark, tmp_path, capsys):
    module = load_benchmark("sampling_ratio")
    path = tmp_path / "ratio.json"
    module.main(["--device", "cpu", "--tiny", "--new-tokens", "6", "--rounds", "3", "--out", str(path)])
    out = json.loads(path.read_text())
    assert set(out["paths"]) == {"greedy", "sampling"}
    for row in out["paths"].values():
        assert len(row["times_s"]) == 3 and row["tokens_per_s"] > 0 and row["first_s"] > 0
    assert out["paths"]["greedy"]["of_greedy"] == 1.0
    assert "of greedy" in capsys.readouterr().out
