"""Attention maps of any model: every layer's and head's attention weights for one forward pass.

The fused attention kernels never form the weights, so they are recomputed on demand: while
:func:`record_attention` is active, every call of the shared attention function inside the model reports its
queries, keys, mask and bias (:mod:`formers.layers.attention_record`) and the weights
softmax(Q K^T * scale + bias), masked keys at 0, are written out in float32 and kept on the CPU. The model's own
computation is untouched (same kernels, same outputs); outside the block nothing is recorded and nothing costs.

Each call becomes one :class:`AttentionRecord`, in call order, named after the attention module that made it
(``"encoder.layers.0.self_attn"``) with its ``kind``:

- ``"self"``: tokens attend to tokens of the same sequence (GPT, BERT, ViT, TNT's outer attention, EfficientFormer,
  the Transformer's and DETR's encoders and decoder self-attention);
- ``"cross"``: decoder queries attend to encoder states (the Transformer's and DETR's decoders, the LSTM
  translator's Luong attention, one head);
- ``"window"``: Swin's (shifted-)window attention; the weights are (B * nW, H, N, N), one row per window;
- ``"inner"``: TNT's attention among the pixel tokens of each patch, (B * num_patches, H, n*n, n*n).

``extra`` says how to lay the tokens over an image: ``grid`` (gh, gw) with ``prefix_tokens`` (class tokens before
the row-major grid) for the keys of ViT, TNT (outer), EfficientFormer and DETR (the encoder's queries and keys,
the decoder cross-attention's keys); for Swin windows ``map_size`` (H, W), ``padded_size`` (Hp, Wp),
``window_size`` (wh, ww), ``shift_size`` (sh, sw), ``windows`` (Hp / wh, Wp / ww) and ``batch_size``. With
``keep_values=True`` it also holds ``values`` (B, H, Tk, Dv) and ``output`` (B, H, Tq, Dv), the call's own
result, so that ``weights @ values`` can be checked against it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from formers.layers import LuongAttention, MultiHeadAttention, SelfAttention
from formers.layers.attention_record import (
    AttentionCall,
    attention_weights,
    listen_to_attention,
)
from formers.models.detr import DETR
from formers.models.efficientformer import EfficientFormer
from formers.models.swin import SwinBlock
from formers.models.tnt import TNT, TNTBlock
from formers.models.vit import ViT

ATTENTION_MODULES = (MultiHeadAttention, SelfAttention, LuongAttention)


@dataclass
class AttentionRecord:
    """The attention weights of one attention call.

    Attributes:
        name: the attention module's name in the model (``model.named_modules()``), e.g. ``"blocks.3.self_attn"``.
        kind: ``"self"``, ``"cross"``, ``"window"`` or ``"inner"`` (see the module docstring).
        weights: (B, H, Tq, Tk) float32 on the CPU; rows sum to 1, masked keys are 0 (a query that may see no key
            has a row of zeros). Window/inner kinds have B * windows (patches) rows.
        extra: geometry of the tokens (``grid``, ``prefix_tokens``, Swin's window layout) and, when asked for,
            ``values`` and ``output``.
    """

    name: str
    kind: str
    weights: Tensor
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_heads(self) -> int:
        """H."""
        return self.weights.shape[1]


def _kinds(model: nn.Module) -> dict[nn.Module, tuple[str, str]]:
    """Every attention module of ``model`` -> (its name, its kind)."""
    names = {module: name for name, module in model.named_modules()}
    out: dict[nn.Module, tuple[str, str]] = {}
    for parent in model.modules():
        for attr, child in parent.named_children():
            if not isinstance(child, ATTENTION_MODULES):
                continue
            if isinstance(child, LuongAttention) or attr == "cross_attn":
                kind = "cross"
            elif isinstance(parent, SwinBlock):
                kind = "window"
            elif isinstance(parent, TNTBlock) and attr == "inner_attn":
                kind = "inner"
            else:
                kind = "self"
            out[child] = (names[child], kind)
    if isinstance(model, ATTENTION_MODULES):  # a bare attention layer
        out[model] = ("", "cross" if isinstance(model, LuongAttention) else "self")
    return out


class _Recorder:
    """Turns the attention calls of one model's modules on one thread into records."""

    def __init__(self, model: nn.Module, keep_values: bool) -> None:
        self.kinds = _kinds(model)
        self.keep_values = keep_values
        self.thread = threading.get_ident()
        self.stack: list[nn.Module] = []  # attention modules running now (on the recording thread)
        self.geometry: dict[str, Any] = {}  # image-token layout seen during this forward
        self.window: dict[nn.Module, dict[str, Any]] = {}  # Swin attention module -> its block's window layout
        self.records: list[AttentionRecord] = []
        self.detr = isinstance(model, DETR)
        self.handles: list[Any] = []
        for module in self.kinds:
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._exit, always_call=True))
        self._geometry_hooks(model)

    def _enter(self, module: nn.Module, args: Any) -> None:
        if threading.get_ident() == self.thread:
            self.stack.append(module)

    def _exit(self, module: nn.Module, args: Any, output: Any) -> None:
        if threading.get_ident() == self.thread and self.stack and self.stack[-1] is module:
            self.stack.pop()

    def _geometry_hooks(self, model: nn.Module) -> None:
        """Hooks that note where the image tokens lie (the grid depends on the input size for some families)."""

        def grid_from(output: Tensor, channels_last: bool) -> None:
            h, w = (output.shape[1], output.shape[2]) if channels_last else (output.shape[-2], output.shape[-1])
            self.geometry["grid"] = (int(h), int(w))

        if isinstance(model, ViT):
            self.handles.append(model.patch_embed.register_forward_hook(lambda m, a, o: grid_from(o, True)))
            self.geometry["prefix_tokens"] = 1
        elif isinstance(model, DETR):
            self.handles.append(model.input_proj.register_forward_hook(lambda m, a, o: grid_from(o, False)))
            self.geometry["prefix_tokens"] = 0
        elif isinstance(model, TNT):
            side = model.config.image_size // model.config.patch_size
            self.geometry.update(grid=(side, side), prefix_tokens=1)
        elif isinstance(model, EfficientFormer):
            side = model.config.grid_size
            self.geometry.update(grid=(side, side), prefix_tokens=0)
        for block in model.modules():
            if isinstance(block, SwinBlock):
                self.handles.append(block.register_forward_pre_hook(self._window_layout))

    def _window_layout(self, block: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]  # (B, H, W, C)
        shift = args[1] if len(args) > 1 and args[1] is not None else (0, 0)
        b, h, w = x.shape[0], x.shape[1], x.shape[2]
        wh, ww = block.window_size
        hp, wp = -(-h // wh) * wh, -(-w // ww) * ww
        self.window[block.attn] = dict(
            batch_size=int(b), map_size=(int(h), int(w)), padded_size=(hp, wp), window_size=(wh, ww),
            shift_size=tuple(int(s) for s in shift), windows=(hp // wh, wp // ww),
        )

    def __call__(self, call: AttentionCall) -> None:
        if threading.get_ident() != self.thread or not self.stack or self.stack[-1] not in self.kinds:
            return  # another thread, another model, or attention outside any attention module
        module = self.stack[-1]
        name, kind = self.kinds[module]
        with torch.no_grad():
            weights = attention_weights(call.q, call.k, call.attn_mask, call.attn_bias, call.is_causal, call.scale)
        extra: dict[str, Any] = {}
        if kind == "window":
            extra.update(self.window.get(module, {}))
        elif kind == "inner":
            gh, gw = self.geometry["grid"]
            extra.update(grid=(gh, gw), num_patches=gh * gw)  # rows: image-major, then patch row-major
        elif "grid" in self.geometry and not (self.detr and _is_detr_query(name)):
            extra.update(grid=self.geometry["grid"], prefix_tokens=self.geometry["prefix_tokens"])
        if self.keep_values:
            extra["values"] = call.v.detach().float().cpu()
            extra["output"] = call.output.detach().float().cpu()
        self.records.append(AttentionRecord(name, kind, weights.cpu(), extra))

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _is_detr_query(name: str) -> bool:
    """DETR's decoder self-attention runs among object queries, which lie on no image grid."""
    return name.startswith("decoder.") and name.endswith("self_attn")


@contextmanager
def record_attention(model: nn.Module, *, keep_values: bool = False) -> Iterator[list[AttentionRecord]]:
    """Records the attention weights of every attention call of ``model`` inside the block.

    The list it yields fills with one :class:`AttentionRecord` per call, in call order (a forward of an N-layer
    encoder gives N records; incremental decoding gives one per layer and step). Only calls made by ``model``'s
    attention modules on the calling thread are recorded; the model's outputs are unchanged.

    Args:
        model: any formers model (or module containing attention layers).
        keep_values: also keep each call's values (B, H, Tk, Dv) and output (B, H, Tq, Dv) in ``extra``.

    Example::

        with record_attention(model) as records:
            model(input_ids)
        records[0].weights  # (B, H, T, T)
    """
    recorder = _Recorder(model, keep_values)
    try:
        with listen_to_attention(recorder):
            yield recorder.records
    finally:
        recorder.close()


def attention_maps(model: nn.Module, *args: Any, **kwargs: Any) -> tuple[Any, list[AttentionRecord]]:
    """Runs ``model(*args, **kwargs)`` once without gradients and returns (its output, its attention records).

    Put the model in ``eval()`` mode first: with dropout on, the recorded weights are those before dropout.
    """
    with torch.no_grad(), record_attention(model) as records:
        output = model(*args, **kwargs)
    return output, records


__all__ = ["AttentionRecord", "attention_maps", "record_attention"]
