"""Translation recipes: the LSTM baseline recipe states the Transformer recipe's data, vocabulary and budget."""

from __future__ import annotations

import re

from formers.recipes.recipe import load_recipe, model_from_section


def build(recipe, vocab_size: int):
    return model_from_section(recipe.model, src_vocab_size=vocab_size, tgt_vocab_size=vocab_size)


def test_lstm_recipe_matches_the_transformer_recipe_and_builds():
    lstm, transformer = load_recipe("multi30k-en-de-lstm"), load_recipe("multi30k-en-de")
    assert lstm.task == transformer.task == "translation"
    # the same data and vocabulary; the batch size each trains best with in the budget; both pad their batches to a
    # few shapes on CUDA (static_batches None), where their steps replay as CUDA graphs (cuda_graphs None)
    own = ("max_tokens",)
    assert {k: v for k, v in lstm.data.items() if k not in own} == {
        k: v for k, v in transformer.data.items() if k not in own}
    assert lstm.data["max_tokens"] == 8192 and transformer.data["max_tokens"] == 16384
    for recipe in (lstm, transformer):
        assert "static_batches" not in recipe.data and recipe.train.cuda_graphs is None
    assert lstm.task_options == transformer.task_options
    same = ("max_steps", "max_minutes", "precision", "eval_every", "keep_last", "best_metric", "seed")
    assert {k: getattr(lstm.train, k) for k in same} == {k: getattr(transformer.train, k) for k in same}
    assert lstm.optim == transformer.optim  # the same optimizer and schedule
    for recipe in (lstm, transformer):  # one GPU each (their figures were measured on an H100 and an H200)
        assert re.fullmatch(r"1x H[12]00", recipe.expected.hardware), recipe.expected.hardware
    vocab = lstm.data["vocab_size"]
    rnn, reference = build(lstm, vocab), build(transformer, vocab)
    assert rnn.family == "rnn" and rnn.config.dropout == 0.3
    rnn_params, transformer_params = (sum(p.numel() for p in m.parameters()) for m in (rnn, reference))
    assert abs(rnn_params / transformer_params - 1) < 0.1, (rnn_params, transformer_params)  # a like-sized model
