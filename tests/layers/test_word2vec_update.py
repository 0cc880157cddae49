"""The fused Triton update equals word2vec's torch update (the reference path of ``Word2Vec.sgd_step_``).

Runs on CUDA (marked ``gpu``); on a CPU with Triton installed it also runs in Triton's interpreter when
``TRITON_INTERPRET=1`` is set (``TRITON_INTERPRET=1 pytest tests/layers/test_word2vec_update.py -m ""``)."""

from __future__ import annotations

import os

import pytest
import torch

from formers.layers import word2vec_update
from formers.models.word2vec import Word2Vec, Word2VecConfig, output_rows

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1" and word2vec_update.triton is not None
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton = pytest.mark.skipif(
    word2vec_update.triton is None or not (torch.cuda.is_available() or INTERPRETED),
    reason="needs Triton on CUDA (or TRITON_INTERPRET=1 with triton installed on a CPU)")

VOCAB, DIM = 50, 20  # DIM not a power of two: the kernels' masked tail


def _case(config: Word2VecConfig, num: int, seed: int) -> tuple[Word2Vec, dict, list, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Word2Vec(config)
    with torch.no_grad():  # non-zero output tables, some dot products beyond MAX_EXP
        for p in model.parameters():
            p.normal_(0, 0.7)
    targets = torch.randint(0, VOCAB, (num,), generator=g)
    if config.architecture == "skipgram":
        inputs, mask = torch.randint(0, VOCAB, (num,), generator=g), None
    else:
        inputs, mask = torch.randint(0, VOCAB, (num, 6), generator=g), torch.rand(num, 6, generator=g) < 0.6
        mask[:, 0] = True
    negatives = torch.randint(0, VOCAB, (num, config.negative), generator=g) if config.negative else None
    if negatives is not None:
        negatives[:3] = targets[:3, None]  # negatives equal to their target are skipped
    points = codes = path_mask = None
    if config.hierarchical_softmax:
        points = torch.randint(0, VOCAB - 1, (num, 5), generator=g)
        codes = torch.randint(0, 2, (num, 5), generator=g)
        path_mask = torch.arange(5)[None, :] < torch.randint(1, 6, (num, 1), generator=g)
    rows = output_rows(targets.to(DEVICE), *(t.to(DEVICE) if t is not None else None
                                              for t in (negatives, points, codes, path_mask)))
    tables = {n: p.detach().clone().to(DEVICE) for n, p in model.named_parameters()}
    return model, tables, rows, inputs.to(DEVICE), None if mask is None else mask.to(DEVICE)


@needs_triton
@pytest.mark.gpu
@pytest.mark.parametrize("config", [
    Word2VecConfig(VOCAB, DIM, "skipgram", negative=5),
    Word2VecConfig(VOCAB, DIM, "cbow", negative=5),
    Word2VecConfig(VOCAB, DIM, "cbow", negative=3, cbow_mean=False),
    Word2VecConfig(VOCAB, DIM, "skipgram", negative=0, hierarchical_softmax=True),
    Word2VecConfig(VOCAB, DIM, "cbow", negative=2, hierarchical_softmax=True),
], ids=["skipgram-ns", "cbow-ns", "cbow-sum-ns", "skipgram-hs", "cbow-ns-hs"])
def test_fused_update_equals_the_torch_update(config: Word2VecConfig) -> None:
    model, tables, rows, inputs, mask = _case(config, num=300, seed=1)  # repeated rows: the atomic adds collide
    reference = {n: t.clone() for n, t in tables.items()}
    alpha = torch.tensor(0.05, device=DEVICE)
    expected = model.sgd_step_(reference, alpha, inputs, rows, mask, fused=False)
    got = model.sgd_step_(tables, alpha, inputs, rows, mask, fused=True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for name in tables:
        assert not torch.equal(tables[name], model.get_parameter(name).to(DEVICE)), name  # the update happened
        torch.testing.assert_close(tables[name], reference[name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_cuda_default_is_the_fused_update_when_triton_is_installed() -> None:
    assert word2vec_update.fused_update_available(torch.device("cuda")) == (word2vec_update.triton is not None)
    assert not word2vec_update.fused_update_available(torch.device("cpu"))


def test_a_fused_kernel_that_fails_to_build_falls_back_to_the_torch_update_with_one_warning(monkeypatch) -> None:
    import formers.models.word2vec as w2v

    def broken(*args, **kwargs):
        raise RuntimeError("PTX assembly failed")

    monkeypatch.setattr(w2v, "fused_update_available", lambda device: word2vec_update._disabled is None)
    monkeypatch.setattr(w2v, "fused_sgd_update_", broken)
    monkeypatch.setattr(word2vec_update, "_disabled", None)
    config = Word2VecConfig(VOCAB, DIM, "cbow", negative=5)
    model, tables, rows, inputs, mask = _case(config, num=40, seed=2)
    reference = {n: t.clone() for n, t in tables.items()}
    expected = model.sgd_step_(reference, 0.05, inputs, rows, mask, fused=False)
    with pytest.warns(UserWarning, match="fused Triton update failed .*PTX assembly failed"):
        got = model.sgd_step_(tables, 0.05, inputs, rows, mask)
    torch.testing.assert_close(got, expected)
    for name in tables:
        torch.testing.assert_close(tables[name], reference[name], msg=name)
    assert "PTX" in word2vec_update._disabled
    with pytest.raises(RuntimeError, match="PTX"):  # asked for explicitly, the failure is the caller's to see
        model.sgd_step_(tables, 0.05, inputs, rows, mask, fused=True)


@pytest.mark.skipif(word2vec_update.triton is None, reason="needs Triton installed (its kernels are never launched)")
def test_fused_update_refuses_tables_it_cannot_address():
    words = torch.zeros(10, 8).t()  # a transposed view: rows are not ``row * D`` apart
    ids, labels, valid = torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    rows = [(torch.zeros(10, 8), ids, labels, valid)]
    with pytest.raises(ValueError, match="words must be a contiguous float32 tensor, got torch.float32, not contig"):
        word2vec_update.fused_sgd_update_(words, torch.zeros(2, 1, dtype=torch.long), rows, torch.tensor(0.1))
    with pytest.raises(ValueError, match=r"rows\[0\] table must be a contiguous float32 tensor, got torch.float64"):
        word2vec_update.fused_sgd_update_(torch.zeros(10, 8), torch.zeros(2, 1, dtype=torch.long),
                                          [(rows[0][0].double(), *rows[0][1:])], torch.tensor(0.1))
