"""The compiled decoding step's matrix-vector rewrite: the same product as ``addmm``, used only where it applies."""

from __future__ import annotations

import pytest
import torch

import formers
from formers.generation.causal_lm import generate
from formers.generation.step_compile import _addmm_one_row, one_row_addmm


@pytest.mark.parametrize("rows", [1, 3])
def test_one_row_addmm_equals_addmm_in_float32(rows):
    gen = torch.Generator().manual_seed(0)
    bias, mat1, mat2 = (torch.randn(s, generator=gen) for s in ((24,), (rows, 40), (40, 24)))
    torch.testing.assert_close(one_row_addmm(bias, mat1, mat2), torch.addmm(bias, mat1, mat2), rtol=1e-5, atol=1e-5)


def test_one_row_addmm_accumulates_bfloat16_in_float32():
    gen = torch.Generator().manual_seed(1)
    bias, mat1, mat2 = (torch.randn(s, generator=gen) for s in ((64,), (1, 768), (768, 64)))
    exact = torch.addmm(*(t.bfloat16().double() for t in (bias, mat1, mat2)))
    out = one_row_addmm(bias.bfloat16(), mat1.bfloat16(), mat2.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), exact, rtol=8e-3, atol=8e-3)  # one bfloat16 rounding of the result


def test_the_rewrite_applies_to_one_row_on_a_gpu_only():
    bias, one, two, mat2 = torch.zeros(4), torch.ones(1, 3), torch.ones(2, 3), torch.ones(3, 4)
    assert _addmm_one_row(bias, one, mat2) is NotImplemented  # on the CPU
    assert _addmm_one_row(bias, two, mat2) is NotImplemented
    meta = [t.to("meta") for t in (bias, one, mat2)]
    assert _addmm_one_row(*meta) is NotImplemented
    assert _addmm_one_row(bias, one, mat2, beta=2) is NotImplemented


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("options", [dict(), dict(do_sample=True, seed=5, top_k=20, top_p=0.9)])
def test_compiled_batch_one_steps_equal_eager_in_float32_on_cuda(options):
    model = formers.create_model("gpt_mini", embed_dim=64, num_heads=4, num_layers=2, vocab_size=300, max_seq_len=96,
                                 eos_id=None).cuda().eval()
    ids = torch.randint(4, 300, (1, 7), device="cuda")
    eager = generate(model, ids, 40, fast=False, **options)
    assert generate(model, ids, 40, fast=True, compile=True, **options).tolist() == eager.tolist()
