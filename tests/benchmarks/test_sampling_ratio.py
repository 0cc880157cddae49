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


def test_compile_flag_compiles_the_model_part_once_for_both_paths(load_benchmark, tmp_path, monkeypatch):
    from formers.generation import static_lm, step_compile

    monkeypatch.setattr(step_compile, "_inductor_for_steps", "eager")  # dynamo's graphs, no code generation
    compiled = []

    def counted(step):
        compiled.append(step.__name__)
        return step_compile.compile_step(step)

    monkeypatch.setattr(static_lm, "compile_step", counted)
    module = load_benchmark("sampling_ratio")
    out = module.main(["--device", "cpu", "--tiny", "--compile", "--new-tokens", "4", "--rounds", "1", "--out",
                       str(tmp_path / "ratio.json")])
    assert compiled == ["_body", "_emit", "_emit"]  # greedy's first call: both parts; sampling's: its choice only
    assert all(row["first_s"] > 0 for row in out["paths"].values())
