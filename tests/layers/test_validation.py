"""The shared host-side checks: images (dtype cast, non-finite and huge pixels, the cost model), token ids, scalar
arguments and text."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from formers.layers import (
    check_images,
    check_int,
    check_number,
    check_text,
    check_token_ids,
    value_checks,
)
from formers.layers.validation import MAX_PIXEL

NUMBERS = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def images(value: float | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    if value is not None:
        x[1, 2, 3, 0] = value
    return x.to(dtype)


@pytest.mark.parametrize(
    "value, match",
    [
        (float("nan"), "images holds NaN pixel values"),
        (float("inf"), r"images holds infinite pixel values \(inf\)"),
        (float("-inf"), r"images holds infinite pixel values \(-inf\)"),
        (1e20, r"images holds pixel value 1e\+20, beyond \+-1e\+06, the pixel range the image models take"),
        (-3e38, r"images holds pixel value -3e\+38, beyond \+-1e\+06"),
    ],
)
def test_non_finite_and_huge_pixels_are_refused(value, match):
    with pytest.raises(ValueError, match=match):
        check_images(images(value), "images", 3)


def test_pixels_up_to_max_pixel_pass_and_the_bound_follows_the_model_dtype():
    check_images(images(MAX_PIXEL), "images", 3)
    check_images(images(-MAX_PIXEL), "images", 3, torch.bfloat16)
    check_images(images(65504.0), "images", 3, torch.float16)
    with pytest.raises(ValueError, match=r"beyond \+-65504, the range of the model's torch.float16"):
        check_images(images(70000.0), "images", 3, torch.float16)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16, torch.float32])
def test_any_floating_dtype_is_cast_to_the_model_dtype(dtype):
    x = images(dtype=dtype)
    out = check_images(x, "images", 3, torch.float32)
    assert out.dtype == torch.float32 and torch.equal(out, x.float())
    assert check_images(x, "images", 3) is x  # no dtype: left as it is


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool, torch.complex64])
def test_non_floating_images_are_refused(dtype):
    with pytest.raises(TypeError, match=rf"images must be a floating tensor .*, got dtype {dtype}"):
        check_images(torch.zeros(1, 3, 4, 4, dtype=dtype), "images", 3, torch.float32)


def test_images_of_no_pixels_are_refused():
    with pytest.raises(ValueError, match="images has size 0x4"):
        check_images(torch.zeros(1, 3, 0, 4), "images", 3)


def test_pixel_values_are_read_only_where_value_checks_allow():
    # A meta tensor has no data: reading its values fails, so passing means the check read nothing, as on an
    # accelerator under value_checks(False) (the training tasks) or inside torch.compile.
    meta = torch.empty(2, 3, 4, 4, device="meta")
    with value_checks(False):
        assert check_images(meta, "images", 3, torch.float16).dtype == torch.float16
    with value_checks(False), pytest.raises(ValueError, match="infinite"):
        check_images(images(float("inf")), "images", 3)  # CPU tensors are always checked


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.bool, torch.float32])
def test_token_ids_must_be_int64_or_int32(dtype):
    expected = f"input_ids must hold integer token ids of dtype torch.int64 or torch.int32, got dtype {dtype}"
    with pytest.raises(TypeError, match=expected):
        check_token_ids(torch.zeros(1, 2, dtype=dtype), 10, "input_ids")
    for ok in (torch.int64, torch.int32):
        check_token_ids(torch.zeros(1, 2, dtype=ok), 10, "input_ids")


@pytest.mark.parametrize(
    "value, error, match",
    [
        (1.5, TypeError, r"n must be an int >= 1, got 1.5 \(float\)"),
        (True, TypeError, r"n must be an int >= 1, got True \(bool\)"),
        ("3", TypeError, r"n must be an int >= 1, got '3' \(str\)"),
        (None, TypeError, r"n must be an int >= 1, got None \(NoneType\)"),
        (0, ValueError, "n must be an int >= 1, got 0"),
    ],
)
def test_check_int_names_the_argument_what_it_must_be_and_the_value(value, error, match):
    with pytest.raises(error, match=match):
        check_int(value, "n", minimum=1)


@NUMBERS
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans(), st.none(), st.text()))
def test_check_number_takes_exactly_the_finite_reals_in_range(value):
    ok = (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 < value <= 1
    )
    try:
        check_number(value, "top_p", greater_than=0, maximum=1)
    except (TypeError, ValueError) as e:
        assert not ok and str(e).startswith("top_p must be in (0, 1], got ")
    else:
        assert ok


def test_check_text_names_undecodable_bytes():
    check_text("café ☕", "sentence 1")
    bad = b"caf\xe9".decode("utf-8", "surrogateescape")  # how Python keeps bytes that were not UTF-8
    with pytest.raises(ValueError, match=r"stdin line 2 is not valid UTF-8 text: .* undecodable byte \(0xe9\)"):
        check_text(bad, "stdin line 2")
    with pytest.raises(TypeError, match="sentence 1 must be a str, got bytes"):
        check_text(b"abc", "sentence 1")


def _tokenizers() -> list:
    from formers.data.tokenizers import (
        CharTokenizer,
        GPT2BPETokenizer,
        SubwordTokenizer,
    )
    from formers.data.tokenizers.gpt2_bpe import train_byte_level_bpe

    text = ["the cat sat on the mat", "a dog ran in the park"] * 3
    bpe = train_byte_level_bpe(text, vocab_size=300)
    assert isinstance(bpe, GPT2BPETokenizer)
    return [CharTokenizer.from_corpus("".join(text)), SubwordTokenizer.train(text, vocab_size=40, min_frequency=1), bpe]


def test_every_tokenizer_refuses_ids_that_are_not_ints_of_its_vocabulary():
    import numpy as np

    for tok in _tokenizers():
        name = type(tok).__name__
        assert tok.decode([1, 2]) == tok.decode(np.array([1, 2])) == tok.decode(torch.tensor([1, 2])), name
        assert tok.decode([torch.tensor(1), np.int64(2)]) == tok.decode([1, 2]), name
        for bad in ([1.5], [2, 1.0], [True], ["1"], torch.tensor([1.5]), np.array([1.5])):
            with pytest.raises(TypeError, match=r"ids\[\d\] must be an int token id, got|integer token ids"):
                tok.decode(bad)
        with pytest.raises(ValueError, match=rf"ids\[1\] must be in \[0, {tok.vocab_size}\), got {tok.vocab_size}"):
            tok.decode([0, tok.vocab_size])
