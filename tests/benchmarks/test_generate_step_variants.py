"""benchmarks/generate_step_variants.py runs on CPU with a tiny model and writes its JSON."""

from __future__ import annotations

import json


def test_tiny_cpu_run_writes_the_uncompiled_variant(load_benchmark, tmp_path, capsys):
    module = load_benchmark("generate_step_variants")
    path = tmp_path / "variants.json"
    module.main(["--device", "cpu", "--tiny", "--new-tokens", "6", "--repeats", "2", "--out", str(path)])
    out = json.loads(path.read_text())
    row = out["variants"]["uncompiled"]
    assert set(out["variants"]) == {"uncompiled"} and out["new_tokens"] == 6
    assert row["tokens_per_s"] > 0 and len(row["times_s"]) == 2 and row["first_s"] > 0
    assert "uncompiled" in capsys.readouterr().out
