"""benchmarks/run_all.py: every comparison as a subprocess with a timeout, one JSON; checked on the CPU."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "run_all.py"


@pytest.fixture()
def run_all(monkeypatch):
    spec = importlib.util.spec_from_file_location("run_all", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_all", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_smoke_subset_writes_one_json_with_machine_versions_and_each_benchmark(run_all, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "all.json"
    run_all.main(["--smoke", "--only", "transformer_base", "vit", "--work-dir", str(tmp_path / "work"),
                  "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["schema"] == 1 and report["smoke"] is True
    assert set(report["versions"]) >= {"python", "torch", "cuda", "transformers", "timm", "gensim", "formers_commit"}
    assert report["versions"]["torch"] and report["date"].endswith("UTC")
    assert report["command"].startswith("python benchmarks/run_all.py --smoke --only transformer_base vit")
    assert list(report["benchmarks"]) == ["transformer_base", "vit"]  # only those, in the run order
    for name, bench in report["benchmarks"].items():
        assert bench["status"] == "ok" and bench["returncode"] == 0, bench.get("output_tail")
        assert bench["command"].startswith("PYTHONPATH=src python benchmarks/") and "--smoke" in bench["command"]
        assert bench["rows"], name
        for row in bench["rows"]:
            assert row["formers"] > 0 and row["peer"] > 0
            assert row["ratio"] == pytest.approx(row["formers"] / row["peer"])
            assert row["met"] == (row["ratio"] >= row["target_ratio"])
    tb = report["benchmarks"]["transformer_base"]
    tps = tb["result"]["target_tokens_per_s"]
    assert [r["formers"] for r in tb["rows"]] == [tps["formers"], tps["formers (targets=)"]]
    assert [r["workload"].split(",")[0] for r in report["benchmarks"]["vit"]["rows"]] == [
        "ViT-B/16 training", "ViT-B/16 inference"]


def fake_benchmark(run_all, name: str, code: str):
    """A benchmark whose script is ``code`` (it gets the JSON path as its argument)."""
    return run_all.Benchmark(name, name, f"{name}.py", lambda d: [str(d / "result.json")],
                             lambda d: [str(d / "result.json")], "result.json", 60,
                             lambda r: [run_all.row("x", "items/s", r["ours"], "peer", r["peer"], target_ratio=2)])


def test_a_failing_or_timed_out_benchmark_is_recorded_and_the_rest_still_run(run_all, tmp_path, monkeypatch):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "broken.py").write_text("import sys\nprint('going down')\nsys.exit(3)\n")
    (scripts / "slow.py").write_text("import time\ntime.sleep(60)\n")
    (scripts / "good.py").write_text(
        "import json, sys\nopen(sys.argv[1], 'w').write(json.dumps({'ours': 30.0, 'peer': 10.0}))\n")
    monkeypatch.setattr(run_all, "BENCH", scripts)
    items = [fake_benchmark(run_all, n, "") for n in ("broken", "slow", "good")]
    monkeypatch.setattr(run_all, "benchmarks", lambda minutes: items)
    real_run_one = run_all.run_one
    monkeypatch.setattr(run_all, "run_one", lambda b, w, s, t: real_run_one(b, w, s, 2.0 if b.name == "slow" else t))
    out = tmp_path / "all.json"
    run_all.main(["--work-dir", str(tmp_path / "work"), "--out", str(out)])
    benches = json.loads(out.read_text())["benchmarks"]
    assert benches["broken"]["status"] == "failed" and benches["broken"]["returncode"] == 3
    assert "going down" in benches["broken"]["output_tail"] and "rows" not in benches["broken"]
    assert benches["slow"]["status"] == "timeout" and benches["slow"]["returncode"] is None
    assert benches["slow"]["seconds"] < 30
    good = benches["good"]
    assert good["status"] == "ok" and good["result"] == {"ours": 30.0, "peer": 10.0}
    assert good["rows"][0]["ratio"] == 3.0 and good["rows"][0]["met"] is True


def test_only_and_skip_take_names_and_groups_and_reject_unknown_ones(run_all):
    items = run_all.benchmarks(2.0)
    profiles = [b.name for b in run_all.select(items, ["step_profile"], [])]
    assert "profile-multi30k-en-de" in profiles and "profile-vit-fashion-mnist" in profiles
    assert "profile-quickstart" not in profiles and all(p.startswith("profile-") for p in profiles)
    rest = [b.name for b in run_all.select(items, None, ["step_profile", "word2vec"])]
    assert rest == ["generate", "multi30k_train", "transformer_base", "vit", "swin", "gpt2_train", "detr", "linear_ce"]
    with pytest.raises(ValueError, match=r"--only: unknown benchmark\(s\) \['vitt'\]"):
        run_all.select(items, ["vitt"], [])
    with pytest.raises(SystemExit, match="unknown"):
        run_all.main(["--skip", "nope"])


def test_rows_compare_formers_with_the_peer_and_check_issue_15_targets(run_all):
    r = run_all.row("w", "tokens/s", 4000.0, "HF", 300.0, target_ratio=10, target_value=3000)
    assert r["ratio"] == pytest.approx(13.33, abs=0.01) and r["met"] is True
    assert run_all.row("w", "tokens/s", 2000.0, "HF", 100.0, target_ratio=10, target_value=3000)["met"] is False
    assert run_all.row("w", "tokens/s", None, "HF", 100.0, target_ratio=10)["met"] is None  # a missing figure
    assert run_all.row("w", "words/s", 5.0, "gensim", 10.0)["met"] is None  # no target
    assert run_all.gpu_tag("NVIDIA H100 80GB HBM3") == "h100" and run_all.gpu_tag(None) == "cpu"
    rows = run_all.generate_rows({"gpt2": {"workloads": {
        "greedy_b1": {"runs": {"formers_generate": {"tokens_per_s": 1000.0}, "hf_generate": {"tokens_per_s": 100.0}}},
        "sample_b1": {"runs": {"formers_generate": {"tokens_per_s": 950.0}, "hf_generate": {"error": "boom"}}},
    }}, "translation": {"sentences": 1014, "runs": {}}})
    assert [r["met"] for r in rows] == [False, None, True, None]  # b1 under 3,000; b32 missing; sampling >= 90%
    assert rows[2]["target_value"] == 900.0 and rows[2]["ratio"] is None
    beam = run_all.generate_rows({"translation": {"sentences": 1014, "runs": {
        "formers_beam_search": {"sentences_per_s": 4000.0}, "formers_beam_search_kept": {"sentences_per_s": 5500.0},
        "hf_marian_generate": {"sentences_per_s": 740.0}}}})[3:]
    assert [(r["formers"], round(r["ratio"], 2)) for r in beam] == [(4000.0, 5.41), (5500.0, 7.43)]
    assert "graphs kept" in beam[1]["workload"] and not any(r["met"] for r in beam)


def test_append_adds_a_later_run_on_the_same_machine_and_refuses_another_one(run_all, load_benchmark, tmp_path,
                                                                             monkeypatch):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name, ours in (("one", 30.0), ("two", 50.0)):
        (scripts / f"{name}.py").write_text(
            f"import json, sys\nopen(sys.argv[1], 'w').write(json.dumps({{'ours': {ours}, 'peer': 10.0}}))\n")
    monkeypatch.setattr(run_all, "BENCH", scripts)
    monkeypatch.setattr(run_all, "benchmarks", lambda minutes: [fake_benchmark(run_all, n, "") for n in ("one", "two")])
    out = tmp_path / "all.json"
    first = run_all.main(["--only", "one", "--work-dir", str(tmp_path / "w1"), "--out", str(out)])
    both = run_all.main(["--only", "two", "--append", "--work-dir", str(tmp_path / "w2"), "--out", str(out)])
    assert json.loads(out.read_text()) == both
    assert [b["result"]["ours"] for b in both["benchmarks"].values()] == [30.0, 50.0]
    assert [r["date"] for r in both["runs"]] == [first["date"], both["runs"][1]["date"]]
    assert both["command"] == f"{first['command']} ; {both['runs'][1]['command']}" and "--append" in both["command"]
    readme_tables = load_benchmark("readme_tables")
    assert "from 2 consecutive runs (`--append`) on one machine" in readme_tables.render(both, "all.json")
    moved = {**both, "gpu": "another GPU"}
    out.write_text(json.dumps(moved))
    with pytest.raises(SystemExit, match=r"--append: .*all.json has gpu 'another GPU', this run None"):
        run_all.main(["--only", "one", "--append", "--work-dir", str(tmp_path / "w3"), "--out", str(out)])
    assert json.loads(out.read_text()) == moved  # left as it was
    with pytest.raises(SystemExit):
        run_all.main(["--append", "--out", str(tmp_path / "none.json")])


def test_readme_tables_of_several_runs_take_each_benchmark_from_the_latest_and_name_its_json(load_benchmark, tmp_path):
    readme_tables = load_benchmark("readme_tables")

    def report(gpu, date, benches):
        def rows(ours):
            return [{"workload": "w", "unit": "tokens/s", "formers": ours, "peer_name": "p", "peer": 10.0,
                     "ratio": ours / 10.0, "met": ours >= 30, "target_ratio": 3.0}]

        return {"gpu": gpu, "date": date, "command": "run_all.py", "versions": {"torch": "2.11"},
                "benchmarks": {name: {"status": "ok", "rows": rows(ours)} for name, ours in benches.items()}}

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(report("H100", "day 1", {"a": 20.0, "b": 40.0})))
    new.write_text(json.dumps(report("H100", "day 2", {"a": 35.0})))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{readme_tables.START}\nold\n{readme_tables.END}\nrest\n")
    assert readme_tables.main([str(old), str(new), "--readme", str(readme)]) == 0
    text = readme.read_text()
    table = [line for line in text.splitlines() if line.startswith("| w ")]
    assert table == ["| w | 40 tokens/s | p: 10 | 4.00x | >= 3x | yes |",  # b from the first run
                     "| w (`new.json`) | 35 tokens/s | p: 10 | 3.50x | >= 3x | yes |"]  # a replaced by the second
    assert "Rows from 2 runs" in text and "day 1" in text and "day 2" in text and text.endswith("rest\n")
    assert readme_tables.main([str(old), str(new), "--readme", str(readme), "--check"]) == 0
    assert readme_tables.main([str(old), "--readme", str(readme), "--check"]) == 1


def test_transformer_rows_compare_formers_step_graphs_with_reduce_overhead(run_all):
    tps = {"formers": 100.0, "nn.Transformer": 100.0, "formers (targets=)": 110.0,
           "formers (targets=, graphed)": 150.0, "nn.Transformer (reduce-overhead)": 120.0}
    rows = run_all.transformer_rows({"target_tokens_per_s": tps, "compiled": True, "batch_size": 128, "seq_len": 128,
                                     "vocab_size": 32000})
    assert [r["formers"] for r in rows] == [100.0, 110.0, 150.0]
    assert rows[2]["peer"] == 120.0 and rows[2]["ratio"] == 1.25 and "reduce-overhead" in rows[2]["peer_name"]
    cpu = run_all.transformer_rows({"target_tokens_per_s": {"formers": 1.0, "nn.Transformer": 2.0}})
    assert len(cpu) == 1  # a run without graphs (the CPU's) keeps one row


def test_gpt2_rows_add_formers_alone_at_each_swept_batch_size_against_the_560k_target(run_all):
    runs = {"formers_compiled": {"tokens_per_s": 490_000.0}, "hf_compiled": {"tokens_per_s": 300_000.0},
            "formers_compiled_b64": {"batch": 64, "tokens_per_s": 570_000.0},
            "formers_compiled_b16_tuned": {"batch": 16, "tokens_per_s": 500_000.0},
            "formers_compiled_b32": {"error": "OutOfMemoryError"}}
    rows = run_all.gpt2_train_rows({"training": {"batch": 16, "seq_len": 1024, "runs": runs}})
    assert [(r["formers"], r["met"]) for r in rows] == [(490_000.0, False), (570_000.0, True), (None, None)]
    assert rows[0]["ratio"] == pytest.approx(490 / 300) and rows[1]["peer"] is None
    assert "64x1024" in rows[1]["workload"] and "32x1024" in rows[2]["workload"]  # a failed run: no figure
