"""Translation recipes: the LSTM baseline recipe states the Transformer recipe's data, vocabulary and budget."""

from __future__ import annotations

import re

from formers.recipes.recipe import load_recipe, model_from_section


def build(recipe, vocab_size: int):
    return model_from_section(recipe.model, src_vocab_size=vocab_size, tgt_vocab_size=vocab_size)


def test_lstm_recipe_matches_the_transformer_recipe_and_builds():
    lstm, transformer = load_recipe("multi30k-en-de-lstm"), load_recipe("multi30k-en-de")
    assert lstm.task == transformer.task == "translation"
    # the same data and vocabulary; the batches each trains best with in the budget (the Transformer's replay as
    # CUDA graphs, the LSTM's cannot)
    own = ("max_tokens", "static_batches")
    assert {k: v for k, v in lstm.data.items() if k not in own} == {
        k: v for k, v in transformer.data.items() if k not in own}
    assert (lstm.data["max_tokens"], lstm.data["static_batches"]) == (8192, False)
    assert transformer.data["max_tokens"] == 16384 and "static_batches" not in transformer.data  # None: on CUDA
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
