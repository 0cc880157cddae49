"""benchmarks/gpt2_speed.py's training half runs on CPU with tiny models (--smoke), its step variants included."""

from __future__ import annotations

import json

import pytest


def test_smoke_training_times_both_libraries_and_the_batch_and_tuning_variants(load_benchmark, tmp_path, monkeypatch):
    monkeypatch.delenv("OUT", raising=False)
    module = load_benchmark("gpt2_speed")
    path = tmp_path / "gpt2.json"
    module.main(["--smoke", "--skip-generation", "--hf-default-only", "--batch-sweep", "3", "--tuned", "--steps", "2",
                 "--warmup", "1", "--output", str(path)])
    training = json.loads(path.read_text())["training"]
    runs = training["runs"]
    # the same weights compute the same function (bf16 autocast: to bf16 rounding)
    assert training["initial_loss"]["formers"] == pytest.approx(training["initial_loss"]["hf"], rel=1e-3)
    assert {"formers_compiled", "hf_compiled", "formers_eager"} <= set(runs)
    variants = {name: runs[name]["batch"] for name in runs if name.startswith("formers_compiled_b")}
    assert variants == {"formers_compiled_b3": 3, "formers_compiled_b2_tuned": 2, "formers_compiled_b3_tuned": 3}
    for name in variants:
        assert runs[name]["tokens_per_s"] > 0 and len(runs[name]["last_losses"]) == 3
