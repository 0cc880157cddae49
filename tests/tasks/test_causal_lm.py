from __future__ import annotations

import math

import pytest
import torch

import formers
from formers.data.lm import LMWindowLoader, lm_eval_batches
from formers.data.tokenizers.char import CharTokenizer
from formers.tasks.causal_lm import CausalLMTask

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
) * 40


def tiny_gpt(vocab: int, **extra):
    return formers.create_model("gpt_mini", vocab_size=vocab, max_seq_len=32, embed_dim=48, num_heads=4,
                                num_layers=2, dropout=0.0, eos_id=None, **extra)


def test_training_step_loss_is_next_token_cross_entropy():
    model = tiny_gpt(20).eval()
    ids = torch.randint(0, 20, (2, 9))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
    out = CausalLMTask().training_step(model, batch)
    logp = model(ids[:, :-1]).logits.log_softmax(-1)
    ref = -logp.gather(-1, ids[:, 1:, None]).mean()
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert out.num_tokens == 16


def test_training_step_loss_and_gradients_equal_those_of_the_full_logits():
    torch.manual_seed(0)
    model = tiny_gpt(50, vocab_multiple=16).train()  # 50 tokens in 64 rows: the alignment rows take no part
    ids = torch.randint(0, 50, (3, 17))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
    params = list(model.parameters())
    torch.manual_seed(1)  # the same attention dropout in both runs
    loss = CausalLMTask().training_step(model, batch).loss  # the chunked loss, no logits
    grads = torch.autograd.grad(loss, params)
    torch.manual_seed(1)
    logits = model(batch["input_ids"]).logits  # what the task computed before the chunked loss
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten())
    expected_grads = torch.autograd.grad(expected, params)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    for (name, _), grad, want in zip(model.named_parameters(), grads, expected_grads):
        torch.testing.assert_close(grad, want, rtol=1e-6, atol=1e-6, msg=name)


def test_evaluate_is_the_mean_cross_entropy_of_the_logits():
    torch.manual_seed(0)
    model = tiny_gpt(30).eval()
    batches = [{"input_ids": torch.randint(0, 30, (2, 8)), "labels": torch.randint(0, 30, (2, 8))} for _ in range(3)]
    batches[1]["labels"][0, :5] = -100  # positions without a loss are left out of the mean
    logits = torch.cat([model(b["input_ids"]).logits.flatten(0, 1) for b in batches])
    labels = torch.cat([b["labels"].flatten() for b in batches])
    expected = torch.nn.functional.cross_entropy(logits, labels).item()
    assert CausalLMTask().evaluate(model, batches)["val_loss"] == pytest.approx(expected, rel=1e-6)


def test_tiny_gpt_learns_text_and_evaluates_held_out_loss(train_plainly):
    tok = CharTokenizer.from_corpus(TEXT)
    ids = torch.tensor(tok.encode(TEXT))
    split = int(len(ids) * 0.9)
    loader = LMWindowLoader(ids[:split].numpy(), 32, 16, seed=0, steps_per_epoch=150)
    eval_set = lm_eval_batches(ids[split:].numpy(), 32, 16)
    torch.manual_seed(0)
    model = tiny_gpt(tok.vocab_size)
    task = CausalLMTask()
    before = task.evaluate(model.eval(), eval_set)["val_loss"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train_plainly(model, task, loader, opt)
    after = task.evaluate(model.eval(), eval_set)
    assert before == pytest.approx(math.log(tok.vocab_size), abs=0.5)
    assert after["val_loss"] < 0.5, (before, after)  # the repeated dialogue is learnt
    assert after["val_ppl"] == pytest.approx(math.exp(after["val_loss"]))
