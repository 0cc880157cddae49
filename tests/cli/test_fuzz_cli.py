"""Fuzzed command lines: ``translate``, ``evaluate``, ``embed``, ``similarity`` and ``generate`` on tiny random
checkpoints, run in-process through ``formers.cli.main.main``.

``hypothesis`` (derandomized, nothing written to disk) draws option values (numbers that are zero, negative,
fractional, NaN, infinite, huge, or not numbers at all) and sentences (blank, not UTF-8, too long, odd characters).
Each command line must either succeed, when every value is valid, or exit with code 2 and exactly one line on
stderr, when one is not: never a traceback, never a bad value accepted silently. Run with
``--hypothesis-show-statistics`` to see how many were refused.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import formers
from formers.cli.main import main
from formers.data.tokenizers import CharTokenizer, SubwordTokenizer, WordPieceTokenizer

EXAMPLES = 40
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
INTS = ["1", "2", "3", "0", "-1", "+2", " 2", "1.5", "1e3", "nan", "inf", "", "abc", "True", "0x10", str(2**70),
        "99999"]
FLOATS = ["0.6", "1", "0", "0.0001", "-0.5", "nan", "NaN", "inf", "-inf", "1e309", "1e-300", "1e300", "abc", "",
          "0.999", "1.0001", "5"]
NOT_UTF8 = b"caf\xe9".decode("utf-8", "surrogateescape")  # how Python passes bytes that were not UTF-8
SENTENCES = ["the cat", "a dog ran in the park", "the mat", "", "  ", NOT_UTF8, " ".join(["the cat sat"] * 20),
             "☕ 😀", "\x00", "the\u2028cat", "THE CAT!"]
TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.\n" * 3
CORPUS = ["the cat sat on the mat", "a dog ran in the park", "el gato se sento", "un perro corrio en el parque"] * 4
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "a", "dog", "ran", "in", "park", "mat", "!"]


def _int(text: str) -> int | None:
    try:
        return int(text)  # what argparse's type=int does
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def int_in(low: int, high: float = math.inf) -> Callable[[str], bool]:
    return lambda text: (v := _int(text)) is not None and low <= v <= high


def finite(low: float, high: float = math.inf, above: bool = False) -> Callable[[str], bool]:
    return lambda text: (
        (v := _float(text)) is not None and math.isfinite(v) and (v > low if above else v >= low) and v <= high
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Any]:
    """A tiny translation, BERT and character-GPT checkpoint, with their tokenizers."""
    root = tmp_path_factory.mktemp("fuzz_cli")
    torch.manual_seed(0)
    joint = SubwordTokenizer.train(CORPUS, vocab_size=60, min_frequency=1)
    transformer = formers.create_model(
        "transformer_tiny", embed_dim=16, num_heads=2, ffn_dim=32, num_encoder_layers=1, num_decoder_layers=1,
        src_vocab_size=joint.vocab_size, tgt_vocab_size=joint.vocab_size, max_seq_len=24,
    )
    formers.save_pretrained(transformer, root / "translate")
    joint.save(root / "translate" / "tokenizer.json")
    (root / "src.txt").write_text("the cat\n\na dog\n", encoding="utf-8")
    (root / "ref.txt").write_text("el gato\n\nun perro\n", encoding="utf-8")

    wordpiece = WordPieceTokenizer(WORDS)
    bert = formers.create_model("bert_tiny", vocab_size=wordpiece.vocab_size, embed_dim=16, num_heads=2, num_layers=1,
                                ffn_dim=32, max_seq_len=12)
    formers.save_pretrained(bert, root / "bert")
    wordpiece.save(root / "bert")

    chars = CharTokenizer.from_corpus(TEXT)
    gpt = formers.create_model("gpt_mini", vocab_size=chars.vocab_size, eos_id=None, embed_dim=16, num_heads=2,
                               num_layers=1, max_seq_len=64)
    formers.save_pretrained(gpt, root / "gpt")
    chars.save(root / "gpt" / "tokenizer.json")
    return dict(root=root, joint=joint, vocab=joint.vocab_size, wordpiece=wordpiece, chars=chars)


def run(capsys, argv: list[str], valid: bool, stdout_on_error: bool = False) -> None:
    """Runs ``formers ARGV``: success when ``valid``, else exit code 2 and one line on stderr."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refusing a value
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    if valid:
        assert code == 0, f"a valid command line failed: {argv}: {err}"
        event("ran")
        return
    assert code == 2, f"a bad command line was accepted (exit code {code}): {argv}"
    assert err.startswith(f"formers {argv[0]}") and err.endswith("\n") and err.count("\n") == 1, err
    assert stdout_on_error or out == "", out
    event("refused in one line")


