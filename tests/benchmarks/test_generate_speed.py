"""benchmarks/generate_speed.py runs end to end on CPU with tiny models and writes its JSON."""

from __future__ import annotations

import json


def test_tiny_cpu_run_writes_every_comparison(load_benchmark, tmp_path, capsys):
    module = load_benchmark("generate_speed")
    path = tmp_path / "speed.json"
    module.main(["--device", "cpu", "--tiny", "--new-tokens", "8", "--sentences", "4", "--out", str(path)])
    out = json.loads(path.read_text())
    for name in ("greedy_b1", "greedy_b32", "sample_b1"):
        runs = out["gpt2"]["workloads"][name]["runs"]
        for run in ("formers_generate", "formers_eager", "formers_fast", "hf_generate"):
            assert runs[run]["tokens_per_s"] > 0, (name, run, runs[run])
        assert out["gpt2"]["workloads"][name]["formers_generate_vs_hf"] > 0
    assert out["gpt2"]["fast_equals_eager_fp32"] == {"greedy": True, "sampling": True}
    runs = out["translation"]["runs"]
    assert all(runs[r]["sentences_per_s"] > 0 for r in ("formers_beam_search", "formers_beam_search_eager", "formers_beam_search_fast", "hf_marian_generate"))
    assert out["translation"]["fast_equals_eager_fp32"] is True
    assert "default/HF" in capsys.readouterr().out
    assert out["complete"] is True


def test_a_run_cut_short_keeps_the_sections_it_finished(load_benchmark, tmp_path, monkeypatch):
    module = load_benchmark("generate_speed")

    def killed(*args):
        raise KeyboardInterrupt  # as a timeout's signal would end the run

    monkeypatch.setattr(module, "bench_translation", killed)
    path = tmp_path / "speed.json"
    try:
        module.main(["--device", "cpu", "--tiny", "--new-tokens", "4", "--sentences", "2", "--out", str(path)])
    except KeyboardInterrupt:
        pass
    out = json.loads(path.read_text())
    assert out["complete"] is False and "translation" not in out
    assert out["gpt2"]["workloads"]["greedy_b1"]["runs"]["formers_generate"]["tokens_per_s"] > 0
