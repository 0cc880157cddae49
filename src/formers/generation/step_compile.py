"""``torch.compile`` for one decoding step, with matrix-vector products turned into fused reductions.

A batch-1 decoding step multiplies one row by every weight matrix. cuBLAS runs such a product on a few dozen of
the GPU's SMs (a 64-column tile per block), so GPT-2's four linears of a block take ~4.5 us each however small
they are. Inductor instead writes ``x @ W`` as ``(x[:, :, None] * W[None]).sum(1)``, a reduction it fuses with
the neighbouring layer norm, bias and activation and tunes per shape (``coordinate_descent_tuning``), which
reads the weights at close to the memory bandwidth: the gpt-fast recipe. Inductor does this for ``mm`` only;
:func:`compile_step` adds the same rewrite for ``addmm`` (a linear with a bias), the form every formers linear
takes. Rows are summed in float32, as cuBLAS accumulates.

Used by the static decoders (:mod:`formers.generation.static_lm`) when they compile their step.

Activations are stored (:data:`STORE_ACTIVATIONS`): inductor would inline an MLP's activation into the down
projection's reduction, so that every program of that matrix-vector product recomputes the GELU of the whole hidden
vector (GPT-2's heaviest kernel on an H100, 67 of 330 us a token); an FX pass stores it once, in the up projection's
kernel (H100: 2,610 -> 2,790 tokens/s, ``benchmarks/results/generate_step_variants_h100_stored.json``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

aten = torch.ops.aten

STORE_ACTIVATIONS = True
"""Whether a compiled step stores each activation's output (:func:`store_activations`) rather than letting inductor
recompute it inside the next matrix-vector product. ``benchmarks/generate_step_variants.py`` times both."""

ACTIVATIONS = (torch._C._nn.gelu, torch.nn.functional.gelu, torch.nn.functional.relu, torch.relu,
               torch.nn.functional.silu)
"""The calls :func:`store_activations` follows with a store, as dynamo's graphs spell them."""

AUTO_COMPILE_MAX_BATCH = 1
"""Rows up to which ``generate(compile=None)`` compiles a CUDA decoding step. The rewrite applies to one row; at 32
rows the compiled step measured slower than the captured eager one (H100, GPT-2: 24.7k against 39.1k tokens/s)."""


def auto_compile(device: torch.device, batch_size: int) -> bool:
    """Whether ``compile=None`` compiles the step: on CUDA, for at most :data:`AUTO_COMPILE_MAX_BATCH` rows, when
    Triton (inductor's GPU code generator) is installed."""
    if device.type != "cuda" or batch_size > AUTO_COMPILE_MAX_BATCH:
        return False
    from torch.utils._triton import has_triton

    return has_triton()


def one_row_addmm(bias: Tensor, mat1: Tensor, mat2: Tensor) -> Tensor:
    """``bias + mat1 @ mat2`` (mat1 (M, K), mat2 (K, N)) as a multiply-and-sum in float32, cast back."""
    out = (mat1.float().unsqueeze(2) * mat2.float().unsqueeze(0)).sum(dim=1) + bias.float()  # (M, N)
    return out.to(mat1.dtype)


def _addmm_one_row(bias: Tensor, mat1: Tensor, mat2: Tensor, *, beta: Any = 1, alpha: Any = 1, **kwargs: Any) -> Any:
    """:func:`one_row_addmm` for a (1, K) ``mat1`` on a GPU; NotImplemented (not rewritten) otherwise."""
    if mat1.device.type != "cuda" or mat1.shape[0] != 1 or beta != 1 or alpha != 1 or kwargs.get("out_dtype"):
        return NotImplemented
    return one_row_addmm(bias, mat1, mat2)


@torch.library.custom_op("formers::stored", mutates_args=())
def stored(x: Tensor) -> Tensor:
    """``x``, which a compiled graph must store rather than recompute where it is read (a copy when run eagerly;
    inductor lowers it to storing its input, :func:`_register_stored_lowering`)."""
    return x.clone()


@stored.register_fake
def _(x: Tensor) -> Tensor:
    return torch.empty_like(x)


def store_activations(gm: torch.fx.GraphModule) -> int:
    """Follows every activation call (:data:`ACTIVATIONS`) of dynamo's graph ``gm`` with :func:`stored`, in place;
    returns how many."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in ACTIVATIONS:
            with gm.graph.inserting_after(node):
                kept = gm.graph.call_function(torch.ops.formers.stored.default, (node,))
            node.replace_all_uses_with(kept, delete_user_cb=lambda user: user is not kept)
            count += 1
    if count:
        gm.recompile()
    return count


@functools.cache
def _register_stored_lowering() -> None:
    """Inductor lowers :func:`stored` to storing its input: the buffer is realized, and readers load it (once per
    process)."""
    from torch._inductor.lowering import register_lowering

    @register_lowering(torch.ops.formers.stored.default, type_promotion_kind=None)
    def _store(x: Any) -> Any:
        x.realize()
        return x


def _inductor_for_steps(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable:
    """Inductor with :func:`_addmm_one_row` among its decompositions and coordinate-descent tuning on (and, with
    :data:`STORE_ACTIVATIONS`, the activations stored)."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    if STORE_ACTIVATIONS and store_activations(gm):
        _register_stored_lowering()

    table = dict(select_decomp_table())
    fallback = table.get(aten.addmm.default)

    def addmm(*args: Any, **kwargs: Any) -> Any:
        out = _addmm_one_row(*args, **kwargs)
        return fallback(*args, **kwargs) if out is NotImplemented and fallback is not None else out

    table[aten.addmm.default] = addmm
    return compile_fx(gm, example_inputs, config_patches={"coordinate_descent_tuning": True}, decompositions=table)


def compile_step(step: Callable) -> Callable:
    """``step`` compiled once for fixed shapes (``fullgraph``, not dynamic), to be captured in a CUDA graph."""
    return torch.compile(step, fullgraph=True, dynamic=False, backend=_inductor_for_steps)
