from __future__ import annotations

import inspect
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from formers.data.downloads import sha256_of
from formers.data.tokenizers import gpt2_bpe
from formers.data.tokenizers.gpt2_bpe import (
    EOT,
    GPT2_FILES,
    GPT2BPETokenizer,
    find_gpt2_files,
    train_byte_level_bpe,
)

STRINGS = [
    "", "Hello world", " Hello world", "Hello world ", "hello   world  ", "  leading and trailing  ",
    "naïve café résumé Ångström Straße", "日本語のテキスト、中文文本。한국어", "emoji 😀🎉👩‍👩‍👧 and flags 🇫🇷🇩🇪",
    "e\u0301 a\u0308 combining ñ vs n\u0303", "tabs\tand\nnewlines\r\n\n\n  \n\t\t x",
    "It's they're we've I'm you'll he'd IT'S 'S 'quoted'", "numbers 1 12 123 1234 3.14159 1,000,000 0x1F",
    "a<|endoftext|>b", " <|endoftext|> ", "<|endoftext|><|endoftext|>", "doc one.<|endoftext|>\ndoc two.",
    "<|endoftext", "symbols !@#$%^&*()_+-=[]{};:'\",.<>/?\\|`~ ", "\u00a0nbsp\u2003em\u3000ideographic space",
    "zero\u200bwidth", "\x00\x01\x7f control", "Ελληνικά Русский עברית العربية हिन्दी", "ﬁ ligature Ⅻ ½ ²",
    "    def f(x):\n        return x  # comment\n", "a" * 300, "🙂" * 20, "\n", " ", "   ",
]


@lru_cache(maxsize=None)
def ours(folder: Path) -> GPT2BPETokenizer:
    return GPT2BPETokenizer.from_files(folder / "encoder.json", folder / "vocab.bpe")


@lru_cache(maxsize=None)
def hf_reference(folder: Path):
    """transformers.GPT2Tokenizer built from the two files (v5 names them vocab/merges, v4 vocab_file/merges_file)."""
    transformers = pytest.importorskip("transformers")
    params = inspect.signature(transformers.GPT2Tokenizer.__init__).parameters
    names = ("vocab_file", "merges_file") if "vocab_file" in params else ("vocab", "merges")
    ref = transformers.GPT2Tokenizer(**{names[0]: str(folder / "encoder.json"), names[1]: str(folder / "vocab.bpe")})
    assert ref("Hello world")["input_ids"] == [15496, 995]  # v5 silently ignores misnamed file arguments
    return ref


