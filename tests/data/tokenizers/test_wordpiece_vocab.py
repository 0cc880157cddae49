"""WordPiece vocabularies: reading BERT's files (vocab.txt, a Hugging Face tokenizer.json), learning one from text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formers.data.tokenizers.wordpiece import WordPieceTokenizer
from formers.data.tokenizers.wordpiece_vocab import (
    learn_vocab,
    read_tokenizer_json_vocab,
    read_vocab_file,
)

transformers = pytest.importorskip("transformers")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "quick", "brown", "fox", "jump", "##s", "##ed", "over", "lazy", "dog", "un", "##aff", "##able", "."]


# --------------------------------------------------------------------------------------------------- reading
def test_read_vocab_file_keeps_lines_and_rejects_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n a b \n\n", encoding="utf-8")
    assert read_vocab_file(path) == ["[PAD]", " a b ", ""]  # only the newline goes, as in transformers
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        read_vocab_file(path)
    path.write_bytes(b"\xff\xfe[PAD]\n")
    with pytest.raises(ValueError, match="is not UTF-8"):
        read_vocab_file(path)
    path.write_text("a\nb\na\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lists 'a' twice \(lines 1 and 3\)"):
        read_vocab_file(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_vocab_file(tmp_path / "missing.txt")


def test_hf_tokenizer_json_alone_gives_the_same_tokenizer(tmp_path: Path) -> None:
    """A Hugging Face BERT directory without vocab.txt: the vocabulary and options come from tokenizer.json."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "vocab.txt").write_text("".join(t + "\n" for t in SPECIALS + WORDS), encoding="utf-8")
    ref = transformers.BertTokenizer.from_pretrained(tmp_path / "src", do_lower_case=False)
    ref.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "vocab.txt").unlink(missing_ok=True)
    (tmp_path / "hf" / "tokenizer_config.json").unlink()  # the normaliser of tokenizer.json then gives the options
    tok = WordPieceTokenizer.from_directory(tmp_path / "hf")
    assert tok.source.endswith("tokenizer.json")
    assert [tok.id_to_token(i) for i in range(tok.vocab_size)] == SPECIALS + WORDS
    assert tok.lowercase is False
    for text in ["The quick brown fox jumps.", "unaffable dogs", "lazy Dog", ""]:
        assert tok.encode(text) == ref(text)["input_ids"], text


def test_read_tokenizer_json_vocab_rejects_other_models(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    wordpiece = {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                 "max_input_chars_per_word": 100, "vocab": {t: i for i, t in enumerate(SPECIALS)}}
    assert read_tokenizer_json_vocab({"model": wordpiece}, path) == SPECIALS
    with pytest.raises(ValueError, match="does not describe a WordPiece tokenizer \\(model 'BPE'\\)"):
        read_tokenizer_json_vocab({"model": {"type": "BPE"}}, path)
    with pytest.raises(ValueError, match="continuing_subword_prefix='@@'"):
        read_tokenizer_json_vocab({"model": {**wordpiece, "continuing_subword_prefix": "@@"}}, path)
    with pytest.raises(ValueError, match=r"ids 0 \.\. n-1"):
        read_tokenizer_json_vocab({"model": {**wordpiece, "vocab": {"[PAD]": 0, "[UNK]": 2}}}, path)
    path.write_text(json.dumps({"model": {"type": "BPE"}}), encoding="utf-8")
    with pytest.raises(ValueError, match="does not describe a WordPiece tokenizer"):
        WordPieceTokenizer.from_directory(tmp_path)


# -------------------------------------------------------------------------------------------------- training
def _tokenizers_wordpiece_trainer_vocab(texts: list[str], vocab_size: int) -> set[str]:
    """The token set of ``tokenizers``' own WordPieceTrainer (what formers' trainer must reproduce)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS, continuing_subword_prefix="##",
        show_progress=False,
    )
    tk.train_from_iterator(texts, trainer=trainer)
    return set(tk.get_vocab())


_TRAIN_IN_A_SUBPROCESS = """
import sys
from formers.data.corpora import read_bible_en_es
from formers.data.tokenizers.wordpiece_vocab import learn_vocab
sys.stdout.write("\\n".join(learn_vocab([r[1] for r in read_bible_en_es()[::4]], vocab_size=1500)))
"""


def test_trained_vocabulary_is_reproducible_and_is_the_wordpiece_trainers(tmp_path):
    """Same tokens as tokenizers' WordPieceTrainer on the KJV Bible, and the same ids in every fresh process.

    (That trainer numbers ``##`` continuations in hash-map order, so its own ids and tie-breaks change from run
    to run; ours may not.)
    """
    import os
    import subprocess
    import sys

    from formers.data.corpora import read_bible_en_es

    texts = [r[1] for r in read_bible_en_es()[::4]]
    ours = learn_vocab(texts, vocab_size=1500)
    assert len(ours) == 1500 and ours[:5] == SPECIALS
    assert set(ours) == _tokenizers_wordpiece_trainer_vocab(texts, 1500)
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _TRAIN_IN_A_SUBPROCESS], env=env, capture_output=True,
                             text=True, check=True).stdout
        runs.append(out.split("\n"))
    assert runs[0] == runs[1] == ours


def test_trainer_edge_characters():
    # "x" only ever follows another letter, yet stands alone too (as in WordPieceTrainer); "f" never follows one.
    # Private-use characters are dropped by the normaliser (as in BERT), and the stand-ins for ## continuations
    # never leak into the vocabulary.
    corpus = ["box fox six mix", "a\U000f0000b ab"] * 5
    tok = WordPieceTokenizer.train(corpus, vocab_size=60, lowercase=False)
    vocab = tok.get_vocab()
    assert {"x", "##x", "b", "##b", "##o", "fox", "ab"} <= set(vocab) and "##f" not in vocab
    assert not any(ord(ch) >= 0xE000 for token in vocab for ch in token)
    assert tok.tokenize("fox a\U000f0000b xo") == ["fox", "ab", "x", "##o"]
    assert tok.tokenize("sixfox") == ["[UNK]"]  # no "##f": the word cannot be segmented
    with pytest.raises(ValueError, match="limit_alphabet must be an int >= 1"):
        WordPieceTokenizer.train(corpus, vocab_size=60, limit_alphabet=0)
    with pytest.raises(TypeError, match="texts must hold strings, got int at index 1"):
        WordPieceTokenizer.train(["ok", 3], vocab_size=60)
