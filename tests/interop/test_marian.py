"""Parity of formers' Transformer with Hugging Face ``MarianMTModel`` through ``formers.interop.marian``.

Tiny random Marian models in several configurations are saved with ``save_pretrained`` (safetensors), loaded
with ``formers.from_pretrained`` and compared in float32 (1e-5): logits of a padded batch, cached decoding,
greedy translations, and the inverse conversion (formers -> Marian directory -> ``MarianMTModel``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file  # noqa: E402
from transformers import GenerationConfig, MarianConfig, MarianMTModel  # noqa: E402

import formers  # noqa: E402
from formers.interop.marian import (  # noqa: E402
    SHARED,
    config_from_marian,
    convert_marian_state_dict,
    marian_config_from_formers,
    save_marian_directory,
    to_marian_state_dict,
)
from formers.models.transformer import Transformer, TransformerConfig  # noqa: E402

ATOL = RTOL = 1e-5
EOS = 0

# name -> MarianConfig overrides; pad (= decoder start, as in Marian) is the last target id.
CASES = {
    "shared-tied-swish": dict(
        vocab_size=100, share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
        activation_function="swish", scale_embedding=True, encoder_layers=2, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=48,
    ),
    "shared-untied-gelu": dict(
        vocab_size=96, share_encoder_decoder_embeddings=True, tie_word_embeddings=False,
        activation_function="gelu", scale_embedding=False, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=4, encoder_ffn_dim=40, decoder_ffn_dim=72,
    ),
    "separate-tied-relu": dict(
        vocab_size=100, decoder_vocab_size=80, share_encoder_decoder_embeddings=False, tie_word_embeddings=True,
        activation_function="relu", scale_embedding=True, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
    ),
    "separate-untied-silu": dict(
        vocab_size=110, decoder_vocab_size=90, share_encoder_decoder_embeddings=False, tie_word_embeddings=False,
        activation_function="silu", scale_embedding=False, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=8, decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=96,
    ),
}


def _randomize(model: MarianMTModel, seed: int) -> None:
    """Fills every weight (LayerNorms and final_logits_bias included) with seeded random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if "embed_positions" in name:
                continue  # fixed sinusoids
            noise = torch.randn(tensor.shape, generator=g)
            if name.endswith("layer_norm.weight"):
                tensor.copy_(1.0 + 0.2 * noise)
            elif "embed_tokens" in name or "shared" in name or "lm_head" in name:
                tensor.copy_(0.2 * noise)
            elif name == "final_logits_bias":
                tensor.copy_(0.3 * noise)
                tensor[0, EOS] += 2.0  # some greedy translations end before the length limit
            else:
                tensor.copy_(0.4 * noise)