def options(draw: st.DrawFn, pools: dict[str, list[str]]) -> dict[str, str]:
    """Some of the options, each with a value from its pool, or half the time its pool's first (a valid) value."""
    return {
        name: pool[0] if draw(st.booleans()) else draw(st.sampled_from(pool))
        for name, pool in pools.items()
        if draw(st.booleans())
    }


def sentences(draw: st.DrawFn, least: int = 1) -> list[str]:
    return draw(st.lists(st.sampled_from(SENTENCES), min_size=least, max_size=3))


def _flat(opts: dict[str, str]) -> list[str]:
    return [part for name, value in opts.items() for part in (name, value)]


def _text_ok(text: str, fits: Callable[[str], bool]) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(text.strip()) and fits(text)


@FUZZ
@given(data=st.data())
def test_translate_command_lines(checkpoints, capsys, data):
    texts = sentences(data.draw)
    opts = options(data.draw, {"--beam": INTS, "--alpha": FLOATS})
    checks = {"--beam": int_in(1, checkpoints["vocab"]), "--alpha": finite(0)}
    fits = lambda t: 1 <= len(checkpoints["joint"].encode(t)) <= 24  # noqa: E731
    valid = all(checks[k](v) for k, v in opts.items()) and all(_text_ok(t, fits) for t in texts)
    argv = ["translate", *texts, "--checkpoint", str(checkpoints["root"] / "translate"), "--device", "cpu",
            *_flat(opts)]
    run(capsys, argv, valid)


@FUZZ
@given(data=st.data())
def test_evaluate_command_lines(checkpoints, capsys, data):
    opts = options(data.draw, {"--beam": INTS, "--alpha": FLOATS, "--limit": INTS})
    checks = {"--beam": int_in(1, checkpoints["vocab"]), "--alpha": finite(0), "--limit": int_in(1)}
    valid = all(checks[k](v) for k, v in opts.items())
    root = checkpoints["root"]
    argv = ["evaluate", "--checkpoint", str(root / "translate"), "--src", str(root / "src.txt"), "--ref",
            str(root / "ref.txt"), "--device", "cpu", *_flat(opts)]
    run(capsys, argv, valid)


@FUZZ
@given(data=st.data(), command=st.sampled_from(["embed", "similarity"]))
def test_embed_and_similarity_command_lines(checkpoints, capsys, data, command):
    texts = sentences(data.draw)
    opts = options(data.draw, {"--batch-size": INTS, "--pooling": ["mean", "cls", "auto", "max", ""]})
    truncate = data.draw(st.booleans())
    checks = {"--batch-size": int_in(1), "--pooling": lambda v: v in ("mean", "cls", "auto")}
    fits = lambda t: truncate or len(checkpoints["wordpiece"].tokenize(t)) + 2 <= 12  # noqa: E731
    valid = (
        all(checks[k](v) for k, v in opts.items())
        and all(_text_ok(t, fits) for t in texts)
        and (command == "embed" or len(texts) >= 2)
    )
    argv = [command, *texts, "--model", str(checkpoints["root"] / "bert"), "--device", "cpu", *_flat(opts)]
    run(capsys, argv + (["--truncate"] if truncate else []), valid)


@FUZZ
@given(data=st.data())
def test_generate_command_lines(checkpoints, capsys, data):
    prompt = data.draw(st.sampled_from(["to be", "To be, or not"] * 3 + ["", "#", "q"]))
    opts = options(data.draw, {"--temperature": FLOATS, "--top-k": INTS, "--top-p": FLOATS, "--seed": INTS})
    opts["--max-new-tokens"] = data.draw(st.sampled_from(INTS + ["8", "40"] * 8))
    greedy = data.draw(st.booleans())
    try:
        prompt_len = len(checkpoints["chars"].encode(prompt)) or None  # an empty prompt: no token to start from
    except ValueError:
        prompt_len = None  # a character outside the vocabulary
    checks = {
        "--max-new-tokens": int_in(1, 64 - (prompt_len or 0)), "--temperature": finite(0, above=True),
        "--top-k": int_in(1), "--top-p": finite(0, 1, above=True), "--seed": int_in(-(2**63), 2**64 - 1),
    }
    valid = prompt_len is not None and all(checks[k](v) for k, v in opts.items())
    # --no-truncate: past the block size the default slides the window and would generate all 2**70 tokens asked for.
    argv = ["generate", "--checkpoint", str(checkpoints["root"] / "gpt"), "--prompt", prompt, "--device", "cpu",
            "--no-truncate", *_flat(opts)]
    # The prompt is echoed before generation starts, so a refused option may leave it on stdout.
    run(capsys, argv + (["--greedy"] if greedy else []), valid, stdout_on_error=True)


def test_the_fuzzed_pools_hold_what_they_claim():
    assert not int_in(1)("1.5") and not int_in(1)("True") and int_in(1)(" 2") and int_in(1)(str(2**70))
    assert not finite(0)("nan") and not finite(0)("1e309") and finite(0)("1e300") and not finite(0, above=True)("0")
