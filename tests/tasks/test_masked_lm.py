from __future__ import annotations

import math

import pytest
import torch

from formers.data.mlm import (
    MLMCollator,
    MLMExample,
    MLMLoader,
    build_examples,
    fixed_eval_batches,
    split_documents,
    text_documents,
)
from formers.data.tokenizers.wordpiece import WordPieceTokenizer
from formers.layers.cross_entropy import IGNORE_INDEX
from formers.models.bert import BertConfig, BertForMaskedLM, BertForPreTraining
from formers.recipes.masked_lm import tokenize_documents
from formers.tasks.masked_lm import MaskedLMTask, masked_lm_loss

TINY = dict(embed_dim=32, num_heads=2, num_layers=2, ffn_dim=64, max_seq_len=32, dropout=0.0, attn_dropout=0.0)
# A tiny "corpus" whose masked words are predictable from their neighbours.
SENTENCES = [
    "the cat sat on the mat .", "the dog lay on the rug .", "a bird sang in the tree .",
    "the fish swam in the pond .", "a cow ate in the field .", "the king sat on the throne .",
]


def _corpus_file(tmp_path, repeats=30):
    docs = []
    for i in range(repeats):
        docs.append("\n".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(4)))
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def _batch(vocab=40, nsp=False):
    ids = torch.randint(5, vocab, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[2, 6:] = False
    labels = torch.full((3, 10), IGNORE_INDEX)
    labels[0, 2], labels[1, 5], labels[2, 3] = 7, 8, 9
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "padding_mask": mask, "labels": labels}
    if nsp:
        batch["next_sentence_labels"] = torch.tensor([0, 1, 1])
    return batch


def test_loss_is_cross_entropy_on_masked_positions_only():
    model = BertForMaskedLM(BertConfig(vocab_size=40, **TINY)).eval()
    batch = _batch()
    out = MaskedLMTask().training_step(model, batch)
    full = model(batch["input_ids"], batch["token_type_ids"], batch["padding_mask"]).logits  # (B, T, V)
    selected = batch["labels"] != IGNORE_INDEX
    reference = torch.nn.functional.cross_entropy(full[selected], batch["labels"][selected])
    assert out.loss.item() == pytest.approx(reference.item(), rel=1e-5)
    assert int(out.num_tokens) == 26 and "nsp_loss" not in out.metrics  # real tokens, not the padding


@pytest.mark.parametrize("pretraining", [False, True])
def test_scoring_every_position_gives_the_loss_and_gradients_of_the_masked_ones(pretraining):
    torch.manual_seed(0)
    model = (BertForPreTraining if pretraining else BertForMaskedLM)(BertConfig(vocab_size=40, **TINY))
    batch = _batch(nsp=pretraining)
    results = []
    for all_positions in (False, True):
        model.zero_grad()
        _, loss = masked_lm_loss(model, batch, all_positions)
        loss.backward()
        results.append((loss.detach(), [None if p.grad is None else p.grad.clone() for p in model.parameters()]))
    (selected, grads), (every, grads_every) = results
    torch.testing.assert_close(every, selected, rtol=1e-6, atol=1e-6)
    assert [g is None for g in grads] == [g is None for g in grads_every]  # the NSP head: none either way
    for a, b in zip(grads, grads_every):
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    task = MaskedLMTask(all_positions=True)
    assert task.capturable and not MaskedLMTask().capturable
    # on a CPU the task selects the masked positions either way (cheaper there): the same loss
    assert task.training_step(model, batch).metrics["mlm_loss"].item() == pytest.approx(selected.item(), rel=1e-6)


