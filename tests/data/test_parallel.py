"""Tests for formers.data.parallel: strict reading, length filter, token-bucket batches, collation, loader."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest
import torch

from formers.data.buckets import bucket_length
from formers.data.parallel import (
    ParallelDataset,
    TokenBucketBatchSampler,
    TranslationLoader,
    collate_translation,
    read_parallel,
    read_tsv,
)


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_read_parallel_plain_and_gz(tmp_path: Path) -> None:
    src = write(tmp_path / "a.en.gz", "one\ntwo\n")
    tgt = write(tmp_path / "a.de", "eins\nzwei\n")
    text = read_parallel(src, tgt)
    assert list(text) == [("one", "eins"), ("two", "zwei")]
    assert text.num_skipped == 0


def test_mismatched_counts_name_both_files(tmp_path: Path) -> None:
    src = write(tmp_path / "x.en", "a\nb\nc\n")
    tgt = write(tmp_path / "x.de", "a\nb\n")
    with pytest.raises(ValueError, match=r"x\.en.* has 3 lines, .*x\.de.* has 2"):
        read_parallel(src, tgt)


def test_blank_line_names_file_and_line(tmp_path: Path) -> None:
    src = write(tmp_path / "b.en", "a\nb\nc\n")
    tgt = write(tmp_path / "b.de", "a\n \nc\n")
    with pytest.raises(ValueError, match=r"b\.de' line 2: is blank"):
        read_parallel(src, tgt)
    text = read_parallel(src, tgt, skip_empty=True)
    assert list(text) == [("a", "a"), ("c", "c")] and text.num_skipped == 1


def test_tsv_missing_column_and_blank(tmp_path: Path) -> None:
    good = write(tmp_path / "g.tsv", "hello\thola\nid1\tx\n")
    assert list(read_tsv(good)) == [("hello", "hola"), ("id1", "x")]
    three = write(tmp_path / "t.tsv.gz", "Gen.1.1\tIn\tEn\n")
    assert list(read_tsv(three, src_column=1, tgt_column=2)) == [("In", "En")]
    bad = write(tmp_path / "bad.tsv", "hello\thola\nonly one column\n")
    with pytest.raises(ValueError, match=r"bad\.tsv' line 2: expected at least 2 tab-separated columns, got 1"):
        read_tsv(bad)
    blank = write(tmp_path / "blank.tsv", "hello\thola\nbye\t\n")
    with pytest.raises(ValueError, match=r"blank\.tsv' line 2: column 1 is blank"):
        read_tsv(blank)
    assert read_tsv(blank, skip_empty=True).num_skipped == 1


def test_dataset_length_filter() -> None:
    src = [[5] * 3, [5] * 10, [5] * 4]
    tgt = [[6] * 3, [6] * 2, [6] * 4]
    ds = ParallelDataset(src, tgt, max_len=5)
    assert len(ds) == 2 and ds.num_rejected == 1  # rejected, not truncated
    assert ds[1] == ([5] * 4, [6] * 4)
    assert ds.lengths == [(3, 4), (4, 5)]
    assert ParallelDataset(src, tgt).num_rejected == 0
    with pytest.raises(ValueError, match="max_len=2 rejects all 3 pairs"):
        ParallelDataset(src, tgt, max_len=2)
    with pytest.raises(ValueError, match=r"tgt_ids\[0\] is empty"):
        ParallelDataset([[1]], [[]])


def random_lengths(n: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(1, 60), rng.randint(2, 60)) for _ in range(n)]


def test_token_bucket_budget_coverage_and_order() -> None:
    lengths = random_lengths(2000)
    sampler = TokenBucketBatchSampler(lengths, max_tokens=1000, shuffle=True, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(lengths))), "every example exactly once per epoch"
        for b in batches:
            cost = len(b) * (max(lengths[i][0] for i in b) + max(lengths[i][1] for i in b))
            assert cost <= 1000
        orders.append(batches)
    assert orders[0] != orders[1] != orders[2]
    again = TokenBucketBatchSampler(lengths, max_tokens=1000, shuffle=True, seed=3)
    again.set_epoch(1)
    assert list(again) == orders[1], "same (seed, epoch) gives the same batches"
    other_seed = TokenBucketBatchSampler(lengths, max_tokens=1000, shuffle=True, seed=4)
    other_seed.set_epoch(1)
    assert list(other_seed) != orders[1]
    # Buckets: length-sorted packing wastes little space compared with random packing.
    random_pack = TokenBucketBatchSampler(lengths, 1000, shuffle=True, seed=3, sort_by_length=False)
    assert len(sampler) < 0.7 * len(random_pack)


def test_token_bucket_rejects_oversized_example() -> None:
    with pytest.raises(ValueError, match=r"example 1 alone needs 130 tokens .* max_tokens=100"):
        TokenBucketBatchSampler([(10, 10), (70, 60)], max_tokens=100)
    with pytest.raises(ValueError, match="max_tokens must be a positive int, got 0"):
        TokenBucketBatchSampler([(1, 1)], max_tokens=0)


def test_collate_shapes_masks_and_specials() -> None:
    batch = collate_translation([([5, 6, 7], [8, 9]), ([10], [11, 12, 13, 14])], pad_id=0, bos_id=1, eos_id=2)
    assert batch["src_ids"].tolist() == [[5, 6, 7], [10, 0, 0]]
    assert batch["src_padding_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["tgt_in"].tolist() == [[1, 8, 9, 0, 0], [1, 11, 12, 13, 14]]
    assert batch["tgt_out"].tolist() == [[8, 9, 2, 0, 0], [11, 12, 13, 14, 2]]
    assert batch["tgt_padding_mask"].tolist() == [[True, True, True, False, False], [True] * 5]
    assert batch.pop("num_tgt_tokens") == 3 + 5
    for key, value in batch.items():
        assert value.dtype == (torch.bool if key.endswith("mask") else torch.long), key
    with pytest.raises(ValueError, match="empty batch"):
        collate_translation([])


def test_loader_epochs() -> None:
    rng = random.Random(0)
    src = [[rng.randint(4, 99) for _ in range(rng.randint(1, 30))] for _ in range(300)]
    tgt = [[rng.randint(4, 99) for _ in range(rng.randint(1, 30))] for _ in range(300)]
    loader = TranslationLoader(ParallelDataset(src, tgt), max_tokens=256, seed=1)
    seen = []
    for batch in loader:
        b, s = batch["src_ids"].shape
        assert b * (s + batch["tgt_in"].shape[1]) <= 256
        assert torch.equal(batch["tgt_in"][:, 1:] * batch["tgt_padding_mask"][:, 1:],
                           batch["tgt_out"][:, :-1] * batch["tgt_padding_mask"][:, 1:])
        seen.append(int(batch["src_padding_mask"].sum()))
    assert len(seen) == len(loader) and sum(seen) == sum(map(len, src))
    first = [batch["src_ids"].shape for batch in loader]
    loader.set_epoch(1)
    assert [batch["src_ids"].shape for batch in loader] != first


def test_bucket_lengths_round_up_within_the_cap() -> None:
    assert [bucket_length(n, 8) for n in (1, 8, 9, 16, 17)] == [8, 8, 16, 16, 24]
    assert [bucket_length(n, 16, cap=40) for n in (1, 17, 33, 40)] == [16, 32, 40, 40]
    assert bucket_length(45, 16, cap=40) == 45  # never below the longest sequence
    with pytest.raises(ValueError, match="pad_multiple must be a positive int, got 0"):
        collate_translation([([5], [6])], pad_multiple=0)


def test_bucketed_batches_keep_every_token_and_take_few_shapes() -> None:
    rng = random.Random(0)
    src = [[rng.randint(4, 99) for _ in range(rng.randint(1, 30))] for _ in range(400)]
    tgt = [[rng.randint(4, 99) for _ in range(rng.randint(1, 29))] for _ in range(400)]
    dataset = ParallelDataset(src, tgt, max_len=30)
    plain = TranslationLoader(dataset, max_tokens=512, seed=1)
    loader = TranslationLoader(dataset, max_tokens=512, seed=1, pad_multiple=8, max_len=30)
    pairs, shapes = [], set()
    for batch in loader:
        b, s = batch["src_ids"].shape
        t = batch["tgt_in"].shape[1]
        assert b * (s + t) <= 512 and s in (8, 16, 24, 30) and t in (8, 16, 24, 30)
        shapes.add((s, t))
        src_mask, tgt_mask = batch["src_padding_mask"], batch["tgt_padding_mask"]
        assert batch["num_tgt_tokens"] == int(tgt_mask.sum())
        for row in range(b):  # every real token is there, in its place, and only padding is masked out
            n, m = int(src_mask[row].sum()), int(tgt_mask[row].sum())
            assert src_mask[row, :n].all() and tgt_mask[row, :m].all()
            assert (batch["src_ids"][row, n:] == 0).all() and (batch["tgt_out"][row, m:] == 0).all()
            assert batch["tgt_out"][row, m - 1] == 2 and batch["tgt_in"][row, 0] == 1
            pairs.append((tuple(batch["src_ids"][row, :n].tolist()), tuple(batch["tgt_out"][row, : m - 1].tolist())))
    assert sorted(pairs) == sorted((tuple(a), tuple(b)) for a, b in zip(src, tgt))
    assert len(shapes) <= 16 < len({(x["src_ids"].shape[1], x["tgt_in"].shape[1]) for x in plain})
