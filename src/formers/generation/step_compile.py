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

Layer norms are folded into the matrix-vector product that reads them (:data:`FUSE_NORMS`): inductor computes a
norm's mean and variance in a kernel of their own (a reduction to one number) before the product's kernel, two such
kernels per GPT-2 block and ~1.6 us each; :func:`fuse_norms` rewrites ``linear(layer_norm(x))`` for one row as
:func:`norm_linear`, where every program of the product recomputes the statistics of the row it already reads (768
numbers, from cache), so the norm, its statistics and the product are one kernel.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

aten = torch.ops.aten

STORE_ACTIVATIONS = True
"""Whether a compiled step stores each activation's output (:func:`store_activations`) rather than letting inductor
recompute it inside the next matrix-vector product. ``benchmarks/generate_step_variants.py`` times both."""

FUSE_NORMS = True
"""Whether a compiled step rewrites one-row ``linear(layer_norm(x))`` as :func:`norm_linear` (:func:`fuse_norms`).
``benchmarks/generate_step_variants.py`` times both."""

FUSE_NORMS_MAX_OUTPUTS: int | None = None
"""Products with more outputs keep their norm apart (None: no limit, as measured). GPT-2's output layer (50,304 rows)
may gain nothing from the folding (one H100: 25.9 + 1.9 us a token apart, 27.4-40.7 us folded, depending on the
configuration inductor's tuning picked); 16,384 leaves it apart: the ``compiled, output layer's norm apart`` variant
of ``benchmarks/generate_step_variants.py``, not yet timed."""

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


def norm_linear(
    x: Tensor, norm_weight: Tensor | None, norm_bias: Tensor | None, eps: float, weight: Tensor, bias: Tensor | None
) -> Tensor:
    """``F.linear(F.layer_norm(x, (K,), norm_weight, norm_bias, eps), weight, bias)`` for x (..., K) holding one row,
    written so that the norm's statistics are reductions over the same (N, K) range as the product: each output
    recomputes them from the row (the same two-pass float32 mean and variance as ``layer_norm``), and inductor emits
    norm and product as one kernel. The normalised row is rounded to ``x``'s dtype, as the separate norm returns it."""
    k, n = x.shape[-1], weight.shape[0]
    row = x.reshape(1, k).float().expand(n, k)  # (N, K): the row, once per output
    mean = row.mean(dim=1, keepdim=True)  # (N, 1)
    centred = row - mean
    normed = centred * torch.rsqrt((centred * centred).mean(dim=1, keepdim=True) + eps)  # (N, K)
    if norm_weight is not None:
        normed = normed * norm_weight.float()
    if norm_bias is not None:
        normed = normed + norm_bias.float()
    out = (normed.to(x.dtype).float() * weight.float()).sum(dim=1)  # (N,)
    if bias is not None:
        out = out + bias.float()
    return out.to(x.dtype).reshape(*x.shape[:-1], n)


LINEARS = (torch._C._nn.linear, torch.nn.functional.linear)
NORMS = (torch.nn.functional.layer_norm,)


def fuse_norms(gm: torch.fx.GraphModule) -> int:
    """Replaces every ``linear(layer_norm(x))`` of dynamo's graph ``gm`` whose x holds one row (a last-dim norm, as
    the example values show) and whose product has at most :data:`FUSE_NORMS_MAX_OUTPUTS` outputs by
    :func:`norm_linear`, in place; returns how many. A norm with other readers stays for them."""
    count = 0
    for norm in list(gm.graph.nodes):
        if norm.op != "call_function" or norm.target not in NORMS or not _one_row_norm(norm):
            continue
        x, _, weight, bias, eps = _norm_arguments(norm)
        for user in list(norm.users):
            if user.op != "call_function" or user.target not in LINEARS or user.kwargs or user.args[0] is not norm:
                continue
            if FUSE_NORMS_MAX_OUTPUTS is not None and _outputs(user.args[1]) > FUSE_NORMS_MAX_OUTPUTS:
                continue
            linear_weight, linear_bias = (*user.args[1:], None)[:2]
            with gm.graph.inserting_before(user):
                fused = gm.graph.call_function(norm_linear, (x, weight, bias, eps, linear_weight, linear_bias))
            fused.meta.update(user.meta)
            user.replace_all_uses_with(fused)
            gm.graph.erase_node(user)
            count += 1
        if not norm.users:
            gm.graph.erase_node(norm)
    if count:
        gm.recompile()
    return count


