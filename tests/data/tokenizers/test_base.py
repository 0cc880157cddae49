"""The Tokenizer protocol: every formers tokenizer satisfies it, with the documented special ids and round trips."""

from __future__ import annotations

import pytest

from formers.data.tokenizers.base import Tokenizer
from formers.data.tokenizers.char import CharTokenizer
from formers.data.tokenizers.gpt2_bpe import EOT, train_byte_level_bpe
from formers.data.tokenizers.joint_bpe import SubwordTokenizer
from formers.data.tokenizers.wordpiece import WordPieceTokenizer

CORPUS = [
    "the quick brown fox jumps over the lazy dog.",
    "a café, a naïve résumé and 4 emoji 😀 for the road!",
    "never odd or even; was it a cat i saw?",
] * 5
TEXT = "the lazy fox saw a café, 4 even emoji 😀!"


def build(name: str) -> Tokenizer:
    """A tiny trained tokenizer of each kind, on the same corpus."""
    if name == "joint_bpe":
        return SubwordTokenizer.train(CORPUS, vocab_size=120, min_frequency=1)
    if name == "wordpiece":
        return WordPieceTokenizer.train(CORPUS, vocab_size=120, min_frequency=1)
    if name == "gpt2_bpe":
        return train_byte_level_bpe(CORPUS, vocab_size=300, min_frequency=1)
    return CharTokenizer.from_corpus("".join(CORPUS))


KINDS = ["joint_bpe", "wordpiece", "gpt2_bpe", "char"]


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, Tokenizer]:
    return {name: build(name) for name in KINDS}


@pytest.mark.parametrize("name", KINDS)
def test_every_tokenizer_satisfies_the_protocol(tokenizers, name):
    tok = tokenizers[name]
    assert isinstance(tok, Tokenizer)
    assert isinstance(tok.vocab_size, int) and tok.vocab_size > 0
    for special in (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id):
        assert special is None or (isinstance(special, int) and 0 <= special < tok.vocab_size)
    ids = tok.encode(TEXT)
    assert isinstance(ids, list) and ids and all(type(i) is int and 0 <= i < tok.vocab_size for i in ids)
    assert isinstance(tok.decode(ids), str)


def test_special_ids_are_those_documented(tokenizers):
    joint, wordpiece, gpt2, char = (tokenizers[name] for name in KINDS)
    assert (joint.pad_id, joint.bos_id, joint.eos_id, joint.unk_id) == (0, 1, 2, 3)
    assert wordpiece.id_to_token(wordpiece.pad_id) == "[PAD]" and wordpiece.id_to_token(wordpiece.unk_id) == "[UNK]"
    assert wordpiece.bos_id is None and wordpiece.eos_id is None  # [CLS]/[SEP] are cls_id/sep_id
    assert gpt2.bos_id == gpt2.eos_id == gpt2.eot_id == gpt2.token_to_id(EOT) and gpt2.pad_id is gpt2.unk_id is None
    assert (char.pad_id, char.bos_id, char.eos_id, char.unk_id) == (None, None, None, None)
    bare = train_byte_level_bpe(CORPUS, vocab_size=300, special_tokens=())  # no <|endoftext|> at all
    assert bare.bos_id is None and bare.eos_id is None


def test_round_trips(tokenizers):
    joint, wordpiece, gpt2, char = (tokenizers[name] for name in KINDS)
    assert joint.decode(joint.encode(TEXT)) == TEXT  # every character was seen in training
    assert gpt2.decode(gpt2.encode(TEXT + EOT + "unseen ✓")) == TEXT + EOT + "unseen ✓"  # any text
    assert char.decode(char.encode(TEXT)) == TEXT
    ids = wordpiece.encode("The Lazy fox , saw a Café!")
    assert ids[0] == wordpiece.cls_id and ids[-1] == wordpiece.sep_id  # framed, as transformers' BERT encode
    assert wordpiece.decode(ids) == "the lazy fox, saw a cafe!"  # as BERT normalised it (uncased)


def test_something_else_is_not_a_tokenizer():
    class EncodeOnly:
        vocab_size = pad_id = bos_id = eos_id = unk_id = 0

        def encode(self, text: str) -> list[int]:
            return []

    assert not isinstance(EncodeOnly(), Tokenizer) and not isinstance("text", Tokenizer)
