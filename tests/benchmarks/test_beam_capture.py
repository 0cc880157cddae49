"""benchmarks/beam_capture.py runs end to end on CPU with tiny models, restores the decoder settings it varies and
writes its JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from formers.generation import seq2seq

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "beam_capture.py"


def test_tiny_cpu_run(tmp_path, capsys):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("beam_capture", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        before = seq2seq._StaticStep.WARMUP_STEPS, seq2seq.CACHED_SHAPES
        path = tmp_path / "beam.json"
        module.main(["--tiny", "--repeats", "1", "--out", str(path)])
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert (seq2seq._StaticStep.WARMUP_STEPS, seq2seq.CACHED_SHAPES) == before
    rows = json.loads(path.read_text())["rows"]
    assert len([r for r in rows if r["library"] == "formers"]) == len(module.VARIANTS)
    assert {r["max_tokens"] for r in rows if r["library"] == "transformers"} == {4096, 8192, 16384}
    assert all(r["sentences_per_s"] > 0 and r["vs_marian_same_batches"] > 0 for r in rows)
    assert "default (as a translate call)" in capsys.readouterr().out
