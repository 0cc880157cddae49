from __future__ import annotations

import torch
from torch import nn

from formers.layers.weight_init import trunc_normal_init_


def test_linears_truncated_normal_zero_bias_norms_identity_others_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.LayerNorm(512), nn.Conv2d(3, 4, 3), nn.Linear(512, 8, bias=False))
    with torch.no_grad():
        model[1].weight.fill_(3.0), model[1].bias.fill_(-1.0), model[0].bias.fill_(5.0)
    conv = model[2].weight.clone()
    trunc_normal_init_(model, std=0.02)
    w = model[0].weight
    assert abs(w.std().item() - 0.02) < 1e-3 and w.abs().max().item() <= 2.0
    assert torch.equal(model[0].bias, torch.zeros(512))
    assert torch.equal(model[1].weight, torch.ones(512)) and torch.equal(model[1].bias, torch.zeros(512))
    assert torch.equal(model[2].weight, conv)


def test_std_is_before_truncation_at_plus_minus_two():
    torch.manual_seed(0)
    layer = nn.Linear(256, 256)
    trunc_normal_init_(layer, std=1.5)  # [-2, 2] cuts a N(0, 1.5): the draws pile up inside, none outside
    assert layer.weight.abs().max().item() <= 2.0 and layer.weight.std().item() < 1.5


def test_same_draws_as_torch_trunc_normal_in_module_order():
    a, b = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 4)), nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 4))
    torch.manual_seed(1)
    trunc_normal_init_(a)
    torch.manual_seed(1)
    for m in b:
        nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
    assert torch.equal(a[0].weight, b[0].weight)
    assert torch.equal(a[1].weight, b[1].weight)
