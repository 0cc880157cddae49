"""benchmarks/transformer_speed.py: formers' Transformer-base against nn.Transformer, run tiny on the CPU."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "transformer_speed.py"


def load():
    spec = importlib.util.spec_from_file_location("transformer_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_times_both_models_with_the_same_embedding_and_output_layer(tmp_path, capsys):
    module = load()
    out = tmp_path / "ts.json"
    result = module.main(["--smoke", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    tps = saved["target_tokens_per_s"]
    assert set(tps) == {"formers", "nn.Transformer", "formers (targets=)"} and all(v > 0 for v in tps.values())
    assert saved["speedup_vs_nn_transformer"] == tps["formers"] / tps["nn.Transformer"]
    assert saved["speedup_targets_vs_nn_transformer"] == tps["formers (targets=)"] / tps["nn.Transformer"]
    # Same embedding (one shared, tied matrix) and blocks: nn.Transformer only adds its two final LayerNorms.
    d = saved["embed_dim"]
    assert saved["parameters"]["nn.Transformer"] - saved["parameters"]["formers"] == 2 * 2 * d
    for loss in saved["last_loss"].values():  # untrained: about ln(V), label smoothing included
        assert abs(loss - math.log(saved["vocab_size"])) < 1.0
    assert not saved["compiled"] and saved["smoke"]
    assert "formers / nn.Transformer" in capsys.readouterr().out


def test_the_reference_uses_a_tied_output_and_scaled_sinusoidal_embedding():
    import torch

    module = load()
    torch.manual_seed(0)
    ref = module.TorchTransformer(50, 16, 2, 32, 1, 0.0, 20).eval()
    ids = torch.randint(3, 50, (2, 5))
    expected = ref.embed(ids) * 4.0 + module.sinusoidal_table(20, 16)[:5]
    torch.testing.assert_close(ref.embed_tokens(ids), expected)
    with torch.no_grad():
        logits = ref(ids, ids)
    assert logits.shape == (2, 5, 50)
    with torch.no_grad():  # causal: changing the last target token leaves the earlier positions' logits alone
        changed = ids.clone()
        changed[:, -1] = 3 + (changed[:, -1] - 2) % 47
        torch.testing.assert_close(ref(ids, changed)[:, :-1], logits[:, :-1])

