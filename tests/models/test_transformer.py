from __future__ import annotations

import pytest
import torch

import formers
from formers.models.transformer import TransformerConfig

TINY = dict(
    embed_dim=16, num_heads=2, ffn_dim=32, num_encoder_layers=2, num_decoder_layers=2,
    src_vocab_size=40, tgt_vocab_size=40, max_seq_len=32,
)


def make(name: str = "transformer_tiny", **extra) -> torch.nn.Module:
    return formers.create_model(name, **{**TINY, **extra})


def batch(b=3, s=7, t=5, vocab=37):
    src = torch.randint(3, vocab, (b, s))
    tgt = torch.randint(3, vocab, (b, t))
    src_mask = torch.ones(b, s, dtype=torch.bool)
    src_mask[1, 4:] = False
    src[1, 4:] = 0
    tgt[:, 0] = 1
    return src, tgt, src_mask


def test_paper_variants_match_table_3():
    from formers.registry import create_config

    base, big = create_config("transformer_base"), create_config("transformer_big")
    assert (base.num_encoder_layers, base.num_decoder_layers, base.embed_dim, base.ffn_dim, base.num_heads, base.dropout) == (6, 6, 512, 2048, 8, 0.1)
    assert (big.num_encoder_layers, big.embed_dim, big.ffn_dim, big.num_heads, big.dropout) == (6, 1024, 4096, 16, 0.3)
    n = sum(p.numel() for p in formers.create_model("transformer_base", src_vocab_size=37000, tgt_vocab_size=37000).parameters())
    assert 60e6 < n < 66e6  # the paper's 65M with a 37k joint vocabulary


def test_shared_embeddings_are_one_matrix():
    model = make()
    assert model.encoder.embed is model.decoder.embed
    assert model.decoder.output.weight is model.encoder.embed.weight
    untied = make(share_embeddings=False, tie_output=False)
    assert untied.decoder.output.weight is not untied.decoder.embed.weight


def test_missing_src_mask_is_derived_from_pad_id():
    model = make().eval()
    src, tgt, src_mask = batch()
    torch.testing.assert_close(model(src, tgt).logits, model(src, tgt, src_mask).logits)


def test_bad_inputs_raise_clear_errors():
    model = make().eval()
    src, tgt, src_mask = batch()
    with pytest.raises(ValueError, match="src_ids holds token id 40"):
        model(torch.tensor([[5, 40]]), tgt[:1])
    with pytest.raises(ValueError, match="tgt_ids holds token id 99"):
        model(src, torch.full_like(tgt, 99))
    with pytest.raises(ValueError, match="src_ids has length 33, beyond max_seq_len=32"):
        model(torch.randint(3, 40, (1, 33)), tgt[:1])
    with pytest.raises(ValueError, match="src_ids is empty"):
        model(torch.zeros(1, 0, dtype=torch.long), tgt[:1])
    with pytest.raises(ValueError, match="only of pad_id"):
        model(torch.zeros(1, 3, dtype=torch.long), tgt[:1])
    with pytest.raises(ValueError, match="hides every token"):
        model(src, tgt, torch.zeros_like(src_mask))
    with pytest.raises(TypeError, match="boolean"):
        model(src, tgt, src_mask.long())
    with pytest.raises(ValueError, match="shape"):
        model(src, tgt, src_mask[:, :3])
    with pytest.raises(ValueError, match="same batch size"):
        model(src, tgt[:2])
    with pytest.raises(ValueError, match="must have shape \\(batch, seq_len\\)"):
        model(src[0], tgt)


def test_create_model_rejects_unknown_overrides_and_names():
    with pytest.raises(TypeError, match=r"unknown config key\(s\) num_layer .*valid keys: .*num_decoder_layers"):
        formers.create_model("transformer_tiny", num_layer=3)
    with pytest.raises(ValueError, match="unknown model name 'transformer_tinyy'.*transformer_tiny"):
        formers.create_model("transformer_tinyy")
    with pytest.raises(ValueError, match="share_embeddings=True needs"):
        TransformerConfig(src_vocab_size=10, tgt_vocab_size=11)
    with pytest.raises(ValueError, match="pad_id=55 is outside the source vocabulary"):
        TransformerConfig(src_vocab_size=50, tgt_vocab_size=60, share_embeddings=False, pad_id=55)
    assert formers.list_models("transformer_b*") == ["transformer_base", "transformer_big"]


@pytest.mark.parametrize("name", ["transformer_tiny", "lstm_seq2seq_tiny"])
def test_targets_give_the_loss_with_or_without_logits(name):
    torch.manual_seed(0)
    model = formers.create_model(name, src_vocab_size=40, tgt_vocab_size=40, embed_dim=16).eval()
    src, tgt = torch.randint(3, 40, (2, 5)), torch.randint(3, 40, (2, 4))
    targets = torch.randint(3, 40, (2, 4))
    targets[1, 2:] = -100
    chunked = model(src, tgt, targets=targets, label_smoothing=0.1)
    full = model(src, tgt, targets=targets, label_smoothing=0.1, return_logits=True)
    assert chunked.logits is None and full.logits.shape == (2, 4, 40)
    expected = torch.nn.functional.cross_entropy(full.logits.flatten(0, 1), targets.flatten(), label_smoothing=0.1)
    torch.testing.assert_close(chunked.loss, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(full.loss, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked.nll, full.nll, rtol=1e-6, atol=1e-6)
    plain = model(src, tgt)
    assert plain.loss is None and plain.nll is None
    torch.testing.assert_close(plain.logits, full.logits)
    with pytest.raises(ValueError, match=r"targets must have the shape of the input ids \(2, 4\), got \(2, 3\)"):
        model(src, tgt, targets=targets[:, :3])
    with pytest.raises(ValueError, match="return_logits=False needs targets"):
        model(src, tgt, return_logits=False)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.5"):
        model(src, tgt, targets=targets, label_smoothing=1.5)


@pytest.mark.parametrize("static", [False, True])
def test_a_state_with_beams_per_source_decodes_as_copied_memory_does(static):
    """init_state(beams=K): K decoding rows per source read its cross-attention keys once; the logits equal those
    of a state over memory copied K times."""
    torch.manual_seed(0)
    model = make().eval()
    src, tgt, src_mask = batch()
    rows = torch.arange(3).repeat_interleave(2)
    with torch.no_grad():
        memory, mask = model.encode(src, src_mask)
        grouped = model.init_state(memory, mask, max_len=8, static=static, beams=2)
        copied = model.init_state(memory[rows], mask[rows], max_len=8, static=static)
        assert grouped.rows == copied.rows == 6 and grouped.memory_kv[0][0].shape[0] == 3
        for t in range(4):
            step = tgt[rows, t : t + 1]
            torch.testing.assert_close(model.decode(step, None, None, state=grouped),
                                       model.decode(step, None, None, state=copied), atol=1e-5, rtol=1e-5)
    grouped.reorder(torch.tensor([1, 1, 2, 3, 5, 4]), memory=False)  # within sentences
    with pytest.raises(ValueError, match="2 beams per source row reorders within sentences only"):
        grouped.reorder(torch.arange(6))
    with pytest.raises(ValueError, match="beams must be an int >= 1, got 0"):
        model.init_state(memory, mask, beams=0)
