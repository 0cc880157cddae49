from __future__ import annotations

import pytest
import torch

import formers
from formers.data.labelled import collate, encode_words
from formers.data.tokenizers.wordpiece import WordPieceTokenizer
from formers.layers.cross_entropy import IGNORE_INDEX
from formers.models.bert import (
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
)
from formers.recipes.text_classification import classifier_from_pretrained
from formers.tasks.metrics import accuracy_and_macro_f1, entity_f1, entity_spans
from formers.tasks.text_classification import SequenceClassificationTask

TINY = dict(embed_dim=32, num_heads=2, num_layers=2, ffn_dim=64, max_seq_len=32)


def test_accuracy_and_macro_f1_by_hand():
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    # class 0: P 2/2 R 2/3 -> F1 0.8; class 1: P 1/2 R 1/2 -> 0.5; class 2: P 1/2 R 1/1 -> 2/3; class 3 absent
    metrics = accuracy_and_macro_f1(pred, gold, num_labels=4)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="as many predictions"):
        accuracy_and_macro_f1([0], [0, 1], 2)


def test_entity_spans_and_f1_follow_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "B-ORG", "I-PER"]
    assert entity_spans(tags) == {("PER", 0, 2), ("LOC", 3, 5), ("LOC", 5, 6), ("ORG", 6, 7), ("PER", 7, 8)}
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG"]]  # 2 of 3 predicted right, 2 of 3 gold found
    assert entity_f1(pred, gold) == pytest.approx(
        {"entity_precision": 2 / 3, "entity_recall": 2 / 3, "entity_f1": 2 / 3}
    )


def _tokenizer(tmp_path, words):
    tokenizer = WordPieceTokenizer.train([" ".join(words)] * 3, vocab_size=120, min_frequency=1)
    return tokenizer, tokenizer.save(tmp_path / "tok")


def test_token_labels_sit_on_first_sub_tokens(tmp_path):
    tokenizer, _ = _tokenizer(tmp_path, ["alpha", "beta", "gamma"])
    words = ["gammaalpha", "gamma", "alpha"]  # "##a", "##l"... exist: the first word splits
    row = encode_words(tokenizer, words, [3, 1, 2], max_len=32)
    pieces = [tokenizer.encode(w, add_special_tokens=False) for w in words]
    assert len(pieces[0]) > 1  # the first word is split into several pieces
    expected = [IGNORE_INDEX, 3] + [IGNORE_INDEX] * (len(pieces[0]) - 1) + [1, 2, IGNORE_INDEX]
    assert row.label == expected and row.input_ids[0] == tokenizer.cls_id and row.input_ids[-1] == tokenizer.sep_id
    short = encode_words(tokenizer, words, [3, 1, 2], max_len=len(pieces[0]) + 3)  # room for 2 words
    assert [t for t in short.label if t != IGNORE_INDEX] == [3, 1]
    batch = collate([row, short], tokenizer.pad_id)
    assert batch["labels"].shape == batch["input_ids"].shape
    assert batch["padding_mask"].sum() == len(row.input_ids) + len(short.input_ids)


@pytest.mark.parametrize("source_cls", [BertModel, BertForPreTraining, BertForSequenceClassification])
def test_classifier_takes_the_pretrained_encoder_and_pooler(source_cls, tmp_path):
    source = source_cls(BertConfig(vocab_size=50, **TINY))
    formers.save_pretrained(source, tmp_path / "src")
    model = classifier_from_pretrained(tmp_path / "src", token_level=False, num_labels=4, dropout=0.0)
    assert model.config.num_labels == 4 and model.config.dropout == 0.0 and model.classifier.out_features == 4
    encoder = source.bert.encoder if hasattr(source, "bert") else source.encoder
    pooler = source.bert.pooler if hasattr(source, "bert") else source.pooler
    ours = model.bert.encoder.state_dict()
    assert ours.keys() == encoder.state_dict().keys()
    assert all(torch.equal(ours[k], v) for k, v in encoder.state_dict().items())
    assert torch.equal(model.bert.pooler.weight, pooler.weight)
    token_model = classifier_from_pretrained(tmp_path / "src", token_level=True, num_labels=3)
    assert torch.equal(token_model.encoder.embed.weight, encoder.embed.weight)


def test_sequence_task_evaluates_accuracy_macro_f1_and_loss():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, num_labels=3, **TINY)).eval()
    ids = torch.randint(5, 50, (4, 6))
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids),
             "padding_mask": torch.ones(4, 6, dtype=torch.bool), "labels": torch.tensor([0, 1, 2, 1])}
    task = SequenceClassificationTask(3)
    metrics = task.evaluate(model, [batch])
    logits = model(ids).logits
    expected = accuracy_and_macro_f1(logits.argmax(-1).tolist(), [0, 1, 2, 1], 3)
    assert metrics["accuracy"] == expected["accuracy"] and metrics["macro_f1"] == expected["macro_f1"]
    assert metrics["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, batch["labels"]).item(), rel=1e-5)
