"""Parity of formers' GPT with Hugging Face ``GPT2LMHeadModel`` through ``formers.interop.gpt2``.

Tiny random GPT-2 models of several shapes are saved with ``save_pretrained`` (safetensors), loaded with
``formers.from_pretrained`` and compared in float32 (1e-5): logits with and without left padding, greedy
continuations against ``generate``, and the inverse conversion (formers -> GPT-2 directory -> ``GPT2LMHeadModel``).
"""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

import formers  # noqa: E402
from formers.interop.gpt2 import (  # noqa: E402
    config_from_gpt2,
    convert_gpt2_state_dict,
    gpt2_config_from_formers,
    save_gpt2_directory,
    to_gpt2_state_dict,
)
from formers.models.gpt import GPT  # noqa: E402

ATOL = RTOL = 1e-5
EOS, PAD = 1, 0

CASES = {
    "tied-gelu-new": dict(n_layer=2, n_head=2, n_embd=16, n_positions=32, vocab_size=50),
    "untied-wide": dict(n_layer=1, n_head=4, n_embd=32, n_positions=24, vocab_size=61, tie_word_embeddings=False),
    "tied-gelu-inner": dict(n_layer=3, n_head=3, n_embd=24, n_positions=40, vocab_size=45, n_inner=40,
                            activation_function="gelu", layer_norm_epsilon=1e-6),
}


def _hf_model(case: str, seed: int = 0) -> GPT2LMHeadModel:
    config = GPT2Config(**CASES[case], eos_token_id=EOS, bos_token_id=EOS, pad_token_id=PAD)
    model = GPT2LMHeadModel(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.2 * noise if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else 0.3 * noise)
    return model


@pytest.fixture(params=list(CASES))
def saved(request, tmp_path):
    hf = _hf_model(request.param)
    hf.save_pretrained(tmp_path / "hf")
    return hf, tmp_path / "hf"


def _batch(vocab: int):
    ids = torch.randint(2, vocab, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, :3] = False
    mask[2, :6] = False
    ids[~mask] = PAD
    return ids, mask


def test_logits_match(saved):
    hf, path = saved
    ours = formers.from_pretrained(path)
    assert isinstance(ours, GPT)
    assert (ours.output.weight is ours.embed.weight) == hf.config.tie_word_embeddings
    ids, mask = _batch(hf.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=ATOL, rtol=RTOL)
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)
        theirs = hf(ids, attention_mask=mask.long(), position_ids=positions).logits
        torch.testing.assert_close(ours(ids, mask).logits[mask], theirs[mask], atol=ATOL, rtol=RTOL)


def test_greedy_continuations_match_hf_generate(saved):
    hf, path = saved
    ours = formers.from_pretrained(path)
    ids, mask = _batch(hf.config.vocab_size)
    theirs = hf.generate(
        ids, attention_mask=mask.long(), max_new_tokens=10, do_sample=False, eos_token_id=EOS, pad_token_id=PAD
    )[:, ids.shape[1]:]
    assert ours.generate(ids, 10, padding_mask=mask, eos_id=EOS).tolist() == theirs.tolist()
    never = hf.config.vocab_size - 1  # no early stop: compare all 10 steps
    theirs = hf.generate(ids[:1], max_new_tokens=10, do_sample=False, eos_token_id=never, pad_token_id=PAD)
    assert ours.generate(ids[:1], 10, eos_id=never).tolist() == theirs[:, ids.shape[1]:].tolist()


def test_state_dict_round_trip_and_save_gpt2_directory(saved, tmp_path):
    hf, path = saved
    config = config_from_gpt2(json.loads((path / "config.json").read_text()))
    stored = load_file(str(path / "model.safetensors"))
    back = to_gpt2_state_dict(convert_gpt2_state_dict(stored, config), config)
    assert back.keys() == stored.keys()
    assert all(torch.equal(back[k], stored[k]) for k in stored)

    ours = formers.from_pretrained(path)
    save_gpt2_directory(ours, tmp_path / "out")
    reloaded, info = GPT2LMHeadModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids, _ = _batch(hf.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(ids).logits, hf(ids).logits, atol=0, rtol=0)
    assert gpt2_config_from_formers(ours.config)["n_layer"] == hf.config.n_layer


def test_bare_gpt2model_keys_and_old_mask_buffers(tmp_path):
    hf = _hf_model("tied-gelu-new", seed=1)
    bare = {k.removeprefix("transformer."): v.contiguous() for k, v in hf.transformer.state_dict().items()}
    bare["h.0.attn.bias"] = torch.ones(1, 1, 32, 32).tril()  # as in older GPT-2 files
    bare["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    (tmp_path / "bare").mkdir()
    save_file(bare, str(tmp_path / "bare" / "model.safetensors"))
    hf.config.to_json_file(str(tmp_path / "bare" / "config.json"))
    ours = formers.from_pretrained(tmp_path / "bare")
    ids, _ = _batch(50)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=ATOL, rtol=RTOL)


def test_conversion_errors(tmp_path):
    base = GPT2Config(**CASES["tied-gelu-new"], eos_token_id=EOS).to_dict()
    for key, value in [("scale_attn_by_inverse_layer_idx", True), ("reorder_and_upcast_attn", True),
                       ("add_cross_attention", True), ("scale_attn_weights", False)]:
        with pytest.raises(ValueError, match=f"{key}=True|{key}=False"):
            config_from_gpt2({**base, key: value})
    with pytest.raises(ValueError, match="activation_function 'relu' is not supported"):
        config_from_gpt2({**base, "activation_function": "relu"})
    with pytest.raises(ValueError, match="eos_token_id=50256 is outside the vocabulary"):
        config_from_gpt2({**base, "eos_token_id": 50256})
    with pytest.raises(ValueError, match="model_type 'bert'"):
        config_from_gpt2({**base, "model_type": "bert"})
    untied = config_from_gpt2({**base, "tie_word_embeddings": False})
    state = _hf_model("tied-gelu-new").state_dict()
    with pytest.raises(KeyError, match="no 'lm_head.weight'"):
        convert_gpt2_state_dict({k: v for k, v in state.items() if k != "lm_head.weight"}, untied)
    tied = config_from_gpt2(base)
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        convert_gpt2_state_dict({**state, "lm_head.weight": torch.zeros_like(state["lm_head.weight"])}, tied)
    with pytest.raises(ValueError, match="bias=False"):
        save_gpt2_directory(formers.create_model("gpt_mini", bias=False), tmp_path / "x")
    with pytest.raises(ValueError, match="activation 'relu' has no GPT-2 name"):
        save_gpt2_directory(formers.create_model("gpt_mini", activation="relu"), tmp_path / "x")
