"""load_tokenizer on every kind of directory (built tiny in tmp_path), and its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from formers.data.lm import prepare_corpus
from formers.data.tokenizers.char import CharTokenizer
from formers.data.tokenizers.gpt2_bpe import EOT, GPT2BPETokenizer, train_byte_level_bpe
from formers.data.tokenizers.joint_bpe import SubwordTokenizer
from formers.data.tokenizers.load import load_tokenizer
from formers.data.tokenizers.wordpiece import WordPieceTokenizer

transformers = pytest.importorskip("transformers")

CORPUS = ["the quick brown fox jumps over the lazy dog.", "a café, a naïve résumé <|endoftext|> 😀!"] * 5
TEXTS = ["the lazy fox", "a café, 😀!", "jumps<|endoftext|>over", ""]


def same_ids(a, b) -> bool:
    return all(a.encode(t) == b.encode(t) for t in TEXTS)


# ------------------------------------------------------------------------------------------------ formers files
def test_formers_checkpoints_of_each_tokenizer(tmp_path: Path):
    char = CharTokenizer.from_corpus("".join(CORPUS))
    char.save(tmp_path / "char" / "tokenizer.json")
    (tmp_path / "char" / "config.json").write_text("{}")  # beside a model, as in a checkpoint
    joint = SubwordTokenizer.train(CORPUS, vocab_size=100, min_frequency=1)
    joint.save(tmp_path / "joint" / "tokenizer.json")
    bpe = train_byte_level_bpe(CORPUS, vocab_size=300, min_frequency=1)
    bpe.save(tmp_path / "bpe" / "tokenizer.json")
    wordpiece = WordPieceTokenizer.train(CORPUS, vocab_size=80, min_frequency=1)
    wordpiece.save(tmp_path / "wordpiece")  # vocab.txt + tokenizer_config.json, as masked-LM checkpoints

    loaded = load_tokenizer(tmp_path / "char")
    assert isinstance(loaded, CharTokenizer) and loaded == char
    loaded = load_tokenizer(tmp_path / "joint")
    assert isinstance(loaded, SubwordTokenizer) and loaded == joint
    loaded = load_tokenizer(tmp_path / "bpe")
    assert isinstance(loaded, GPT2BPETokenizer) and same_ids(loaded, bpe) and loaded.eos_id == bpe.eot_id
    loaded = load_tokenizer(tmp_path / "wordpiece")
    assert isinstance(loaded, WordPieceTokenizer) and loaded.fingerprint == wordpiece.fingerprint
    # a tokenizer file itself
    assert load_tokenizer(tmp_path / "joint" / "tokenizer.json") == joint


def test_prepared_language_model_corpus(tmp_path: Path):
    text = tmp_path / "corpus.txt"
    text.write_text("".join(CORPUS) * 4, encoding="utf-8")
    meta = prepare_corpus(text, tmp_path / "prepared", tokenizer="char")
    tok = load_tokenizer(tmp_path / "prepared")
    assert isinstance(tok, CharTokenizer) and tok.vocab_size == meta["vocab_size"]


# ----------------------------------------------------------------------------------------- Hugging Face files
def test_hugging_face_gpt2_directories(tmp_path: Path):
    bpe = train_byte_level_bpe(CORPUS, vocab_size=300, min_frequency=1)
    (tmp_path / "hf_files").mkdir()
    bpe.backend.model.save(str(tmp_path / "hf_files"))  # vocab.json + merges.txt
    openai = tmp_path / "openai"
    openai.mkdir()
    shutil.copyfile(tmp_path / "hf_files" / "vocab.json", openai / "encoder.json")
    shutil.copyfile(tmp_path / "hf_files" / "merges.txt", openai / "vocab.bpe")
    reference = transformers.GPT2Tokenizer.from_pretrained(tmp_path / "hf_files")
    reference.save_pretrained(tmp_path / "hf_saved")  # tokenizer.json (ByteLevel BPE) + tokenizer_config.json
    for folder in ("hf_files", "openai", "hf_saved"):
        tok = load_tokenizer(tmp_path / folder)
        assert isinstance(tok, GPT2BPETokenizer), folder
        assert tok.eos_id == tok.token_to_id(EOT) == reference.eos_token_id, folder
        for text in TEXTS:
            assert tok.encode(text) == reference(text)["input_ids"], (folder, text)
            assert tok.decode(tok.encode(text)) == text


def test_hugging_face_bert_directories(tmp_path: Path):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "lazy", "fox", "caf", "##e", ",", "!", "a"]
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab" / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    reference = transformers.BertTokenizer.from_pretrained(tmp_path / "vocab")
    reference.save_pretrained(tmp_path / "hf")  # tokenizer.json (+ tokenizer_config.json, maybe vocab.txt)
    only_json = tmp_path / "only_json"
    only_json.mkdir()
    shutil.copyfile(tmp_path / "hf" / "tokenizer.json", only_json / "tokenizer.json")
    for path in (tmp_path / "vocab", tmp_path / "hf", only_json, only_json / "tokenizer.json"):
        tok = load_tokenizer(path)
        assert isinstance(tok, WordPieceTokenizer) and tok.vocab_size == len(tokens), path
        for text in ["The lazy fox, a Café!", "unknown words", ""]:
            assert tok.encode(text) == reference(text)["input_ids"], (path, text)


# ------------------------------------------------------------------------------------------------------ errors
def test_missing_paths_and_directories_without_a_tokenizer(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="tokenizer path .*nowhere' does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "model" / "encoder.json").write_text("{}")  # without its vocab.bpe
    with pytest.raises(FileNotFoundError, match=r"model holds no tokenizer: expected tokenizer.json .*vocab.txt .*"
                                                r"encoder.json \+ vocab.bpe or vocab.json \+ merges.txt"):
        load_tokenizer(tmp_path / "model")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="run holds no tokenizer.*looks like a training run"):
        load_tokenizer(tmp_path / "run")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "corrupt JSON in .*tokenizer.json"),
        ("[1, 2]", "tokenizer.json must hold a JSON object, got list"),
        ('{"kind": "words"}', "tokenizer.json is not a tokenizer file: expected a formers character tokenizer"),
        ('{"model": {"type": "Unigram"}}', "tokenizer.json holds a 'Unigram' model; formers reads BPE and WordPiece"),
        ('{"model": {"type": "BPE"}, "pre_tokenizer": {"type": "Whitespace"}}', "a 'Whitespace' pre-tokenizer"),
        ('{"kind": "char", "chars": "abc"}', "is not a character tokenizer file"),
    ],
)
def test_tokenizer_files_of_unknown_kinds_name_the_file(tmp_path: Path, content: str, message: str):
    (tmp_path / "tokenizer.json").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_tokenizer(tmp_path)


def test_a_wordpiece_tokenizer_json_needs_bert_settings(tmp_path: Path):
    model = {"type": "WordPiece", "continuing_subword_prefix": "@@", "vocab": {"[PAD]": 0}}
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": model}), encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer.json sets continuing_subword_prefix='@@'"):
        load_tokenizer(tmp_path)
