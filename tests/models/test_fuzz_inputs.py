"""Fuzzed model inputs: every family, at its tiny size, either refuses an input with a ValueError/TypeError that
names the argument, or returns finite outputs. Never another exception type, never a silent NaN or inf.

Inputs are drawn by ``hypothesis`` (derandomized: the same examples every run, nothing written to disk) around a
valid call: wrong containers, ranks, dtypes, batch and sequence sizes, ids outside the vocabulary, pixels that are
NaN, +-inf, huge or subnormal, padding masks of the wrong dtype or shape or hiding whole rows. Run with
``--hypothesis-show-statistics`` to see how many examples were refused and how many ran.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

EXAMPLES = 80
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# What each kind of model is called with; a clean refusal names one of these.
ARGUMENTS = {
    "causal_lm": ("input_ids", "padding_mask", "targets"),
    "seq2seq": ("src_ids", "tgt_ids", "src_padding_mask", "tgt_padding_mask"),
    "encoder": ("input_ids", "token_type_ids", "padding_mask"),
    "image": ("images",),
}

ID_DTYPES = [torch.int32, torch.int16, torch.uint8, torch.int8, torch.bool, torch.float32]
PIXEL_DTYPES = [torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int64, torch.bool, torch.complex64]
SPECIAL_PIXELS = [float("nan"), float("inf"), float("-inf"), 1e38, -3e38, 1e20, 1e300, 1e-45, 0.0, 255.0, 65504.0]
_MODELS: dict[str, nn.Module] = {}


def _model(case: Any) -> nn.Module:
    if case.id not in _MODELS:
        _MODELS[case.id] = case.build().eval()
    return _MODELS[case.id]


def fault(draw: st.DrawFn, *faults: str) -> str:
    """``"none"`` about 60% of the time, else one of ``faults``: most calls get one thing wrong, or none."""
    return draw(st.sampled_from(["none"] * round(1.5 * len(faults)) + list(faults)))


def _generator(draw: st.DrawFn) -> torch.Generator:
    return torch.Generator().manual_seed(draw(st.integers(0, 2**16)))


def _container(draw: st.DrawFn, t: Tensor) -> Any:
    """The tensor itself, or sometimes a list, a NumPy array or None in its place."""
    form = draw(st.sampled_from(["tensor"] * 15 + ["list", "numpy", "None"]))
    if form == "list":
        return t.tolist()
    if form == "numpy":
        return t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy()
    return None if form == "None" else t


@st.composite
def token_ids(draw: st.DrawFn, batch: int, length: int, vocab_size: int) -> Any:
    """(B, T) ids in [0, vocab_size), or with one fault: rank, empty, out of the vocabulary, dtype, container."""
    what = fault(draw, "rank1", "rank3", "no_rows", "no_tokens", "one_token", "negative", "beyond", "huge", "dtype")
    shape = {"rank1": (length,), "rank3": (batch, length, 2), "no_rows": (0, length), "no_tokens": (batch, 0),
             "one_token": (batch, 1)}.get(what, (batch, length))
    lo, hi = {"negative": (-2, vocab_size), "beyond": (0, vocab_size + 2), "huge": (0, 2**31 - 1)}.get(
        what, (0, vocab_size)
    )
    ids = torch.randint(lo, hi, shape, generator=_generator(draw))
    if what == "dtype":
        ids = ids.to(draw(st.sampled_from(ID_DTYPES)))
    return _container(draw, ids)


@st.composite
def padding_masks(draw: st.DrawFn, ids: Any, left: bool) -> Any:
    """None, a valid (B, T) bool mask (left or right padded), or one of the wrong dtype, shape or all-padding rows."""
    shape = tuple(ids.shape) if isinstance(ids, Tensor) else (3, 6)
    form = draw(st.sampled_from(["none"] * 4 + ["valid"] * 6 + ["empty_row", "random", "dtype", "shape", "list"]))
    if form == "none":
        return None
    if form == "shape":
        wrong = (*shape, 2) if draw(st.booleans()) else shape[:1]
        return torch.ones(wrong, dtype=torch.bool)
    mask = torch.ones(shape, dtype=torch.bool)
    if len(shape) == 2 and shape[0] and shape[1]:
        keep = draw(st.integers(1, shape[1]))
        if left:
            mask[-1, : shape[1] - keep] = False
        else:
            mask[-1, keep:] = False
        if form == "empty_row":
            mask[0] = False
        if form == "random":
            mask = torch.rand(shape, generator=_generator(draw)) < 0.5
    if form == "dtype":
        return mask.to(draw(st.sampled_from([torch.int64, torch.float32, torch.uint8])))
    return mask.tolist() if form == "list" else mask


@st.composite
def images(draw: st.DrawFn, channels: int, height: int, width: int) -> Any:
    """(B, C, H, W) float32 pixels, or with a fault of form (rank, batch, channels, size, dtype, container) and
    one of value (NaN, +-inf, huge, subnormal or large-but-valid pixels)."""
    form = fault(draw, "rank3", "rank5", "no_images", "one_image", "channels", "height", "width", "size", "dtype")
    height = {"height": draw(st.sampled_from([0, 1, height - 1, height + 1, 2 * height])), "size": 2 * height}.get(
        form, height
    )
    width = {"width": draw(st.sampled_from([0, 1, width - 1, width + 1])), "size": 2 * width}.get(form, width)
    channels = draw(st.sampled_from([1, channels + 1])) if form == "channels" else channels
    batch = {"no_images": 0, "one_image": 1}.get(form, 2)
    shape = {"rank3": (channels, height, width), "rank5": (1, batch, channels, height, width)}.get(
        form, (batch, channels, height, width)
    )
    values = fault(draw, "special", "scale")
    scale = draw(st.sampled_from([255.0, 1e6, 1e20, 1e-30])) if values == "scale" else 1.0
    pixels = torch.randn(shape, generator=_generator(draw), dtype=torch.float64) * scale
    if values == "special" and pixels.numel():
        for value in draw(st.lists(st.sampled_from(SPECIAL_PIXELS), min_size=1, max_size=3)):
            pixels.view(-1)[draw(st.integers(0, pixels.numel() - 1))] = value
    dtype = draw(st.sampled_from(PIXEL_DTYPES)) if form == "dtype" else torch.float32
    return _container(draw, pixels.to(dtype))


@st.composite
def model_call(draw: st.DrawFn, kind: str, config: Any, image_size: tuple[int, int] | None) -> tuple[Any, ...]:
    """The positional arguments of one fuzzed call of a model of ``kind``."""
    if kind == "image":
        return (draw(images(config.in_channels, *(image_size or (config.image_size, config.image_size)))),)
    if kind == "causal_lm":
        ids = draw(token_ids(3, 6, config.vocab_size))
        targets = draw(st.one_of(st.none(), token_ids(3, 6, config.vocab_size)))
        return ids, draw(padding_masks(ids, left=True)), None, targets
    if kind == "encoder":
        ids = draw(token_ids(3, 6, config.vocab_size))
        types = draw(st.one_of(st.none(), token_ids(3, 6, config.type_vocab_size)))
        return ids, types, draw(padding_masks(ids, left=False))
    if kind == "seq2seq":
        src = draw(token_ids(3, 6, config.src_vocab_size))
        tgt = draw(token_ids(3, 4, config.tgt_vocab_size))
        return src, tgt, draw(padding_masks(src, left=False)), draw(padding_masks(tgt, left=False))
    raise AssertionError(f"no fuzzed inputs for models of kind {kind!r}: add them to tests/models/test_fuzz_inputs.py")


def _tensors(out: Any) -> list[Tensor]:
    fields = vars(out).values() if hasattr(out, "__dataclass_fields__") else [out]
    return [t for t in fields if isinstance(t, Tensor)]


def check_clean(model: nn.Module, kind: str, args: tuple[Any, ...]) -> None:
    """Runs ``model(*args)``: a ValueError/TypeError naming an argument, or finite outputs."""
    try:
        with torch.no_grad():
            out = model(*args)
    except (ValueError, TypeError) as e:
        names = ARGUMENTS[kind]
        assert any(name in str(e) for name in names), f"{type(e).__name__} names none of {names}: {e}"
        assert "\n" not in str(e).strip(), f"a multi-line message: {e}"
        event(f"refused: {type(e).__name__}")
        return
    bad = [t for t in _tensors(out) if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    assert not bad, "the model returned non-finite outputs without refusing its input"
    event("ran: finite outputs")


@pytest.mark.contract_one_per_family
@FUZZ
@given(data=st.data())
def test_fuzzed_inputs_are_refused_cleanly_or_give_finite_outputs(case, data):
    model = _model(case)
    args = data.draw(model_call(case.tiny.kind, model.config, case.tiny.image_size))
    check_clean(model, case.tiny.kind, args)


@pytest.mark.contract_one_per_family
@pytest.mark.contract_kinds("image")
def test_images_of_any_floating_dtype_run_and_non_finite_or_huge_pixels_are_refused(case):
    model = _model(case)
    c = model.config
    height, width = case.tiny.image_size or (c.image_size, c.image_size)
    pixels = torch.randn(2, c.in_channels, height, width)
    with torch.no_grad():
        expected = model(pixels.bfloat16().float()).logits
        for dtype in (torch.float64, torch.float16, torch.bfloat16):  # cast to the model's float32, exactly
            torch.testing.assert_close(model(pixels.bfloat16().to(dtype)).logits, expected, atol=0, rtol=0)
        for value, match in ((float("inf"), "infinite"), (float("-inf"), "infinite"), (1e20, "beyond")):
            bad = pixels.clone()
            bad[1, 0, 0, 0] = value
            with pytest.raises(ValueError, match=f"images holds .*{match}"):
                model(bad)
