"""benchmarks/generate_step_variants.py runs on CPU with a tiny model and writes its JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "generate_step_variants.py"


def test_tiny_cpu_run_writes_the_uncompiled_variant(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("generate_step_variants", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "variants.json"
    module.main(["--device", "cpu", "--tiny", "--new-tokens", "6", "--repeats", "2", "--out", str(path)])
    out = json.loads(path.read_text())
    row = out["variants"]["uncompiled"]
    assert set(out["variants"]) == {"uncompiled"} and out["new_tokens"] == 6
    assert row["tokens_per_s"] > 0 and len(row["times_s"]) == 2 and row["first_s"] > 0
    assert "uncompiled" in capsys.readouterr().out