class Case:
    """A saved random Marian model and a padded batch for it."""

    def __init__(self, name: str, directory: Path) -> None:
        overrides = dict(CASES[name])
        tgt_vocab = overrides.get("decoder_vocab_size", overrides["vocab_size"])
        self.pad = tgt_vocab - 1
        config = MarianConfig(
            d_model=32, max_position_embeddings=64, pad_token_id=self.pad, decoder_start_token_id=self.pad,
            eos_token_id=EOS, forced_eos_token_id=None, dropout=0.1, attention_dropout=0.1, activation_dropout=0.1,
            **overrides,
        )
        self.hf = MarianMTModel(config)
        _randomize(self.hf, seed=sorted(CASES).index(name))
        self.hf.save_pretrained(directory)
        self.hf.eval()
        self.directory = directory
        self.name = name

        g = torch.Generator().manual_seed(1)
        src_vocab = overrides["vocab_size"]
        lengths = [7, 5, 3]
        self.src = torch.randint(1, min(src_vocab, tgt_vocab) - 1, (3, 7), generator=g)
        self.src_mask = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
        self.src[torch.arange(3), torch.tensor(lengths) - 1] = EOS  # Marian sources end with eos
        self.src[~self.src_mask] = self.pad
        self.tgt = torch.randint(1, tgt_vocab - 1, (3, 6), generator=g)
        self.tgt[:, 0] = self.pad  # decoder start

    def hf_logits(self) -> torch.Tensor:
        with torch.no_grad():
            return self.hf(
                input_ids=self.src, attention_mask=self.src_mask.long(), decoder_input_ids=self.tgt
            ).logits


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory) -> Case:
    return Case(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def ours(case: Case) -> Transformer:
    return formers.from_pretrained(case.directory)


def test_config_translation(case: Case, ours: Transformer) -> None:
    c, hf = ours.config, case.hf.config
    assert (c.src_vocab_size, c.tgt_vocab_size) == (hf.vocab_size, hf.decoder_vocab_size)
    assert (c.num_encoder_layers, c.num_decoder_layers) == (hf.encoder_layers, hf.decoder_layers)
    assert (c.num_heads, c.decoder_num_heads) == (hf.encoder_attention_heads, hf.decoder_attention_heads)
    assert (c.ffn_dim, c.decoder_ffn_dim) == (hf.encoder_ffn_dim, hf.decoder_ffn_dim)
    assert (c.pad_id, c.bos_id, c.eos_id) == (case.pad, case.pad, EOS)
    assert c.tie_output == hf.tie_word_embeddings
    # transformers 5 unties everything without tie_word_embeddings: random shared-untied weights differ.
    assert c.share_embeddings == (hf.share_encoder_decoder_embeddings and hf.tie_word_embeddings)
    assert not ours.training


def test_logits_match(case: Case, ours: Transformer) -> None:
    expected = case.hf_logits()
    with torch.no_grad():
        got = ours(case.src, case.tgt, src_padding_mask=case.src_mask).logits
        derived = ours(case.src, case.tgt).logits  # mask derived from pad_id
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(derived, expected, atol=ATOL, rtol=RTOL)


def test_cached_decoding_matches_full_recomputation(case: Case, ours: Transformer) -> None:
    with torch.no_grad():
        full = ours(case.src, case.tgt, src_padding_mask=case.src_mask).logits
        memory, mask = ours.encode(case.src, case.src_mask)
        state = ours.init_state(memory, mask, max_len=case.tgt.shape[1])
        steps = [ours.decode(case.tgt[:, t : t + 1], None, None, state=state) for t in range(case.tgt.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=RTOL)


def test_greedy_translations_match(case: Case, ours: Transformer) -> None:
    decoding = pytest.importorskip("formers.generation.seq2seq")
    max_new = 12
    # As formers' greedy search: never emit pad (= the decoder start), no eos forced at the limit.
    generation = GenerationConfig(
        num_beams=1, do_sample=False, max_new_tokens=max_new, min_new_tokens=0,
        decoder_start_token_id=case.pad, eos_token_id=EOS, pad_token_id=case.pad, bos_token_id=None,
        forced_bos_token_id=None, forced_eos_token_id=None, bad_words_ids=[[case.pad]],
        repetition_penalty=None, no_repeat_ngram_size=None,
    )
    with torch.no_grad():
        out = case.hf.generate(
            input_ids=case.src, attention_mask=case.src_mask.long(), generation_config=generation
        ).tolist()
    expected = []
    for row in out:
        assert row[0] == case.pad
        row = row[1:]
        expected.append(row[: row.index(EOS)] if EOS in row else row)
    got = decoding.greedy_search(ours, case.src, case.src_mask, max_new_tokens=max_new)
    assert got == expected


def test_state_dict_round_trip(case: Case, ours: Transformer) -> None:
    hf_state = load_file(str(case.directory / "model.safetensors"))
    converted = convert_marian_state_dict(hf_state)
    reference = ours.state_dict()
    assert set(converted) == set(reference)
    for k, v in reference.items():
        assert torch.equal(converted[k], v), k
    back = to_marian_state_dict(converted, ours.config)
    if not ours.config.share_embeddings:
        hf_state.pop(SHARED, None)  # transformers 5 leaves model.shared unused when nothing is tied
    assert set(back) == set(hf_state)
    for k, v in hf_state.items():
        assert torch.equal(back[k], v), k


def test_save_marian_directory_loads_in_transformers(case: Case, ours: Transformer, tmp_path: Path) -> None:
    save_marian_directory(ours, tmp_path / "marian")
    hf, info = MarianMTModel.from_pretrained(tmp_path / "marian", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    hf.eval()
    with torch.no_grad():
        expected = hf(input_ids=case.src, attention_mask=case.src_mask.long(), decoder_input_ids=case.tgt).logits
    torch.testing.assert_close(expected, case.hf_logits(), atol=ATOL, rtol=RTOL)
    again = formers.from_pretrained(tmp_path / "marian")
    assert again.config == ours.config
    for k, v in ours.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


@pytest.mark.parametrize("share,tie,bias", [(True, False, False), (False, True, True), (True, True, False)])
def test_formers_model_round_trips_through_marian(tmp_path: Path, share: bool, tie: bool, bias: bool) -> None:
    config = TransformerConfig(
        src_vocab_size=60, tgt_vocab_size=60 if share else 50, embed_dim=16, num_encoder_layers=1,
        num_decoder_layers=2, num_heads=2, decoder_num_heads=4, ffn_dim=24, decoder_ffn_dim=40,
        activation="gelu_tanh", max_seq_len=32, sinusoidal_layout="concatenated", scale_embedding=True,
        share_embeddings=share, tie_output=tie, output_bias=bias, pad_id=49, bos_id=49, eos_id=0,
    )
    model = Transformer(config).eval()
    if bias:
        torch.nn.init.normal_(model.decoder.output.bias)
    save_marian_directory(model, tmp_path / "m")
    hf = MarianMTModel.from_pretrained(tmp_path / "m").eval()
    src = torch.randint(1, 49, (2, 5))
    tgt = torch.cat([torch.full((2, 1), 49), torch.randint(1, 49, (2, 3))], dim=1)
    with torch.no_grad():
        expected = hf(input_ids=src, decoder_input_ids=tgt).logits
        got = model(src, tgt).logits
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
    again = formers.from_pretrained(tmp_path / "m")
    assert again.config.share_embeddings == share and again.config.tie_output == tie
    with torch.no_grad():
        torch.testing.assert_close(again(src, tgt).logits, got, atol=0, rtol=0)
    assert json.loads((tmp_path / "m" / "generation_config.json").read_text())["bad_words_ids"] == [[49]]


def test_bare_marian_model_keys_and_position_tables(case: Case) -> None:
    """Keys without the ``model.`` prefix and saved sinusoid tables (older checkpoints) load too."""
    state = {k: v for k, v in case.hf.state_dict().items()}  # includes embed_positions and every alias
    bare = {k.removeprefix("model."): v for k, v in state.items()}
    a, b = convert_marian_state_dict(state), convert_marian_state_dict(bare)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    broken = dict(state)
    broken["model.encoder.embed_positions.weight"] = torch.randn_like(broken["model.encoder.embed_positions.weight"])
    with pytest.raises(ValueError, match="sinusoidal"):
        convert_marian_state_dict(broken)
    with pytest.raises(KeyError, match="match no rule"):
        convert_marian_state_dict({**state, "model.encoder.layer_norm.weight": torch.ones(32)})


@pytest.mark.parametrize(
    "override,message",
    [
        ({"normalize_before": True}, "normalize_before"),
        ({"layernorm_embedding": True}, "layernorm_embedding"),
        ({"activation_function": "tanh"}, "activation_function"),
        ({"decoder_vocab_size": 50}, "decoder_vocab_size"),
    ],
)
def test_unsupported_marian_options_raise(override: dict, message: str) -> None:
    hf_config = MarianConfig(vocab_size=60, d_model=16, pad_token_id=59, decoder_start_token_id=59).to_dict()
    hf_config.update(override)
    with pytest.raises(ValueError, match=message):
        config_from_marian(hf_config)


def test_unsupported_formers_options_raise() -> None:
    with pytest.raises(ValueError, match="norm_first"):
        marian_config_from_formers(TransformerConfig(norm_first=True, sinusoidal_layout="concatenated"))
    with pytest.raises(ValueError, match="sinusoidal_layout"):
        marian_config_from_formers(TransformerConfig())
