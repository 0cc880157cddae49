from __future__ import annotations

import pytest

import formers
from formers.data.tokenizers.char import CharTokenizer
from formers.data.tokenizers.joint_bpe import SubwordTokenizer
from formers.inference.translate import Translator

TINY = dict(embed_dim=16, num_heads=2, ffn_dim=32, num_encoder_layers=1, num_decoder_layers=1, max_seq_len=32)


def test_translator_takes_any_tokenizer_with_a_pad_id():
    joint = SubwordTokenizer.train(["the cat sat", "el gato"] * 3, vocab_size=40, min_frequency=1)
    vocab = dict(src_vocab_size=joint.vocab_size, tgt_vocab_size=joint.vocab_size)
    model = formers.create_model("transformer_tiny", **TINY, **vocab)
    out = Translator(model, joint, beam_size=1).translate(["the cat"])
    assert len(out) == 1 and isinstance(out[0], str)
    with pytest.raises(ValueError, match="tokenizer must have a pad_id to batch sources, got a CharTokenizer"):
        Translator(model, CharTokenizer.from_corpus("abc"))


def test_fast_and_eager_translations_agree_and_the_fast_state_is_freed():
    joint = SubwordTokenizer.train(["the cat sat on the mat", "el gato se sentó"] * 3, vocab_size=60, min_frequency=1)
    vocab = dict(src_vocab_size=joint.vocab_size, tgt_vocab_size=joint.vocab_size)
    model = formers.create_model("transformer_tiny", **TINY, **vocab)
    texts = ["the cat", "", "the mat sat on the cat", "el gato"]
    for beam in (1, 3):
        fast = Translator(model, joint, beam_size=beam, max_tokens=8, fast=True).translate(texts)
        assert fast == Translator(model, joint, beam_size=beam, max_tokens=8, fast=False).translate(texts)
        assert fast[1] == "" and "_static_decoders" not in model.__dict__
    kept = Translator(model, joint, beam_size=3, max_tokens=8, fast=True, keep_graphs=True)
    assert kept.translate(texts) == fast
    decoders = dict(model.__dict__["_static_decoders"].decoders)  # one per batch shape, kept for the next call
    assert len(decoders) == 2
    assert kept.translate(texts) == fast
    assert all(a is b for a, b in zip(model.__dict__["_static_decoders"].decoders.values(), decoders.values()))
    with pytest.raises(TypeError, match="fast must be True, False or None, got 1"):
        Translator(model, joint, fast=1)
    with pytest.raises(TypeError, match="keep_graphs must be True or False, got 'yes'"):
        Translator(model, joint, keep_graphs="yes")
