from __future__ import annotations

import pytest
import torch

import formers
from formers.models.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    mean_pool,
)

TINY = dict(embed_dim=16, num_heads=2, num_layers=2, ffn_dim=24, vocab_size=40, max_seq_len=24, num_labels=3)
HEADS = [BertModel, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, BertForTokenClassification]


def _noisy(model):
    with torch.no_grad():  # larger weights than BERT's init so that rows differ visibly
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


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


def _main(out):
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits


def test_bert_variants_match_the_paper():
    from formers.registry import create_config

    shapes = [create_config(n) for n in ("bert_base", "bert_large", "bert_mini", "bert_tiny")]
    assert [(c.num_layers, c.embed_dim, c.num_heads, c.ffn_dim) for c in shapes] == [
        (12, 768, 12, 3072), (24, 1024, 16, 4096), (4, 256, 4, 1024), (2, 128, 2, 512)
    ]
    with torch.device("meta"):
        n = sum(p.numel() for p in formers.create_model("bert_base").parameters())
    assert n == 109_482_240  # Hugging Face bert-base-uncased BertModel


@pytest.mark.parametrize("name", formers.list_models("bert*"))
def test_contract_forward_grad_save_load(name, tmp_path):
    model = _noisy(formers.create_model(name, **TINY))
    ids, types, mask = right_padded()
    out = model(ids, types, mask)
    assert out.last_hidden_state.shape == (3, 7, 16) and out.pooled.shape == (3, 16)
    assert torch.isfinite(out.last_hidden_state).all() and torch.isfinite(out.pooled).all()
    (out.last_hidden_state[mask].square().mean() + out.pooled.square().mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    model.eval()
    formers.save_pretrained(model, tmp_path / "m")
    loaded = formers.from_pretrained(tmp_path / "m")
    assert isinstance(loaded, BertModel) and loaded.config == model.config
    torch.testing.assert_close(_main(loaded(ids, types, mask)), _main(model(ids, types, mask)), rtol=0, atol=0)


@pytest.mark.parametrize("cls", HEADS[1:])  # BertModel: test_contract_forward_grad_save_load
def test_heads_shapes_grads_save_load(cls, tmp_path):
    model = _noisy(cls(BertConfig(**TINY)))
    ids, types, mask = right_padded()
    logits = _main(model(ids, types, mask))
    expected = {BertForMaskedLM: (3, 7, 40), BertForPreTraining: (3, 7, 40), BertForSequenceClassification: (3, 3),
                BertForTokenClassification: (3, 7, 3)}[cls]
    assert logits.shape == expected and torch.isfinite(logits).all()
    loss = (logits[mask] if logits.dim() == 3 else logits).square().mean()
    if cls is BertForPreTraining:
        nsp = model(ids, types, mask).next_sentence_logits
        assert nsp.shape == (3, 2) and torch.isfinite(nsp).all()
        loss = loss + nsp.square().mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    if cls in (BertForMaskedLM, BertForPreTraining):
        assert model.decoder.weight is model.encoder.embed.weight
    model.eval()
    formers.save_pretrained(model, tmp_path / "m")
    loaded = formers.from_pretrained(tmp_path / "m")
    assert type(loaded) is cls
    torch.testing.assert_close(_main(loaded(ids, types, mask)), _main(model(ids, types, mask)), rtol=0, atol=0)


@pytest.mark.parametrize("cls", [BertModel, BertForMaskedLM, BertForPreTraining, BertForTokenClassification])
def test_padded_rows_equal_unbatched_runs(cls):
    model = _noisy(cls(BertConfig(**TINY))).eval()
    ids, types, mask = right_padded()
    batched = _main(model(ids, types, mask))
    for row in range(3):
        n = int(mask[row].sum())
        alone = _main(model(ids[row : row + 1, :n], types[row : row + 1, :n]))
        torch.testing.assert_close(batched[row, :n], alone[0], atol=1e-5, rtol=1e-5)
    if cls is BertModel:  # the pooler reads token 0, always real
        pooled = model(ids, types, mask).pooled
        torch.testing.assert_close(pooled[2], model(ids[2:, :2], types[2:, :2]).pooled[0], atol=1e-5, rtol=1e-5)
    if cls is BertForPreTraining:
        nsp = model(ids, types, mask).next_sentence_logits
        alone = model(ids[2:, :2], types[2:, :2]).next_sentence_logits
        torch.testing.assert_close(nsp[2], alone[0], atol=1e-5, rtol=1e-5)


def test_sequence_classification_padded_rows_equal_unbatched_runs():
    model = _noisy(BertForSequenceClassification(BertConfig(**TINY))).eval()
    ids, types, mask = right_padded()
    batched = model(ids, types, mask).logits
    for row in range(3):
        n = int(mask[row].sum())
        alone = model(ids[row : row + 1, :n], types[row : row + 1, :n]).logits
        torch.testing.assert_close(batched[row], alone[0], atol=1e-5, rtol=1e-5)


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
