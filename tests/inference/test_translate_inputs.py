"""``Translator`` input checks: blank sentences stay blank and aligned, bad options and non-text are refused."""

from __future__ import annotations

import pytest
import torch

import formers
from formers.data.tokenizers import SubwordTokenizer
from formers.inference.translate import Translator

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "el gato se sento", "un perro corrio en el parque"] * 4


@pytest.fixture(scope="module")
def translator_parts():
    tok = SubwordTokenizer.train(CORPUS, vocab_size=60, min_frequency=1)
    torch.manual_seed(0)
    model = formers.create_model(
        "transformer_tiny", embed_dim=16, num_heads=2, ffn_dim=32, num_encoder_layers=1, num_decoder_layers=1,
        src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, max_seq_len=24,
    )
    return model, tok


@pytest.mark.parametrize("beam_size", [1, 3])
def test_blank_sentences_translate_to_blank_ones_in_place(translator_parts, beam_size):
    translator = Translator(*translator_parts, beam_size=beam_size)
    out = translator.translate(["the cat", "", "a dog ran", " \t", "the mat"])
    assert out[1] == "" and out[3] == "" and len(out) == 5
    assert [out[0], out[2], out[4]] == translator.translate(["the cat", "a dog ran", "the mat"])
    assert translator.translate(["", "  "]) == ["", ""]  # nothing reaches the model


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(beam_size=0), ValueError, r"beam_size must be an int in \[1, \d+\], got 0"),
        (dict(beam_size=True), TypeError, "beam_size must be an int"),
        (dict(beam_size=10**6), ValueError, "beam_size must be an int in"),
        (dict(alpha=float("nan")), ValueError, r"alpha \(length penalty\) must be >= 0 \(a finite number\), got nan"),
        (dict(max_tokens=0), ValueError, "max_tokens must be an int >= 1, got 0"),
    ],
)
def test_bad_options_are_refused(translator_parts, kwargs, error, match):
    with pytest.raises(error, match=match):
        Translator(*translator_parts, **kwargs)


def test_non_text_is_refused_naming_the_sentence(translator_parts):
    translator = Translator(*translator_parts, beam_size=1)
    with pytest.raises(TypeError, match="texts must be a list of sentences, got one str"):
        translator.translate("the cat")
    with pytest.raises(TypeError, match="source sentence 1 must be a str, got int"):
        translator.translate(["the cat", 7])
    with pytest.raises(ValueError, match=r"source sentence 0 is not valid UTF-8 text: .*\(0xe9\)"):
        translator.translate([b"caf\xe9".decode("utf-8", "surrogateescape")])