def test_padding_to_a_multiple_keeps_the_masks_and_adds_only_ignored_padding():
    rows = [MLMExample([2] + list(range(5, 5 + n)) + [3], [0] * (n + 2)) for n in (7, 12, 4)]
    plain = MLMCollator(40, pad_id=0, mask_id=4, special_ids=[1, 2, 3])
    padded = MLMCollator(40, pad_id=0, mask_id=4, special_ids=[1, 2, 3], pad_multiple=8, max_len=20)
    a = plain(rows, torch.Generator().manual_seed(3))
    b = padded(rows, torch.Generator().manual_seed(3))
    assert a["input_ids"].shape == (3, 14) and b["input_ids"].shape == (3, 16)
    for key in a:
        torch.testing.assert_close(b[key][:, :14], a[key])  # the same masks, labels and segments
    assert (b["input_ids"][:, 14:] == 0).all() and not b["padding_mask"][:, 14:].any()
    assert (b["labels"][:, 14:] == IGNORE_INDEX).all() and (b["token_type_ids"][:, 14:] == 0).all()
    capped = MLMCollator(40, pad_id=0, mask_id=4, special_ids=[1, 2, 3], pad_multiple=32, max_len=15)
    assert capped(rows, torch.Generator().manual_seed(3))["input_ids"].shape == (3, 15)  # capped at max_len
    assert MLMLoader(rows, padded, 2, drop_last=True).static_shapes
    assert not MLMLoader(rows, padded, 2).static_shapes  # a partial last batch: another shape
    assert not MLMLoader(rows, plain, 2, drop_last=True).static_shapes  # every longest length: many shapes
    with pytest.raises(ValueError, match="pad_multiple must be a positive int, got 0"):
        MLMCollator(40, pad_id=0, mask_id=4, special_ids=[1], pad_multiple=0)


def test_next_sentence_loss_is_added_for_the_pretraining_model():
    model = BertForPreTraining(BertConfig(vocab_size=40, **TINY)).eval()
    batch = _batch(nsp=True)
    out = MaskedLMTask(next_sentence_weight=0.5).training_step(model, batch)
    full = model(batch["input_ids"], batch["token_type_ids"], batch["padding_mask"])
    nsp = torch.nn.functional.cross_entropy(full.next_sentence_logits, batch["next_sentence_labels"])
    assert out.loss.item() == pytest.approx(out.metrics["mlm_loss"].item() + 0.5 * nsp.item(), rel=1e-5)
    metrics = MaskedLMTask().evaluate(model, [batch])
    assert set(metrics) == {"mlm_accuracy", "mlm_loss", "perplexity", "nsp_accuracy"}
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["mlm_loss"]))


def test_tiny_bert_learns_masked_words_of_held_out_text(tmp_path, train_plainly):
    documents = [s for _, s in text_documents(_corpus_file(tmp_path, repeats=48))]
    train_docs, held_docs = split_documents([(str(i), d) for i, d in enumerate(documents)], heldout_every=3)
    tokenizer = WordPieceTokenizer.train([" ".join(d) for d in train_docs], vocab_size=60, min_frequency=1)
    ids = dict(cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id)
    train = build_examples(tokenize_documents(tokenizer, train_docs), 32, **ids)
    held = build_examples(tokenize_documents(tokenizer, held_docs), 32, seed=1, **ids)
    collator = MLMCollator(tokenizer.vocab_size, tokenizer.pad_id, tokenizer.mask_id, sorted(tokenizer.special_ids),
                           mlm_probability=0.2)
    loader = MLMLoader(train, collator, batch_size=8, seed=0)
    eval_set = fixed_eval_batches(held, collator, 16)
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, **TINY))
    task = MaskedLMTask()
    before = task.evaluate(model.eval(), eval_set)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train_plainly(model, task, loader, opt, epochs=10)
    after = task.evaluate(model.eval(), eval_set)
    assert sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in eval_set) > 80  # enough targets to measure
    # untrained: ~uniform over the vocabulary; trained: the frequent words and their contexts
    assert before["mlm_accuracy"] < 0.1 and after["mlm_accuracy"] > 0.18, (before, after)
    assert after["perplexity"] < before["perplexity"] / 3, (before, after)
