from __future__ import annotations

import pytest
import torch

import formers
from formers.models.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertModel,
    mean_pool,
)

TINY = dict(embed_dim=16, num_heads=2, num_layers=2, ffn_dim=24, vocab_size=40, max_seq_len=24, num_labels=3)


def right_padded(b=3, t=7, vocab=40):
    ids = torch.randint(1, vocab, (b, t))
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 2:] = False
    ids[~mask] = 0
    types = torch.zeros(b, t, dtype=torch.long)
    types[0, 4:] = 1
    types[1, 3:5] = 1
    return ids, types, mask


def test_bert_variants_match_the_paper():
    from formers.registry import create_config

    shapes = [create_config(n) for n in ("bert_base", "bert_large", "bert_mini", "bert_tiny")]
    assert [(c.num_layers, c.embed_dim, c.num_heads, c.ffn_dim) for c in shapes] == [
        (12, 768, 12, 3072), (24, 1024, 16, 4096), (4, 256, 4, 1024), (2, 128, 2, 512)
    ]
    with torch.device("meta"):
        n = sum(p.numel() for p in formers.create_model("bert_base").parameters())
    assert n == 109_482_240  # Hugging Face bert-base-uncased BertModel


@pytest.mark.parametrize("cls", [BertForMaskedLM, BertForPreTraining])
def test_masked_lm_decoders_are_tied_to_the_word_embeddings(cls):
    model = cls(BertConfig(**TINY))
    assert model.decoder.weight is model.encoder.embed.weight


def test_mean_pool():
    hidden = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    pooled = mean_pool(hidden, mask)
    torch.testing.assert_close(pooled[0], hidden[0, :2].mean(0))
    torch.testing.assert_close(pooled[1], hidden[1].mean(0))
    torch.testing.assert_close(mean_pool(hidden), hidden.mean(1))
    unit = mean_pool(hidden, mask, normalize=True)
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(2))


def test_bad_inputs_raise_clear_errors():
    model = BertModel(BertConfig(**TINY)).eval()
    ids = torch.randint(0, 40, (2, 5))
    with pytest.raises(ValueError, match="input_ids holds token id 40"):
        model(torch.full((2, 5), 40))
    with pytest.raises(ValueError, match="max_seq_len=24"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="token_type_ids must have the shape"):
        model(ids, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="token_type_ids holds token id 2"):
        model(ids, torch.full((2, 5), 2))
    with pytest.raises(TypeError, match="token_type_ids"):
        model(ids, [[0] * 5] * 2)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match="padding_mask hides every token"):
        model(ids, padding_mask=mask)
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(embed_dim=10, num_heads=3)


def test_masked_lm_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**{**TINY, "dropout": 0.0, "attn_dropout": 0.0}))
    ids, types, mask = right_padded()
    targets = ids.clone()
    inputs = ids.clone()
    inputs[:, 1] = 39  # the "[MASK]" id
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        logits = model(inputs, types, mask).logits
        loss = torch.nn.functional.cross_entropy(logits[:, 1], targets[:, 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_pretraining_model_learns_masked_tokens_and_next_sentence_labels():
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(**{**TINY, "dropout": 0.0, "attn_dropout": 0.0}))
    ids, types, mask = right_padded()
    targets, nsp_labels = ids[:, 1].clone(), torch.tensor([0, 1, 1])
    inputs = ids.clone()
    inputs[:, 1] = 39  # the "[MASK]" id
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        out = model(inputs, types, mask)
        mlm = torch.nn.functional.cross_entropy(out.logits[:, 1], targets)
        nsp = torch.nn.functional.cross_entropy(out.next_sentence_logits, nsp_labels)
        opt.zero_grad()
        (mlm + nsp).backward()
        opt.step()
    assert mlm.item() < 0.05 and nsp.item() < 0.05