class OpenAIEncoder:
    """Independent reference: a transcription of OpenAI's gpt-2 ``src/encoder.py`` (regex split + greedy merges)."""

    def __init__(self, folder: Path) -> None:
        self.regex = pytest.importorskip("regex")
        self.encoder = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
        lines = (folder / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:-1]
        self.ranks = {tuple(line.split()): i for i, line in enumerate(lines)}
        self.byte_encoder = _bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.pat = self.regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
        self.cache: dict[str, list[str]] = {}

    def bpe(self, token: str) -> list[str]:
        if token in self.cache:
            return self.cache[token]
        word = list(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for k, part in enumerate(text.split(EOT)):  # the special token, as transformers.GPT2Tokenizer treats it
            if k:
                ids.append(self.encoder[EOT])
            for piece in self.regex.findall(self.pat, part):
                mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
                ids.extend(self.encoder[t] for t in self.bpe(mapped))
        return ids

    def decode(self, ids: list[int]) -> str:
        decoder = {v: k for k, v in self.encoder.items()}
        return bytearray(self.byte_decoder[c] for c in "".join(decoder[i] for i in ids)).decode("utf-8", errors="replace")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


@lru_cache(maxsize=None)
def openai_reference(folder: Path) -> OpenAIEncoder:
    return OpenAIEncoder(folder)


@pytest.fixture
def gpt2_dir(gpt2_bpe_dir: Path) -> Path:
    return gpt2_bpe_dir


def test_known_ids_and_special_token(gpt2_dir):
    tok = ours(gpt2_dir)
    assert tok.vocab_size == 50257 and tok.eot_id == 50256
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode("a<|endoftext|>b") == [64, 50256, 65]
    assert tok.encode("") == [] and tok.decode([]) == ""


@pytest.mark.parametrize("text", STRINGS)
def test_parity_with_transformers_and_openai(gpt2_dir, text):
    ids = ours(gpt2_dir).encode(text)
    assert ids == hf_reference(gpt2_dir)(text)["input_ids"]
    assert ids == openai_reference(gpt2_dir).encode(text)
    assert ours(gpt2_dir).decode(ids) == text  # lossless, <|endoftext|> included


def test_encode_batch_matches_encode(gpt2_dir):
    tok = ours(gpt2_dir)
    assert tok.encode_batch(STRINGS) == [tok.encode(s) for s in STRINGS]
    with pytest.raises(TypeError, match="single str"):
        tok.encode_batch("abc")


def test_decode_partial_utf8_replaces_like_python(gpt2_dir):
    tok, ref = ours(gpt2_dir), openai_reference(gpt2_dir)
    for text in ("€ café 日本 😀👩‍👧", "emoji 😀🎉 and ñ"):
        ids = tok.encode(text)
        for k in range(len(ids) + 1):
            for piece in (ids[:k], ids[k:]):
                assert tok.decode(piece) == ref.decode(piece)
    with pytest.raises(ValueError, match=r"ids\[1\] must be in \[0, 50257\), got 50257"):
        tok.decode([0, 50257])


def test_tinyshakespeare_parity_and_counts(tinyshakespeare_txt, gpt2_dir):
    text = tinyshakespeare_txt.read_text(encoding="utf-8")
    tok = ours(gpt2_dir)
    ids = tok.encode(text)
    assert len(ids) == 338_025
    assert ids == hf_reference(gpt2_dir)(text)["input_ids"]
    assert ids[:20_000] == openai_reference(gpt2_dir).encode(tok.decode(ids[:20_000]))
    assert tok.decode(ids) == text
    n = int(len(text) * 0.9)
    assert (len(tok.encode(text[:n])), len(tok.encode(text[n:]))) == (301_966, 36_059)


def test_save_load_round_trip(tmp_path, gpt2_dir):
    tok = ours(gpt2_dir)
    loaded = GPT2BPETokenizer.load(tok.save(tmp_path / "tokenizer.json"))
    assert loaded.vocab_size == 50257 and loaded.eot_id == 50256
    assert [loaded.encode(s) for s in STRINGS] == [tok.encode(s) for s in STRINGS]


def test_local_files_match_official_checksums(gpt2_dir):
    for name, (_, sha256) in GPT2_FILES.items():
        assert sha256_of(gpt2_dir / name) == sha256


def test_find_files(tmp_path, monkeypatch, gpt2_dir):
    assert find_gpt2_files(gpt2_dir) == (gpt2_dir / "encoder.json", gpt2_dir / "vocab.bpe")
    monkeypatch.setenv("FORMERS_DATA_DIR", str(gpt2_dir.parent))
    assert find_gpt2_files()[0].parent == gpt2_dir
    with pytest.raises(FileNotFoundError, match="lacks the gpt2-bpe files"):
        find_gpt2_files(tmp_path)


def test_find_files_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMERS_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(gpt2_bpe, "resolve_data_dir", lambda *a, **k: None)
    monkeypatch.setattr(gpt2_bpe, "unpack_asset", lambda *a, **k: None)  # an installation without the shipped copy

    def offline(url, dest, sha256):
        raise ConnectionError("offline")

    monkeypatch.setattr(gpt2_bpe, "download", offline)
    with pytest.raises(FileNotFoundError, match="download failed.*--gpt2-dir"):
        find_gpt2_files()
    with pytest.raises(FileNotFoundError, match="not found; put encoder.json"):
        find_gpt2_files(allow_download=False)


def test_train_byte_level_bpe(tmp_path, tinyshakespeare_txt):
    text = tinyshakespeare_txt.read_text(encoding="utf-8")[:100_000]
    tok = train_byte_level_bpe(text.split("\n\n"), vocab_size=600)
    assert tok.eot_id == 0 and 257 < tok.vocab_size <= 600
    sample = "First Citizen: naïve 日本 😀 <|endoftext|> end"
    ids = tok.encode(sample)
    assert tok.decode(ids) == sample and ids.count(0) == 1  # unseen bytes still encode; EOT is one id
    assert len(tok.encode(text[:2000])) < len(text[:2000].encode("utf-8")) / 2  # merges compress
    loaded = GPT2BPETokenizer.load(tok.save(tmp_path / "tokenizer.json"))
    assert loaded.encode(sample) == ids
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 257"):
        train_byte_level_bpe(["abc"], vocab_size=100)


def test_from_files_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder_json file"):
        GPT2BPETokenizer.from_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe")


def test_encode_long_equals_encode(tinyshakespeare_txt, gpt2_dir):
    tok = ours(gpt2_dir)
    tricky = "\n".join(STRINGS) + "\nA\n\nB\n C\n\tD \nE\r\nF\n<|endoftext|>\nG\n"
    for chunk in (1, 3, 17):
        assert tok.encode_long(tricky, chunk_chars=chunk, chunks_per_batch=4).tolist() == tok.encode(tricky)
    text = tinyshakespeare_txt.read_text(encoding="utf-8")
    ids = tok.encode_long(text, chunk_chars=5000)
    assert ids.dtype == np.int64 and ids.tolist() == tok.encode(text)  # == transformers (test above)
