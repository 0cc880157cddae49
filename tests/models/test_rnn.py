"""The LSTM encoder-decoder (``formers.models.rnn``): the paper's equations written out, learning, decoding, bad input.

The shared contract (shapes, gradients, save/load, padded rows, cached decoding, determinism) runs in
``test_contract.py`` from the ``rnn`` entry of ``conftest.py``'s ``TINY``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor, nn

import formers
from formers.cli.main import main
from formers.data.corpora import load_bible_en_es
from formers.data.parallel import ParallelDataset, TranslationLoader
from formers.data.tokenizers import SubwordTokenizer
from formers.generation.seq2seq import beam_search, greedy_search
from formers.layers import LuongAttention, padding_to_attn_mask
from formers.models.rnn import RNNConfig, RNNSeq2Seq
from formers.tasks.translation import TranslationEvalSet, TranslationTask

TINY = dict(embed_dim=12, hidden_dim=16, num_encoder_layers=2, num_decoder_layers=2, src_vocab_size=30,
            tgt_vocab_size=30, max_seq_len=64, dropout=0.0)


def tiny_model(**overrides) -> RNNSeq2Seq:
    torch.manual_seed(0)
    model = formers.create_model("lstm_seq2seq_tiny", **{**TINY, **overrides})
    with torch.no_grad():  # off the init, so that gates saturate differently and mistakes show
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def padded_sources() -> tuple[Tensor, Tensor]:
    src = torch.randint(4, 30, (3, 6))
    mask = torch.ones_like(src, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2, 5:] = False
    return src.masked_fill(~mask, 0), mask


# --- the equations, written out -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_attention_is_luong_general_score_and_eq5(backend):
    attn = LuongAttention(query_dim=6, memory_dim=8, out_dim=5, backend=backend)
    h, memory = torch.randn(2, 3, 6), torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    out = attn(h, memory, attn.project_keys(memory), padding_to_attn_mask(mask))
    w_a, w_c = attn.key_proj.weight, attn.out_proj.weight  # (6, 8), (5, 14)
    for b in range(2):
        m = memory[b, mask[b]]  # (S_b, 8): the real source states only
        for t in range(3):
            score = torch.stack([h[b, t] @ w_a @ m[s] for s in range(len(m))])  # eq. 8: h_t^T W_a h̄_s
            a = torch.softmax(score, dim=0)  # eq. 7
            c = (a[:, None] * m).sum(0)
            expected = torch.tanh(w_c @ torch.cat([c, h[b, t]]))  # eq. 5
            torch.testing.assert_close(out[b, t], expected, atol=1e-5, rtol=1e-5)


def lstm_layer(xs: list[Tensor], lstm: nn.LSTM, layer: int, suffix: str, h: Tensor, c: Tensor) -> list[Tensor]:
    """One LSTM direction over ``xs`` by the gate equations (i, f, g, o as in torch.nn.LSTM), in float64."""
    w = {k: getattr(lstm, f"{k}_l{layer}{suffix}").double() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    out = []
    for x in xs:
        i, f, g, o = (w["weight_ih"] @ x + w["bias_ih"] + w["weight_hh"] @ h + w["bias_hh"]).chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        out.append(h)
    return out


def reference_logits(model: RNNSeq2Seq, src: list[int], tgt: list[int]) -> Tensor:
    """Logits (T, V) of one unpadded sentence pair by the paper's equations, one step at a time, in float64."""
    c, enc, dec = model.config, model.encoder, model.decoder
    half = c.hidden_dim // 2
    xs = [enc.embed.weight[i].double() for i in src]
    for layer in range(c.num_encoder_layers):  # bidirectional: forward states, then backward ones, concatenated
        zero = torch.zeros(half, dtype=torch.float64)
        fwd = lstm_layer(xs, enc.lstm, layer, "", zero, zero)
        bwd = lstm_layer(xs[::-1], enc.lstm, layer, "_reverse", zero, zero)[::-1]
        xs = [torch.cat([f, b]) for f, b in zip(fwd, bwd)]
    memory = torch.stack(xs)  # (S, H): h̄_s
    start = torch.tanh(dec.bridge.weight.double() @ memory.mean(0) + dec.bridge.bias.double())  # Nematus' s_0
    hs = list(start.view(c.num_decoder_layers, c.hidden_dim))
    cs = [torch.zeros(c.hidden_dim, dtype=torch.float64) for _ in hs]
    w_a, w_c = dec.attention.key_proj.weight.double(), dec.attention.out_proj.weight.double()
    out = []
    for token in tgt:
        x = dec.embed.weight[token].double()
        for layer in range(c.num_decoder_layers):  # one step of each layer, carrying (h, c) by hand
            w = {k: getattr(dec.lstm, f"{k}_l{layer}").double() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            i, f, g, o = (w["weight_ih"] @ x + w["bias_ih"] + w["weight_hh"] @ hs[layer] + w["bias_hh"]).chunk(4)
            cs[layer] = torch.sigmoid(f) * cs[layer] + torch.sigmoid(i) * torch.tanh(g)
            hs[layer] = x = torch.sigmoid(o) * torch.tanh(cs[layer])
        a = torch.softmax(torch.stack([x @ w_a @ m for m in memory]), dim=0)  # eqs. 7, 8
        context = (a[:, None] * memory).sum(0)
        attentional = torch.tanh(w_c @ torch.cat([context, x]))  # eq. 5
        out.append(dec.output.weight.double() @ attentional)  # eq. 6 (before the softmax)
    return torch.stack(out)


@pytest.mark.parametrize("untied", [False, True])
def test_logits_equal_the_equations_step_by_step(untied):
    flags = dict(share_embeddings=False, tie_output=False, tgt_vocab_size=27) if untied else {}
    model = tiny_model(**flags)
    src, mask = padded_sources()
    tgt = torch.randint(3, model.config.tgt_vocab_size, (3, 5))
    tgt[:, 0] = model.config.bos_id
    logits = model(src, tgt, mask).logits
    for b in range(3):
        expected = reference_logits(model, src[b, mask[b]].tolist(), tgt[b].tolist())
        torch.testing.assert_close(logits[b].double(), expected, atol=1e-5, rtol=1e-5)


# --- learning ----------------------------------------------------------------------------------------------------


def test_tiny_model_overfits_a_fixed_batch():
    train = load_bible_en_es("train")
    pairs = sorted(zip(train.src[:400], train.tgt[:400]), key=lambda p: len(p[0]) + len(p[1]))[:8]  # short: fast
    src, tgt = [p[0] for p in pairs], [p[1] for p in pairs]
    tok = SubwordTokenizer.train(list(train.src[:300]) + list(train.tgt[:300]), 500)
    torch.manual_seed(0)
    model = formers.create_model("lstm_seq2seq_tiny", src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size,
                                 embed_dim=64, hidden_dim=128, dropout=0.0)
    batch = next(iter(TranslationLoader(ParallelDataset.from_text(src, tgt, tok), 4096, shuffle=False)))
    task = TranslationTask(tok, label_smoothing=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        out = task.training_step(model.train(), batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.1 and losses[0] > 5.0
    metrics = task.evaluate(model.eval(), TranslationEvalSet([batch], src, tgt))  # greedy, through the Translator
    assert metrics["bleu"] > 90.0 and metrics["val_nll"] < 0.1


# --- decoding ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Prefix:
    """A decoding "state" that keeps the whole target prefix and recomputes it: the reference for the real state."""

    memory: Tensor
    mask: Tensor
    tokens: Tensor | None = None

    def reorder(self, index: Tensor) -> None:
        self.memory, self.mask = self.memory.index_select(0, index), self.mask.index_select(0, index)
        self.tokens = self.tokens.index_select(0, index)


class Recomputed(nn.Module):
    """Decodes ``model`` by re-running the teacher-forced decoder over the whole prefix at every step."""

    def __init__(self, model: RNNSeq2Seq) -> None:
        super().__init__()
        self.model, self.config = model, model.config

    def encode(self, src_ids: Tensor, src_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.model.encode(src_ids, src_padding_mask)

    def init_state(self, memory: Tensor, src_padding_mask: Tensor, max_len: int | None = None) -> Prefix:
        return Prefix(memory, src_padding_mask)

    def decode(self, tgt_ids: Tensor, memory: None, src_padding_mask: None, state: Prefix) -> Tensor:
        state.tokens = tgt_ids if state.tokens is None else torch.cat([state.tokens, tgt_ids], dim=1)
        return self.model.decode(state.tokens, state.memory, state.mask)[:, -tgt_ids.shape[1] :]


def test_greedy_and_beam_search_equal_full_recomputation():
    model = tiny_model()
    src, mask = padded_sources()
    reference = Recomputed(model)
    greedy = greedy_search(model, src, mask, max_new_tokens=10)
    assert greedy == greedy_search(reference, src, mask, max_new_tokens=10)
    assert any(len(row) for row in greedy)
    for k in (1, 3):
        beams = beam_search(model, src, mask, beam_size=k, max_new_tokens=10)
        assert beams == beam_search(reference, src, mask, beam_size=k, max_new_tokens=10)
    assert beam_search(model, src, mask, beam_size=1, max_new_tokens=10) == greedy
    for i in range(3):  # each sentence decoded alone, unpadded, gives the same hypothesis
        alone = src[i : i + 1, mask[i]]
        assert beam_search(model, alone, beam_size=3, max_new_tokens=10) == [beams[i]]


# --- bad input -----------------------------------------------------------------------------------------------------


def test_bad_input_raises_naming_the_argument():
    model = tiny_model()
    src, mask = padded_sources()
    tgt = torch.full((3, 4), model.config.bos_id)
    left = mask.flip(1)
    with pytest.raises(ValueError, match="src_padding_mask must be right padded.*row 1"):
        model(src, tgt, left)
    tgt_mask = torch.ones_like(tgt, dtype=torch.bool)
    tgt_mask[0, 0] = False
    with pytest.raises(ValueError, match="tgt_padding_mask must be right padded.*row 0"):
        model(src, tgt, mask, tgt_mask)
    with pytest.raises(ValueError, match="tgt_ids holds token id 30, outside the vocabulary range"):
        model(src, torch.full((3, 4), 30), mask)
    with pytest.raises(ValueError, match="same batch size, got 3 and 2"):
        model(src, tgt[:2], mask)
    with pytest.raises(TypeError, match="src_padding_mask must be a boolean tensor"):
        model(src, tgt, mask.long())
    memory, mask = model.encode(src, mask)
    state = model.init_state(memory, mask, max_len=3)
    with pytest.raises(ValueError, match="tgt_ids has length 4, beyond max_seq_len=3"):
        model.decode(tgt, None, None, state=state)
    with pytest.raises(ValueError, match="batch size 2, the decoding state holds 3 rows"):
        model.decode(tgt[:2, :1], None, None, state=state)
    with pytest.raises(ValueError, match="decode needs memory and src_padding_mask"):
        model.decode(tgt, None, None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(hidden_dim=15), "hidden_dim must be even and >= 2.*got 15"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (dict(tgt_vocab_size=20), "share_embeddings=True needs src_vocab_size == tgt_vocab_size, got 30 and 20"),
        (dict(eos_id=30), r"eos_id=30 is outside the target vocabulary \[0, 30\)"),
        (dict(num_decoder_layers=0), r"num_decoder_layers must be in \[1, 1024\], got 0"),
    ],
)
def test_bad_config_raises(overrides, message):
    with pytest.raises(ValueError, match=message):
        RNNConfig(**{**TINY, **overrides})


# --- the command line on a trained run -----------------------------------------------------------------------------

TINY_RUN = [  # the LSTM recipe shrunk to a few CPU steps on the embedded Bible corpus
    "data.corpus=bible-en-es", "data.tgt_lang=es", "data.valid_split=valid", "data.vocab_size=300", "data.max_len=32",
    "data.max_tokens=512", "data.max_train_pairs=200", "data.max_valid_pairs=4", "model.name=lstm_seq2seq_tiny",
    "model.embed_dim=16", "model.hidden_dim=32", "train.max_minutes=null", "train.max_steps=6", "train.save_every=3",
    "train.keep_last=2", "train.eval_every=3", "train.log_every=3", "train.precision=fp32", "train.device=cpu",
    "train.progress_bar=false", "train.tensorboard=false", "task_options.final_beam_size=2",
    "task_options.average_last=2", "task_options.max_bleu_sentences=2", "optim.warmup_steps=2",
]


def test_formers_translate_and_evaluate_a_trained_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    overrides = [arg for item in TINY_RUN for arg in ("--set", item)]
    assert main(["train", "multi30k-en-de-lstm", "--run-dir", str(run_dir), *overrides]) == 0
    capsys.readouterr()
    model = formers.from_pretrained(run_dir)
    assert model.family == "rnn" and model.config.hidden_dim == 32
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_00000006"
    assert (run_dir / "averaged" / "tokenizer.json").is_file()
    assert main(["translate", "--checkpoint", str(run_dir), "--beam", "2", "And God said.", "Amen."]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2, err
    assert main(["evaluate", "--checkpoint", str(run_dir / "averaged"), "--corpus", "bible-en-es", "--split", "test",
                 "--limit", "3", "--beam", "1"]) == 0
    assert "on 3 sentences" in capsys.readouterr().out


@pytest.mark.parametrize("layers", [1, 3])
def test_the_encoder_equals_a_packed_bidirectional_lstm_at_fixed_shapes(layers):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    model = tiny_model(num_encoder_layers=layers).eval()
    enc = model.encoder
    lengths = torch.tensor([9, 3, 7, 1, 5])
    src = torch.randint(3, model.config.src_vocab_size, (5, 9), generator=torch.Generator().manual_seed(0))
    src[torch.arange(9) >= lengths[:, None]] = model.config.pad_id
    with torch.no_grad():
        states = enc(src, lengths)
        x = enc.embed(src, "src_ids")
        packed, _ = enc.lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        expected, _ = pad_packed_sequence(packed, batch_first=True, total_length=9)
    torch.testing.assert_close(states, expected, atol=1e-6, rtol=1e-6)
    assert states[1, 3:].abs().sum() == 0  # zero past each row's end, as the packed run leaves it


@pytest.mark.parametrize("layers", [2, 3])
def test_the_decoder_s_layer_by_layer_training_run_is_nn_lstm_s_stack(layers, monkeypatch):
    # training with dropout between layers runs one call per layer (nn.LSTM's own inter-layer dropout on cuDNN reads
    # a seed on the host, which a CUDA-graphed step cannot hold): with that dropout made the identity, the outputs
    # and final states are nn.LSTM's multi-layer ones
    model = tiny_model(num_decoder_layers=layers, dropout=0.3).train()
    dec = model.decoder
    x = torch.randn(4, 7, model.config.embed_dim, generator=torch.Generator().manual_seed(1))
    hx = tuple(torch.randn(layers, 4, model.config.hidden_dim, generator=torch.Generator().manual_seed(s))
               for s in (2, 3))
    drawn = []

    def identity(t, p, training):
        drawn.append((p, training))
        return t

    monkeypatch.setattr(nn.functional, "dropout", identity)
    with torch.no_grad():
        out, (h_n, c_n) = dec._stack(x, hx)
        dec.lstm.dropout = 0.0
        expected, (h_ref, c_ref) = dec.lstm(x, hx)
    assert drawn == [(0.3, True)] * (layers - 1)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(h_n, h_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(c_n, c_ref, atol=1e-6, rtol=1e-6)


def test_the_decoder_s_dropout_between_layers_acts_in_training_only():
    model = tiny_model(dropout=0.5).train()
    dec = model.decoder
    x = torch.randn(3, 5, model.config.embed_dim, generator=torch.Generator().manual_seed(1))
    hx = (torch.zeros(2, 3, model.config.hidden_dim), torch.zeros(2, 3, model.config.hidden_dim))
    with torch.no_grad():
        torch.manual_seed(0)
        first, _ = dec._stack(x, hx)
        torch.manual_seed(1)
        second, _ = dec._stack(x, hx)
        torch.manual_seed(0)
        again, _ = dec._stack(x, hx)
        dec.eval()
        plain, _ = dec._stack(x, hx)
        reference, _ = dec.lstm(x, hx)
    assert not torch.allclose(first, second)  # the masks follow the generator
    torch.testing.assert_close(again, first, atol=0, rtol=0)
    torch.testing.assert_close(plain, reference, atol=0, rtol=0)
