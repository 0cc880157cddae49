from __future__ import annotations

import io
import shutil

import pytest
import torch

import formers
from formers.cli.generate import TextStream
from formers.cli.main import main
from formers.data.tokenizers.char import CharTokenizer
from formers.data.tokenizers.gpt2_bpe import GPT2BPETokenizer, train_byte_level_bpe
from formers.data.tokenizers.load import load_tokenizer

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.\n" * 3


def _model(vocab_size: int, eos_id: int | None):
    model = formers.create_model(
        "gpt_mini", vocab_size=vocab_size, eos_id=eos_id, embed_dim=16, num_heads=2, num_layers=2, max_seq_len=64
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture
def char_checkpoint(tmp_path):
    tok = CharTokenizer.from_corpus(TEXT)
    model = _model(tok.vocab_size, None)
    formers.save_pretrained(model, tmp_path / "char")
    tok.save(tmp_path / "char" / "tokenizer.json")
    return tmp_path / "char", model, tok


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_greedy_char_generation_streams_the_model_output(char_checkpoint, capsys):
    path, model, tok = char_checkpoint
    code, out, err = run_cli(capsys, "generate", "--checkpoint", str(path), "--prompt", "To be", "--max-new-tokens", "12", "--greedy")
    assert code == 0, err
    expected = model.generate(torch.tensor([tok.encode("To be")]), 12, as_lists=True)[0]
    assert out == "To be" + tok.decode(expected) + "\n"


def test_seeded_sampling_is_reproducible_and_stop_strings_cut(char_checkpoint, capsys):
    path, model, tok = char_checkpoint
    args = ["generate", "--checkpoint", str(path), "--prompt", "the", "--max-new-tokens", "30", "--seed", "3",
            "--temperature", "1.5", "--top-p", "0.95"]
    _, first, _ = run_cli(capsys, *args)
    _, second, _ = run_cli(capsys, *args)
    assert first == second and len(first) == len("the") + 30 + 1
    continuation = first[len("the") : -1]
    stop = continuation[5:7]
    _, cut, _ = run_cli(capsys, *args, "--stop", stop, "zzz")
    assert cut == "the" + continuation[: continuation.index(stop)] + "\n"


def test_fast_and_eager_paths_print_the_same_text(char_checkpoint, capsys):
    path, _, _ = char_checkpoint
    args = ["generate", "--checkpoint", str(path), "--prompt", "the", "--max-new-tokens", "40", "--seed", "5",
            "--top-k", "20"]
    _, eager, _ = run_cli(capsys, *args, "--no-fast")
    _, fast, _ = run_cli(capsys, *args, "--fast")  # the static path, run eagerly on CPU
    assert fast == eager and len(eager) == len("the") + 40 + 1
    stop = eager[len("the") + 12 : len("the") + 14]
    _, eager_cut, _ = run_cli(capsys, *args, "--no-fast", "--stop", stop)
    _, fast_cut, _ = run_cli(capsys, *args, "--fast", "--stop", stop)
    assert fast_cut == eager_cut and len(fast_cut) < len(eager)


def test_compile_reaches_generate_and_is_automatic_by_default(char_checkpoint, capsys, monkeypatch):
    path, _, _ = char_checkpoint
    seen = []
    original = formers.models.gpt.GPT.generate

    def spy(self, *args, **kwargs):
        seen.append(kwargs["compile"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(formers.models.gpt.GPT, "generate", spy)
    args = ["generate", "--checkpoint", str(path), "--prompt", "the", "--max-new-tokens", "5", "--greedy"]
    assert run_cli(capsys, *args)[0] == 0
    assert run_cli(capsys, *args, "--compile", "--fast")[0] == 0
    assert run_cli(capsys, *args, "--no-compile")[0] == 0
    code, out, err = run_cli(capsys, *args, "--compile", "--no-fast")
    assert code == 2 and out == "" and "compile=True compiles the fast path's step" in err
    assert seen == [None, True, False, True]  # None: auto (one prompt on CUDA compiles; nothing to compile on a CPU)


def test_bpe_tokenizer_json_and_eos(tmp_path, capsys):
    tok = train_byte_level_bpe([TEXT], vocab_size=300)
    model = _model(tok.vocab_size, tok.eot_id)
    formers.save_pretrained(model, tmp_path / "bpe")
    tok.save(tmp_path / "bpe" / "tokenizer.json")
    assert isinstance(load_tokenizer(tmp_path / "bpe"), GPT2BPETokenizer)
    code, out, err = run_cli(capsys, "generate", "--checkpoint", str(tmp_path / "bpe"), "--prompt", "whether", "--greedy",
                             "--max-new-tokens", "10")
    assert code == 0, err
    ids = model.generate(torch.tensor([tok.encode("whether")]), 10, as_lists=True)[0]
    assert out == "whether" + tok.decode(ids) + "\n" and "<|endoftext|>" not in out


def test_gpt2_vocabulary_files(tmp_path, gpt2_bpe_dir):
    files = gpt2_bpe_dir
    shutil.copyfile(files / "encoder.json", tmp_path / "vocab.json")
    shutil.copyfile(files / "vocab.bpe", tmp_path / "merges.txt")
    tok = load_tokenizer(tmp_path)
    assert tok.vocab_size == 50257 and tok.decode(tok.encode("Hello world")) == "Hello world"


def test_text_stream_holds_back_partial_characters_and_stop_prefixes():
    class Bytes:  # decodes byte ids as UTF-8, like a byte-level BPE
        def decode(self, ids):
            return bytes(ids).decode("utf-8", errors="replace")

    out = io.StringIO()
    stream = TextStream(Bytes(), ["END"], out)
    writes = []
    for b in "é E!EN".encode() + b"D tail":
        stream.push(b)
        writes.append(out.getvalue())
    assert writes[0] == "" and writes[1] == "é"  # the 2-byte character appears whole
    assert writes[3] == "é " and writes[4] == "é E!"  # "E" waited: it could start "END"
    assert stream.stopped and out.getvalue() == "é E!"
    stream.close()
    assert out.getvalue() == "é E!\n"


def test_errors(char_checkpoint, tmp_path, capsys):
    path, _, _ = char_checkpoint
    code, _, err = run_cli(capsys, "generate", "--checkpoint", str(path), "--prompt", "", "--greedy")
    assert code == 2 and "--prompt is empty" in err
    code, _, err = run_cli(capsys, "generate", "--checkpoint", str(path), "--prompt", "to", "--max-new-tokens", "70",
                           "--no-truncate")
    assert code == 2 and "exceeds the model's max_seq_len=64" in err
    code, _, err = run_cli(capsys, "generate", "--checkpoint", str(path), "--prompt", "to", "--temperature", "0")
    assert code == 2 and "temperature must be > 0" in err
    code, _, err = run_cli(capsys, "generate", "--checkpoint", str(path), "--prompt", "#", "--greedy")
    assert code == 2 and "#" in err
    (path / "tokenizer.json").unlink()
    code, _, err = run_cli(capsys, "generate", "--checkpoint", str(path), "--prompt", "to")
    assert code == 2 and "holds no tokenizer" in err


def test_generation_longer_than_the_block_slides_like_nanogpt(tmp_path, capsys):
    tok = CharTokenizer.from_corpus(TEXT)
    model = formers.create_model("gpt_mini", vocab_size=tok.vocab_size, eos_id=None, embed_dim=16, num_heads=2,
                                 num_layers=2, max_seq_len=16)
    formers.save_pretrained(model, tmp_path / "small")
    tok.save(tmp_path / "small" / "tokenizer.json")
    code, out, err = run_cli(capsys, "generate", "--checkpoint", str(tmp_path / "small"), "--prompt", "To be, or not",
                             "--greedy", "--max-new-tokens", "50")  # 13 + 50 tokens through a block of 16
    assert code == 0, err
    ids = torch.tensor([tok.encode("To be, or not")])
    with torch.no_grad():
        for _ in range(50):  # nanoGPT's sample.py: idx_cond = idx[:, -block_size:]
            ids = torch.cat([ids, model(ids[:, -16:]).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert out == "To be, or not" + tok.decode(ids[0, 13:].tolist()) + "\n"
    code, out, err = run_cli(capsys, "generate", "--checkpoint", str(tmp_path / "small"), "--prompt", "To be",
                             "--max-new-tokens", "50", "--no-truncate")
    assert code == 2 and out == "" and "max_seq_len=16" in err and "--no-truncate" in err


@pytest.mark.parametrize("bad", [["--top-p", "2"], ["--temperature", "0"], ["--top-k", "0"], ["--max-new-tokens", "0"],
                                 ["--seed", "1", "--temperature", "-1"]])
def test_errors_leave_no_prompt_on_stdout(char_checkpoint, capsys, bad):
    path, _, _ = char_checkpoint
    code, out, err = run_cli(capsys, "generate", "--checkpoint", str(path), "--prompt", "To be", *bad)
    assert code == 2 and out == "" and err.startswith("formers generate: error: ") and err.count("\n") == 1, (out, err)
