"""benchmarks/beam_capture.py runs end to end on CPU with tiny models, restores the decoder settings it varies and
writes its JSON."""

from __future__ import annotations

import json

from formers.generation import seq2seq


def settings() -> tuple:
    return seq2seq._StaticStep.WARMUP_STEPS, seq2seq.CACHED_SHAPES, seq2seq.LIGHT_CAPTURE


def test_tiny_cpu_run(tmp_path, capsys, load_benchmark):
    module = load_benchmark("beam_capture")
    before = settings()
    path = tmp_path / "beam.json"
    module.main(["--tiny", "--repeats", "1", "--out", str(path)])
    assert settings() == before
    rows = json.loads(path.read_text())["rows"]
    assert len([r for r in rows if r["library"] == "formers"]) == len(module.VARIANTS)
    assert {r["max_tokens"] for r in rows if r["library"] == "transformers"} == {v[1] for v in module.VARIANTS}
    assert {r["attention"] for r in rows if r["library"] == "formers"} == {"default", "no-cudnn"}
    assert {r["light_capture"] for r in rows if r["library"] == "formers"} == {True, False}
    assert all(r["sentences_per_s"] > 0 and r["vs_marian_same_batches"] > 0 for r in rows)
    assert "default (as a translate call)" in capsys.readouterr().out
