from __future__ import annotations

import numpy as np
import pytest

from formers.interop.word2vec_format import load_word2vec_format, save_word2vec_format

WORDS = ["the", "Ünïcödé", "日本", "x", "can't"]


def _vectors(dim: int = 7) -> np.ndarray:
    rng = np.random.default_rng(0)
    v = rng.standard_normal((len(WORDS), dim)).astype(np.float32)
    v[0, :4] = [1e-30, -3.4e38, 0.1, -0.0]  # extremes round-trip too
    return v


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_round_trip_is_exact(tmp_path, binary):
    path = tmp_path / ("v.bin" if binary else "v.txt")
    vectors = _vectors()
    save_word2vec_format(path, WORDS, vectors, binary=binary)
    words, loaded = load_word2vec_format(path, binary=binary)
    assert words == WORDS and loaded.dtype == np.float32
    assert np.array_equal(loaded.view(np.uint32), vectors.view(np.uint32))  # bit for bit, -0.0 included
    guessed_words, guessed = load_word2vec_format(path)  # the format is recognised from the bytes
    assert guessed_words == WORDS and np.array_equal(guessed, vectors)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_gensim_reads_ours_and_we_read_gensims(tmp_path, binary):
    keyed = pytest.importorskip("gensim.models.keyedvectors")
    vectors = _vectors()
    ours = tmp_path / "ours"
    save_word2vec_format(ours, WORDS, vectors, binary=binary)
    kv = keyed.KeyedVectors.load_word2vec_format(str(ours), binary=binary)
    assert kv.index_to_key == WORDS and np.array_equal(kv.vectors, vectors)
    theirs = tmp_path / "theirs"
    kv.save_word2vec_format(str(theirs), binary=binary)
    words, loaded = load_word2vec_format(theirs, binary=binary)
    assert words == WORDS and np.array_equal(loaded, vectors)


def test_c_tool_binary_rows_end_with_a_newline_and_gensims_do_not(tmp_path):
    vectors = _vectors(4)
    rows = b"".join(w.encode() + b" " + v.astype("<f4").tobytes() + b"\n" for w, v in zip(WORDS, vectors))
    (tmp_path / "c.bin").write_bytes(f"{len(WORDS)} 4\n".encode() + rows)
    words, loaded = load_word2vec_format(tmp_path / "c.bin", binary=True)
    assert words == WORDS and np.array_equal(loaded, vectors)


def _write(path, text: str | bytes) -> str:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def test_malformed_text_files_name_file_line_and_word(tmp_path):
    bad = tmp_path / "bad.txt"
    _write(bad, "2 three\na 1 2 3\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: expected a header '<words> <dimensions>', got b'2 three\\n'"):
        load_word2vec_format(bad, binary=False)
    _write(bad, "2 3\na 1 2 3\nb 1 2\n")
    with pytest.raises(ValueError, match=r"bad.txt:3: word 'b' has 2 values, expected 3"):
        load_word2vec_format(bad, binary=False)
    _write(bad, "3 3\na 1 2 3\nb 1 2 3\n")
    with pytest.raises(ValueError, match=r"bad.txt: the header says 3 words, the file has 2 rows"):
        load_word2vec_format(bad, binary=False)
    _write(bad, "1 3\na 1 2 3\nb 1 2 3\n")
    with pytest.raises(ValueError, match=r"bad.txt:3: more rows than the header's 1 \(word 'b'\)"):
        load_word2vec_format(bad, binary=False)
    _write(bad, "2 3\na 1 2 3\na 4 5 6\n")
    with pytest.raises(ValueError, match=r"word 'a' appears twice \(rows 1 and 2\)"):
        load_word2vec_format(bad, binary=False)
    _write(bad, "1 3\na 1 two 3\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: word 'a' has a value that is not a number"):
        load_word2vec_format(bad, binary=False)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_word2vec_format(tmp_path / "missing.txt")


def test_malformed_binary_files_name_the_row_and_word(tmp_path):
    bad = tmp_path / "bad.bin"
    row = b"a " + np.ones(3, dtype="<f4").tobytes()
    _write(bad, b"2 3\n" + row + b"b " + np.ones(2, dtype="<f4").tobytes())
    with pytest.raises(ValueError, match=r"bad.bin: row 2 \(word 'b'\) is truncated: 8 of its 12 vector bytes"):
        load_word2vec_format(bad, binary=True)
    _write(bad, b"3 3\n" + row)
    with pytest.raises(ValueError, match=r"bad.bin: the header says 3 words, the file has 1 rows"):
        load_word2vec_format(bad, binary=True)
    _write(bad, b"1 3\n" + row + row)
    with pytest.raises(ValueError, match=r"bad.bin: row 2 \(word 'a'\): more rows than the header's 1"):
        load_word2vec_format(bad, binary=True)
    _write(bad, b"1 3\n\xff\xfe " + np.ones(3, dtype="<f4").tobytes())
    with pytest.raises(ValueError, match=r"bad.bin:row 1: word b'\\xff\\xfe' is not UTF-8"):
        load_word2vec_format(bad, binary=True)
    words, _ = load_word2vec_format(bad, binary=True, unicode_errors="replace")
    assert words == ["\ufffd\ufffd"]


def test_writer_rejects_words_the_format_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="word 'a b' cannot be written"):
        save_word2vec_format(tmp_path / "v.txt", ["a b"], np.zeros((1, 2)))
    with pytest.raises(ValueError, match="words has 2 entries but vectors has 1 rows"):
        save_word2vec_format(tmp_path / "v.txt", ["a", "b"], np.zeros((1, 2)))
    assert not list(tmp_path.iterdir())  # nothing half-written
