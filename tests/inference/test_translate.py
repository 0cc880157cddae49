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
