from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import formers
from formers.layers import SelfAttention, value_checks
from formers.models.efficientformer import EfficientFormer, EfficientFormerConfig
from formers.registry import create_config

# small enough for CPU: 2 stages, 4x4 attention grid at 32x32
TINY = dict(
    image_size=32, in_channels=3, num_classes=5, depths=(1, 2), embed_dims=(8, 16), downsamples=(False, True),
    num_attn_blocks=1, num_heads=2, key_dim=4,
)
FASHION_MNIST = Path(os.environ.get("FORMERS_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def _noisy(model):
    with torch.no_grad():  # move off the init (layer scale 1e-5, zero biases) so every path shows in the output
        for name, p in model.named_parameters():
            if "gamma" in name:
                p.uniform_(0.5, 1.0)
            else:
                p.add_(0.3 * torch.randn_like(p))
    return model


def _set_backend(model, backend):
    for m in model.modules():
        if isinstance(m, SelfAttention):
            m.backend = backend


def test_published_variants_match_timm_sizes():
    shapes = [create_config(n) for n in ("efficientformer_l1", "efficientformer_l3", "efficientformer_l7")]
    assert [(c.depths, c.embed_dims, c.num_attn_blocks) for c in shapes] == [
        ((3, 2, 6, 4), (48, 96, 224, 448), 1), ((4, 4, 12, 6), (64, 128, 320, 512), 4),
        ((6, 6, 18, 8), (96, 192, 384, 768), 8),
    ]
    counts = []
    for name in ("efficientformer_l1", "efficientformer_l3", "efficientformer_l7"):
        with torch.device("meta"):
            counts.append(sum(p.numel() for p in formers.create_model(name).parameters()))
    assert counts == [12_289_928, 31_406_000, 82_229_328]  # timm 1.0.31's efficientformer_l1/l3/l7
    assert all(c.grid_size == 7 and c.stride == 32 for c in shapes)


def test_mini_28_takes_fashion_mnist_shapes():
    model = formers.create_model("efficientformer_mini_28").eval()
    assert model.config.grid_size == 4 and model.config.in_channels == 1
    assert model(torch.randn(2, 1, 28, 28)).logits.shape == (2, 10)
    with pytest.raises(ValueError, match=r"25\.\.32"):
        model(torch.randn(2, 1, 24, 24))


def test_features_head_and_reset_classifier():
    model = _noisy(EfficientFormer(EfficientFormerConfig(**TINY))).eval()
    images = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(images)
    assert feats.shape == (2, 16, 16)  # (B, 4x4 tokens, D)
    torch.testing.assert_close(model.forward_head(feats), model(images).logits, rtol=0, atol=0)
    model.reset_classifier(7)
    assert model.config.num_classes == 7 and model(images).logits.shape == (2, 7)
    assert not model.head.training  # the new heads follow the model's mode
    model.reset_classifier(0)
    assert model.config.num_classes == 0
    torch.testing.assert_close(model(images).logits, feats.mean(dim=1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)


def test_attention_bias_tables_are_not_decayed():
    from formers.training.optim import param_groups

    model = EfficientFormer(EfficientFormerConfig(**{**TINY, "num_attn_blocks": 2}))
    tables = {"stages.1.attn_blocks.0.attn_bias.table", "stages.1.attn_blocks.1.attn_bias.table"}
    assert model.no_weight_decay() == tables
    decayed = {id(p) for p in param_groups(model, 0.05)[0]["params"]}
    params = dict(model.named_parameters())
    assert not any(id(params[n]) in decayed for n in tables)
    assert id(params["stages.1.attn_blocks.0.attn.qkv.weight"]) in decayed


def test_sdpa_and_math_backends_agree():
    model = _noisy(EfficientFormer(EfficientFormerConfig(**{**TINY, "num_attn_blocks": 2}))).eval()
    images = torch.randn(2, 3, 32, 32)
    _set_backend(model, "sdpa")
    fast = model(images).logits
    _set_backend(model, "math")
    torch.testing.assert_close(model(images).logits, fast, rtol=0, atol=1e-5)


def test_attention_biases_change_the_output():
    model = _noisy(EfficientFormer(EfficientFormerConfig(**TINY))).eval()
    images = torch.randn(2, 3, 32, 32)
    before = model(images).logits
    with torch.no_grad():
        model.stages[-1].attn_blocks[0].attn_bias.table.normal_()
    assert not torch.allclose(model(images).logits, before)


def test_non_square_inputs_within_the_grid_range():
    model = _noisy(EfficientFormer(EfficientFormerConfig(**TINY))).eval()
    assert model(torch.randn(1, 3, 25, 32)).logits.shape == (1, 5)  # ceil(25/8) = ceil(32/8) = 4


def test_stochastic_depth_only_in_training():
    model = _noisy(EfficientFormer(EfficientFormerConfig(**{**TINY, "drop_path_rate": 0.5})))
    images = torch.randn(4, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model(images).logits, model(images).logits, rtol=0, atol=0)
    model.train()
    torch.manual_seed(1)
    a = model(images).logits
    torch.manual_seed(2)
    assert not torch.allclose(a, model(images).logits)
    rates = [b.drop_path.p for s in model.stages for b in list(s.blocks) + list(s.attn_blocks)]
    assert rates == pytest.approx([0.0, 0.25, 0.5])  # linear over all blocks, as timm


@pytest.mark.parametrize(
    "images, error, match",
    [
        (torch.randn(2, 1, 32, 32), ValueError, "1 channels, the model expects in_channels=3"),
        (torch.randn(2, 3, 40, 32), ValueError, r"40x32.*5x4 token grid.*4x4 grid.*25\.\.32"),
        (torch.randn(2, 3, 16, 16), ValueError, r"image_size=32"),
        (torch.full((2, 3, 32, 32), float("nan")), ValueError, "NaN"),
        (torch.randn(0, 3, 32, 32), ValueError, "empty batch"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), TypeError, "floating"),
        (torch.randn(3, 32, 32), ValueError, r"\(batch, channels, height, width\)"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_errors(images, error, match):
    model = EfficientFormer(EfficientFormerConfig(**TINY))
    with pytest.raises(error, match=match):
        model(images)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"num_attn_blocks": 3}, r"num_attn_blocks must be in \[1, depths\[-1\]=2\]"),
        ({"downsamples": (False, False)}, r"embed_dims\[1\]=16 must equal embed_dims\[0\]=8"),
        ({"depths": (1, 2, 3)}, "one entry per stage"),
        ({"pool_size": 4}, "pool_size must be an odd"),
    ],
)
def test_bad_config_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        EfficientFormerConfig(**{**TINY, **overrides})


def test_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = EfficientFormer(EfficientFormerConfig(**{**TINY, "layer_scale_init": 0.1}))
    images, labels = torch.randn(16, 3, 32, 32), torch.arange(16) % 5
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(images).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(images).logits.argmax(-1) == labels).float().mean() == 1.0
    assert F.cross_entropy(model(images).logits, labels) < 0.2


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images (N, 1, 28, 28) normalised to mean 0 / std 1 and labels (N,); skips when absent."""
    prefix = "train" if split == "train" else "t10k"
    images, labels = FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz", FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.exists() or not labels.exists():
        pytest.skip(f"Fashion-MNIST is absent from {FASHION_MNIST}: apt-get install dataset-fashion-mnist, or set "
                    "FORMERS_FASHION_MNIST to a folder with the files of https://github.com/zalandoresearch/fashion-mnist")
    x = torch.from_numpy(_read_idx(images).copy()).float().div_(255).sub_(0.2860).div_(0.3530)[:, None]
    return x, torch.from_numpy(_read_idx(labels).astype(np.int64))


def test_short_fashion_mnist_run_learns():
    """CPU: a tiny EfficientFormer after 40 steps on 2,000 real images is well above chance (10%; measured 0.47)."""
    x, y = fashion_mnist("train")
    x_test, y_test = fashion_mnist("test")
    torch.manual_seed(0)
    cfg = create_config("efficientformer_mini_28", depths=(1, 2), embed_dims=(16, 32), num_attn_blocks=1,
                        num_heads=2, key_dim=8, drop_path_rate=0.0, layer_scale_init=0.1)
    model = EfficientFormer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for i in range(0, 2000, 50):
        loss = F.cross_entropy(model(x[i : i + 50]).logits, y[i : i + 50])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x_test[:1000]).logits.argmax(-1) == y_test[:1000]).float().mean().item()
    assert acc > 0.35, acc


@pytest.mark.slow
@pytest.mark.gpu
def test_mini_28_reaches_092_on_fashion_mnist_in_minutes():
    """GPU recipe: efficientformer_mini_28 from scratch, bf16 autocast, AdamW + one-cycle, random-crop/flip
    augmentation, 30 epochs capped at 3 minutes; test accuracy >= 0.92 (the issue's target). Measured on one H200:
    0.9247 after 164 s (host-bound: ~20 ms a step). Run: ``pytest -m "slow and gpu" -s -k fashion
    tests/models/test_efficientformer.py`` (``FORMERS_FASHION_MNIST`` = the folder of the four idx .gz files)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    acc, seconds = train_mini_28(epochs=int(os.environ.get("FORMERS_EF_EPOCHS", "30")), budget_s=180.0)
    print(f"efficientformer_mini_28 Fashion-MNIST test accuracy {acc:.4f} after {seconds:.0f} s")
    assert acc >= 0.92, acc


def train_mini_28(epochs: int, budget_s: float, batch_size: int = 256, lr: float = 2e-3) -> tuple[float, float]:
    """Trains ``efficientformer_mini_28`` on Fashion-MNIST on the GPU; returns (test accuracy, seconds)."""
    device = torch.device("cuda")
    x, y = (t.to(device) for t in fashion_mnist("train"))
    x_test, y_test = (t.to(device) for t in fashion_mnist("test"))
    torch.manual_seed(0)
    model = formers.create_model("efficientformer_mini_28").to(device)
    keep = model.no_weight_decay()
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and n not in keep]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1 or n in keep]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, fused=True)
    steps = epochs * (len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    padded = F.pad(x, (2, 2, 2, 2), value=float(x.min()))  # random 28x28 crops of a 32x32 canvas
    start = time.perf_counter()
    with value_checks(False):  # the NaN check would read the device every step
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(x), device=device)
            for i in range(len(x) // batch_size):
                idx = order[i * batch_size : (i + 1) * batch_size]
                dy, dx = torch.randint(0, 5, (2,)).tolist()
                xb = padded[idx, :, dy : dy + 28, dx : dx + 28]
                xb = torch.where(torch.rand(len(idx), 1, 1, 1, device=device) < 0.5, xb.flip(-1), xb)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = F.cross_entropy(model(xb).logits.float(), y[idx], label_smoothing=0.1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}, {time.perf_counter() - start:.1f} s")
            if time.perf_counter() - start > budget_s:
                break
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for i in range(0, len(x_test), 1000):
            correct += (model(x_test[i : i + 1000]).logits.argmax(-1) == y_test[i : i + 1000]).sum().item()
    return correct / len(x_test), seconds