def _outputs(weight: Any) -> int:
    """Rows of a linear's weight node (its outputs), from dynamo's example value; unknown counts as too many."""
    example = weight.meta.get("example_value") if isinstance(weight, torch.fx.Node) else None
    return example.shape[0] if isinstance(example, Tensor) and example.dim() == 2 else torch.iinfo(torch.int64).max


def _autocast(gm: torch.fx.GraphModule) -> bool:
    """Whether ``gm`` runs under autocast (around the call or inside it), where a linear would compute in the autocast
    dtype and :func:`norm_linear`'s float32 sums would not be the same product."""
    if any(torch.is_autocast_enabled(kind) for kind in ("cuda", "cpu")):
        return True
    return any(node.op == "call_function" and "autocast" in getattr(node.target, "__name__", "")
               for node in gm.graph.nodes)


def _norm_arguments(norm: torch.fx.Node) -> tuple:
    """(input, normalized_shape, weight, bias, eps) of a ``layer_norm`` call, defaults filled in."""
    names = ("input", "normalized_shape", "weight", "bias", "eps")
    values = dict(zip(names, (None, None, None, None, 1e-5)))
    values.update(zip(names, norm.args))
    values.update(norm.kwargs)
    return tuple(values[name] for name in names)


def _one_row_norm(norm: torch.fx.Node) -> bool:
    """Whether the ``layer_norm`` call normalises the last dimension of an input that holds one row."""
    x, shape, _, _, eps = _norm_arguments(norm)
    example = x.meta.get("example_value") if isinstance(x, torch.fx.Node) else None
    if not isinstance(example, Tensor) or example.dim() == 0 or not isinstance(eps, float):
        return False
    if not isinstance(shape, (tuple, list)):
        return False
    return tuple(shape) == (example.shape[-1],) and example.numel() == example.shape[-1]


def _inductor_for_steps(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable:
    """Inductor with :func:`_addmm_one_row` among its decompositions and coordinate-descent tuning on (and, with
    :data:`STORE_ACTIVATIONS`, the activations stored; with :data:`FUSE_NORMS`, one-row norms folded into the
    products that read them)."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    if STORE_ACTIVATIONS and store_activations(gm):
        _register_stored_lowering()
    if FUSE_NORMS and not _autocast(gm):
        fuse_norms(gm)

    table = dict(select_decomp_table())
    fallback = table.get(aten.addmm.default)

    def addmm(*args: Any, **kwargs: Any) -> Any:
        out = _addmm_one_row(*args, **kwargs)
        return fallback(*args, **kwargs) if out is NotImplemented and fallback is not None else out

    table[aten.addmm.default] = addmm
    return compile_fx(gm, example_inputs, config_patches={"coordinate_descent_tuning": True}, decompositions=table)


def compile_step(step: Callable) -> Callable:
    """``step`` compiled once for fixed shapes (``fullgraph``, not dynamic), to be captured in a CUDA graph.

    Each call compiles a copy of ``step``'s code of its own. Dynamo keeps the compiled versions of a function on its
    code object, at most ``torch._dynamo.config.recompile_limit`` (8) of them, and with ``fullgraph`` the next one
    raises: every decoder (and every sampling configuration) compiled from one shared method would count against
    those 8, so the ninth decoder of a process would fail to compile. A copy's versions go with it.
    """
    method = getattr(step, "__func__", None)
    func = method if method is not None else step
    fresh = types.FunctionType(func.__code__.replace(), func.__globals__, func.__name__, func.__defaults__,
                               func.__closure__)
    fresh.__kwdefaults__ = func.__kwdefaults__
    fresh = types.MethodType(fresh, step.__self__) if method is not None else fresh
    return torch.compile(fresh, fullgraph=True, dynamic=False, backend=_inductor_for_steps)
