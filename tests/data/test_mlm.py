from __future__ import annotations

import pytest
import torch

from formers.data.mlm import (
    MLMCollator,
    MLMExample,
    MLMLoader,
    build_examples,
    fixed_eval_batches,
    mask_tokens,
)
from formers.layers.cross_entropy import IGNORE_INDEX

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
VOCAB = 200


def collator(**kw) -> MLMCollator:
    return MLMCollator(VOCAB, PAD, MASK, [PAD, UNK, CLS, SEP, MASK], **kw)


def rows(n: int, seed: int = 0) -> list[MLMExample]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        a = torch.randint(5, VOCAB, (int(torch.randint(3, 40, (1,), generator=g)),), generator=g).tolist()
        b = torch.randint(5, VOCAB, (int(torch.randint(1, 30, (1,), generator=g)),), generator=g).tolist()
        out.append(MLMExample([CLS, *a, SEP, *b, SEP], [0] * (len(a) + 2) + [1] * (len(b) + 1)))
    return out


def test_masking_rates_match_the_paper():
    batch_rows = rows(600)
    batch = collator()(batch_rows, torch.Generator().manual_seed(0))
    original = collator().pad(batch_rows)["input_ids"]
    maskable = batch["padding_mask"] & (original > MASK)
    selected = batch["labels"] != IGNORE_INDEX
    n, k = int(maskable.sum()), int(selected.sum())
    assert n > 20_000
    assert abs(k / n - 0.15) < 0.01  # binomial sd ~0.0025
    masked = batch["input_ids"][selected] == MASK
    kept = batch["input_ids"][selected] == original[selected]
    randomised = ~masked & ~kept
    assert abs(float(masked.float().mean()) - 0.8) < 0.03
    assert abs(float(kept.float().mean()) - 0.1) < 0.025  # (a random draw equal to the original is ~0.05%)
    assert abs(float(randomised.float().mean()) - 0.1) < 0.025
    # random replacements never draw special ids
    assert (batch["input_ids"][selected][randomised] > MASK).all()
    # labels hold the original ids exactly where selected
    assert torch.equal(batch["labels"][selected], original[selected])
    # unselected positions are untouched
    assert torch.equal(batch["input_ids"][~selected], original[~selected])


def test_special_and_padding_tokens_are_never_masked():
    batch_rows = rows(300, seed=1)
    original = collator().pad(batch_rows)
    for seed in range(5):
        batch = collator(mlm_probability=0.9)(batch_rows, torch.Generator().manual_seed(seed))
        special = (original["input_ids"] <= MASK) | ~original["padding_mask"]
        assert torch.equal(batch["input_ids"][special], original["input_ids"][special])
        assert (batch["labels"][special] == IGNORE_INDEX).all()
        assert torch.equal(batch["token_type_ids"], original["token_type_ids"])
        assert torch.equal(batch["padding_mask"], original["padding_mask"])


def test_masking_is_seeded_and_reproducible():
    batch_rows = rows(20)
    a = collator()(batch_rows, torch.Generator().manual_seed(7))
    b = collator()(batch_rows, torch.Generator().manual_seed(7))
    c = collator()(batch_rows, torch.Generator().manual_seed(8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["labels"], c["labels"])


def test_every_row_gets_a_target():
    short = [MLMExample([CLS, 9, SEP], [0, 0, 0]) for _ in range(50)]
    batch = collator()(short, torch.Generator().manual_seed(0))
    assert ((batch["labels"] != IGNORE_INDEX).sum(dim=1) == 1).all()
    assert (batch["labels"][:, 1] == 9).all()


def test_bad_arguments_raise():
    ids = torch.full((2, 4), 7)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="mlm_probability"):
        mask_tokens(ids, ids > 0, MASK, torch.arange(5, 10), gen, mlm_probability=1.5)
    with pytest.raises(ValueError, match="mask_fraction \\+ random_fraction"):
        mask_tokens(ids, ids > 0, MASK, torch.arange(5, 10), gen, mask_fraction=0.9, random_fraction=0.2)
    with pytest.raises(ValueError, match="maskable"):
        mask_tokens(ids, torch.ones(2, 3, dtype=torch.bool), MASK, torch.arange(5, 10), gen)
    with pytest.raises(ValueError, match="mask_id"):
        MLMCollator(10, 0, 10, [0])


def _documents(n_docs=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    docs = []
    for d in range(n_docs):
        # sentence ids encode (document, sentence) so pairs can be traced back
        docs.append([[1000 + d * 100 + s] * int(torch.randint(2, 12, (1,), generator=g)) for s in range(20)])
    return docs


def test_single_segment_examples_pack_consecutive_sentences():
    docs = _documents()
    examples = build_examples(docs, max_len=32, cls_id=CLS, sep_id=SEP, seed=0)
    assert all(len(e.input_ids) <= 32 and e.input_ids[0] == CLS and e.input_ids[-1] == SEP for e in examples)
    assert all(e.next_sentence_label is None and set(e.token_type_ids) == {0} for e in examples)
    flat = [t for e in examples for t in e.input_ids[1:-1]]
    assert flat == [t for d in docs for s in d for t in s]  # every token once, in order


def test_next_sentence_pairs_are_half_random_from_other_documents():
    docs = _documents(60)
    examples = build_examples(docs, max_len=40, cls_id=CLS, sep_id=SEP, next_sentence=True, seed=0)
    labels = [e.next_sentence_label for e in examples]
    assert len(examples) > 300 and abs(sum(labels) / len(labels) - 0.5) < 0.08
    for e in examples:
        assert len(e.input_ids) <= 40 and e.input_ids[0] == CLS and e.input_ids.count(SEP) == 2
        first_sep = e.input_ids.index(SEP)
        a, b = e.input_ids[1:first_sep], e.input_ids[first_sep + 1 : -1]
        assert a and b
        assert e.token_type_ids == [0] * (first_sep + 1) + [1] * (len(b) + 1)
        doc_a = {(t - 1000) // 100 for t in a}
        doc_b = {(t - 1000) // 100 for t in b}
        assert len(doc_a) == 1
        if e.next_sentence_label == 0:
            assert doc_b == doc_a and min(b) > max(a)  # B follows A in the same document
        else:
            assert doc_a.isdisjoint(doc_b)
    with pytest.raises(ValueError, match="at least 2"):
        build_examples(docs[:1], 40, CLS, SEP, next_sentence=True)


def test_loader_is_a_pure_function_of_seed_and_epoch():
    examples = rows(50)
    loader = MLMLoader(examples, collator(), batch_size=8, seed=3)
    loader.set_epoch(1)
    first = list(loader)
    loader.set_epoch(0)
    list(loader)
    loader.set_epoch(1)
    again = list(loader)
    assert len(first) == 7 and all(torch.equal(x[k], y[k]) for x, y in zip(first, again, strict=True) for k in x)
    loader.set_epoch(2)
    assert not torch.equal(next(iter(loader))["input_ids"], first[0]["input_ids"])
    evals, again = (fixed_eval_batches(examples, collator(), 16, seed=5) for _ in range(2))
    assert all(torch.equal(x["labels"], y["labels"]) for x, y in zip(evals, again, strict=True))
