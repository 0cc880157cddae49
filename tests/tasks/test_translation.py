from __future__ import annotations

import math

import pytest
import torch

import formers
from formers.data.corpora import load_bible_en_es
from formers.data.parallel import ParallelDataset, TranslationLoader
from formers.data.tokenizers.joint_bpe import SubwordTokenizer
from formers.tasks.losses import label_smoothed_nll
from formers.tasks.metrics import corpus_bleu
from formers.tasks.translation import TranslationEvalSet, TranslationTask


def test_label_smoothed_loss_matches_the_formula():
    logits = torch.randn(2, 3, 7)
    target = torch.randint(0, 7, (2, 3))
    mask = torch.tensor([[True, True, False], [True, False, False]])
    loss, nll = label_smoothed_nll(logits, target, mask, 0.1)
    logp = logits.log_softmax(-1)[mask]  # (N, V)
    t = target[mask]
    ref_nll = -logp[torch.arange(len(t)), t].mean()
    ref = 0.9 * ref_nll + 0.1 * (-logp.mean(-1)).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert nll.item() == pytest.approx(ref_nll.item(), rel=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("name", ["transformer_tiny", "lstm_seq2seq_tiny"])
def test_training_step_loss_and_gradients_equal_those_of_the_logits(name, smoothing):
    from formers.data.parallel import collate_translation

    torch.manual_seed(0)
    overrides = {"embed_dim": 32, "hidden_dim" if name.startswith("lstm") else "ffn_dim": 64}
    model = formers.create_model(name, src_vocab_size=90, tgt_vocab_size=90, **overrides).train()  # dropout on
    pairs = [(torch.randint(3, 90, (n,)).tolist(), torch.randint(3, 90, (m,)).tolist()) for n, m in
             ((5, 7), (9, 3), (2, 6))]
    batch = collate_translation(pairs, pad_id=0, bos_id=1, eos_id=2)
    task = TranslationTask(tokenizer=None, label_smoothing=smoothing)
    params = list(model.parameters())
    torch.manual_seed(1)  # the same dropout in both runs
    out = task.training_step(model, batch)  # the chunked loss inside the model: no logits
    grads = torch.autograd.grad(out.loss, params, allow_unused=True)
    torch.manual_seed(1)
    logits = model(batch["src_ids"], batch["tgt_in"], batch["src_padding_mask"], batch["tgt_padding_mask"]).logits
    expected, expected_nll = label_smoothed_nll(logits, batch["tgt_out"], batch["tgt_padding_mask"], smoothing)
    expected_grads = torch.autograd.grad(expected, params, allow_unused=True)
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.metrics["nll"], expected_nll, rtol=1e-6, atol=1e-6)
    for (pname, _), grad, want in zip(model.named_parameters(), grads, expected_grads):
        if want is None:
            assert grad is None or torch.count_nonzero(grad) == 0, pname
        else:
            torch.testing.assert_close(grad, want, rtol=1e-6, atol=1e-6, msg=pname)


def test_corpus_bleu():
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert corpus_bleu(["a b"], ["c d e f g"]) < 1.0
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        corpus_bleu(["a", "b"], ["a"])


@pytest.fixture(scope="module")
def bible():
    train = load_bible_en_es("train")
    valid = load_bible_en_es("valid")
    src, tgt = list(train.src[:3000]), list(train.tgt[:3000])
    tok = SubwordTokenizer.train(src + tgt, 2000)
    return tok, src, tgt, list(valid.src[:40]), list(valid.tgt[:40])


def make_model(tok, **extra):
    return formers.create_model(
        "transformer_tiny", src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, embed_dim=64,
        ffn_dim=256, norm_first=True, final_norm=True, **extra,
    )


def test_tiny_model_overfits_a_fixed_batch(bible):
    tok, src, tgt, _, _ = bible
    torch.manual_seed(0)
    model = make_model(tok, dropout=0.0)
    batch = next(iter(TranslationLoader(ParallelDataset.from_text(src[:8], tgt[:8], tok), 4096, shuffle=False)))
    task = TranslationTask(tok, label_smoothing=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        out = task.training_step(model, batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < 0.05
    assert out.num_tokens == int(batch["tgt_padding_mask"].sum())
    # and greedy decoding now reproduces the memorised translations
    metrics = task.evaluate(model.eval(), TranslationEvalSet([batch], src[:8], tgt[:8]))
    assert metrics["bleu"] > 90.0 and metrics["val_nll"] < 0.05


def test_short_real_data_run_lowers_validation_loss(bible):
    tok, src, tgt, vsrc, vtgt = bible
    torch.manual_seed(0)
    model = make_model(tok, dropout=0.1)
    loader = TranslationLoader(ParallelDataset.from_text(src, tgt, tok, max_len=64), 2048, seed=0)
    eval_set = TranslationEvalSet(list(TranslationLoader(ParallelDataset.from_text(vsrc, vtgt, tok), 2048, shuffle=False)), [], [])
    task = TranslationTask(tok)
    before = task.evaluate(model.eval(), eval_set)["val_nll"]
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.98))
    model.train()
    steps = 0
    while steps < 120:
        for batch in loader:
            loss = task.training_step(model, batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if steps == 120:
                break
    after = task.evaluate(model.eval(), eval_set)["val_nll"]
    assert before > math.log(tok.vocab_size) - 1.0  # starts near uniform
    assert after < before - 2.0, (before, after)  # held-out verses: learnt, not memorised
