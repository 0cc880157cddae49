"""benchmarks/activation_checkpointing.py runs (tiny GPT on the CPU) and writes both modes to its JSON."""

from __future__ import annotations

import json

import pytest
import torch


def test_the_benchmark_measures_both_modes_on_a_tiny_cpu_model(load_benchmark, tmp_path, capsys):
    module = load_benchmark("activation_checkpointing")
    torch.set_num_threads(1)
    out = tmp_path / "ac.json"
    report = module.main(["--model", "gpt_mini", "--device", "cpu", "--batch-size", "2", "--seq-len", "16",
                          "--steps", "1", "--warmup", "1", "--precision", "fp32", "--set", "embed_dim=16",
                          "--set", "num_layers=2", "--set", "vocab_size=64", "--set", "eos_id=null", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(report))
    off, on = saved["runs"]
    assert not off["activation_checkpointing"] and on["activation_checkpointing"] and on["blocks"] == 2
    assert not off["oom"] and not on["oom"] and off["tokens_per_s"] > 0 and on["tokens_per_s"] > 0
    assert on["loss"] == pytest.approx(off["loss"], rel=1e-6)  # the same model and step, recomputed
    assert "with activation checkpointing: peak" in capsys.readouterr().out
