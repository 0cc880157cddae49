"""benchmarks/decode_attention_variants.py runs end to end with tiny shapes under Triton's interpreter on the CPU:
every launch setting gives the default launch's output, and the JSON records each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from formers.layers.decode_attention import triton_available

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "decode_attention_variants.py"


@pytest.mark.skipif(not triton_available(), reason="needs Triton (`pip install triton`; torch installs it on Linux)")
def test_tiny_interpreted_run(tmp_path):
    out = tmp_path / "variants.json"
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(sys.path), CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    shape = json.loads(out.read_text())["shapes"]["tiny"]
    assert set(shape["kernel_us"]) == {"block 16, warps 4, one part", "block 32, warps 4, one part",
                                       "block 16, warps 4, parts of 16", "block 32, warps 4, parts of 32"}
    assert all(r["max_abs_diff"] <= 1e-5 and r["us"] > 0 for r in shape["kernel_us"].values())
    assert shape["row_table"] and shape["sdpa_us"] > 0 and shape["cross_sdpa_us"] > 0
