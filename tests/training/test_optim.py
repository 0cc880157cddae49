from __future__ import annotations

import pytest
import torch
from torch import nn

from formers.training.optim import build_optimizer, param_groups


def _group_ids(groups: list[dict]) -> tuple[set[int], set[int]]:
    decay = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    return decay, no_decay


def test_groups_exclude_biases_norms_embeddings(make_model) -> None:
    model = make_model()
    groups = param_groups(model, weight_decay=0.1)
    decay, no_decay = _group_ids(groups)
    assert not decay & no_decay
    for name, p in model.named_parameters():
        if p.ndim == 1:  # biases and LayerNorm scales/shifts
            assert id(p) in no_decay, name
    for module in model.modules():
        if isinstance(module, nn.Linear):
            assert id(module.weight) in decay
        if isinstance(module, nn.LayerNorm):
            assert id(module.weight) in no_decay and id(module.bias) in no_decay
    assert id(model.encoder.embed.weight) in no_decay  # the (tied) token embedding matrix


def test_tied_parameter_appears_once(make_model) -> None:
    model = make_model()  # share_embeddings + tie_output: one (V, D) matrix used three times
    shared = [p for p in model.parameters() if p.shape == (24, 32)]
    assert len(shared) == 1
    groups = param_groups(model, weight_decay=0.1)
    listed = [p for g in groups for p in g["params"]]
    assert len(listed) == len({id(p) for p in listed})
    assert sum(p.numel() for p in listed) == sum(p.numel() for p in model.parameters())
    assert sum(id(p) == id(shared[0]) for p in listed) == 1
    optimizer = build_optimizer(model, lr=1e-3)  # torch raises if a parameter is listed twice
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(listed)


def test_no_weight_decay_hook_and_frozen_params() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
            self.proj = nn.Linear(8, 8)
            self.frozen = nn.Linear(8, 8)
            self.frozen.requires_grad_(False)

        def no_weight_decay(self) -> set[str]:
            return {"pos_embed"}

    net = Net()
    decay, no_decay = _group_ids(param_groups(net, 0.05))
    assert decay == {id(net.proj.weight)}
    assert no_decay == {id(net.pos_embed), id(net.proj.bias)}


def test_build_optimizer_kinds_and_errors(make_model) -> None:
    model = make_model()
    opt = build_optimizer(model, "adam", lr=2e-4, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0)
    assert isinstance(opt, torch.optim.Adam) and not isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["betas"] == (0.9, 0.98) and opt.param_groups[0]["eps"] == 1e-9
    assert isinstance(build_optimizer(model), torch.optim.AdamW)
    sgd = build_optimizer(model, "sgd", lr=1.0, weight_decay=0.0)
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0 and sgd.param_groups[0]["lr"] == 1.0
    with pytest.raises(ValueError, match="name must be one of"):
        build_optimizer(model, "lamb")
    with pytest.raises(ValueError, match="lr must be > 0"):
        build_optimizer(model, lr=0.0)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(nn.Linear(2, 2).requires_grad_(False))


def test_fused_update_defaults_to_cuda_parameters_and_matches_foreach(make_model) -> None:
    model = make_model()
    assert not build_optimizer(model).defaults["fused"]  # CPU parameters: PyTorch's default (foreach) update
    fused_model, plain_model = make_model(seed=3), make_model(seed=3)
    fused = build_optimizer(fused_model, lr=1e-2, fused=True)
    plain = build_optimizer(plain_model, lr=1e-2, fused=False)
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    for m, opt in ((fused_model, fused), (plain_model, plain)):
        for p in m.parameters():
            p.grad = torch.full_like(p, 0.5)
        opt.step()
    for (name, a), b in zip(fused_model.state_dict().items(), plain_model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_parameters_get_the_fused_update(make_model) -> None:
    assert build_optimizer(make_model().cuda()).defaults["fused"]


def test_lr_scales_give_named_parameters_their_own_rate() -> None:
    from formers.training.schedules import build_scheduler

    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    opt = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.1, lr_scales={"0.": 0.1, "0.bias": 0.5})
    by_param = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    assert by_param[id(model[0].weight)] == (pytest.approx(1e-4), 0.1)
    assert by_param[id(model[0].bias)] == (pytest.approx(5e-4), 0.0)  # the longest prefix wins
    assert by_param[id(model[2].weight)] == (1e-3, 0.1) and by_param[id(model[1].weight)] == (1e-3, 0.0)
    assert sum(len(g["params"]) for g in opt.param_groups) == 6 and "lr_scale" not in opt.param_groups[0]
    scheduler = build_scheduler(opt, "cosine", warmup_steps=2, total_steps=10)
    opt.step(), scheduler.step()
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[id(model[0].weight)] == pytest.approx(0.1 * lrs[id(model[2].weight)])  # the schedule scales both
    with pytest.raises(ValueError, match="matches no parameter"):
        build_optimizer(model, lr_scales={"backbone.": 0.1})
    with pytest.raises(ValueError, match="must be > 0"):
        build_optimizer(model, lr_scales={"0.": 0.0})
