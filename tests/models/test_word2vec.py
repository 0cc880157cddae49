from __future__ import annotations

import numpy as np
import pytest
import torch

from formers import create_model
from formers.data.word2vec import huffman_tree
from formers.hub import from_pretrained, save_pretrained
from formers.models.word2vec import MAX_EXP, Word2Vec, Word2VecConfig, output_rows

VOCAB, DIM, K = 30, 8, 3


def _examples(config: Word2VecConfig, num: int = 40, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ex: dict[str, torch.Tensor] = {"targets": torch.randint(0, VOCAB, (num,), generator=g)}
    if config.architecture == "skipgram":
        ex["inputs"] = torch.randint(0, VOCAB, (num,), generator=g)
    else:
        ex["inputs"] = torch.randint(0, VOCAB, (num, 4), generator=g)
        mask = torch.rand(num, 4, generator=g) < 0.7
        mask[:, 0] = True
        ex["input_mask"] = mask
    if config.negative:
        ex["negatives"] = torch.randint(0, VOCAB, (num, config.negative), generator=g)
        ex["negatives"][0, 0] = ex["targets"][0]  # a negative equal to its target is skipped
    if config.hierarchical_softmax:
        counts = np.sort(np.random.default_rng(seed).integers(1, 100, VOCAB))[::-1]
        tree = huffman_tree(counts)
        t = ex["targets"]
        ex["points"] = torch.from_numpy(tree.points)[t]
        ex["codes"] = torch.from_numpy(tree.codes)[t]
        ex["path_mask"] = torch.arange(tree.max_length)[None, :] < torch.from_numpy(tree.lengths)[t][:, None]
    return ex


def _step(model: Word2Vec, tables: dict[str, torch.Tensor], alpha: float, ex: dict[str, torch.Tensor]) -> torch.Tensor:
    rows = output_rows(ex["targets"], ex.get("negatives"), ex.get("points"), ex.get("codes"), ex.get("path_mask"))
    return model.sgd_step_(tables, alpha, ex["inputs"], rows, ex.get("input_mask"))


def _model(config: Word2VecConfig) -> Word2Vec:
    torch.manual_seed(0)
    model = Word2Vec(config)
    with torch.no_grad():  # non-zero output tables, some dot products beyond MAX_EXP
        for p in model.parameters():
            p.normal_(0, 0.6)
    return model


CONFIGS = [
    Word2VecConfig(VOCAB, DIM, "skipgram", negative=K),
    Word2VecConfig(VOCAB, DIM, "cbow", negative=K),
    Word2VecConfig(VOCAB, DIM, "cbow", negative=K, cbow_mean=False),
    Word2VecConfig(VOCAB, DIM, "skipgram", negative=0, hierarchical_softmax=True),
    Word2VecConfig(VOCAB, DIM, "cbow", negative=K, hierarchical_softmax=True),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.architecture}-neg{c.negative}-hs{int(c.hierarchical_softmax)}-mean{int(c.cbow_mean)}")
def test_closed_form_step_is_minus_alpha_times_the_autograd_gradient(config):
    model, ex = _model(config), _examples(config)
    losses = model(**ex).loss
    assert losses.shape == (40,) and torch.isfinite(losses).all()
    losses.sum().backward()
    tables = {n: p.detach().clone() for n, p in model.named_parameters()}
    step_losses = _step(model, tables, 0.05, ex)
    torch.testing.assert_close(step_losses, losses.detach(), rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(tables[name] - p.detach(), -0.05 * p.grad, rtol=1e-4, atol=1e-6)


def test_updates_match_the_c_tool_formulas_for_one_skipgram_pair():
    config = Word2VecConfig(VOCAB, DIM, "skipgram", negative=2)
    model = _model(config)
    ex = {"inputs": torch.tensor([4]), "targets": torch.tensor([7]), "negatives": torch.tensor([[9, 7]])}
    w, u = model.input_vectors.detach().clone(), model.output_vectors.detach().clone()
    tables = {"input_vectors": w.clone(), "output_vectors": u.clone()}
    _step(model, tables, 0.1, ex)
    # word2vec.c: for each of target (label 1) and negative 9 (label 0); negative 7 == target is skipped
    neu1e = torch.zeros(DIM)
    expected_u = u.clone()
    for target, label in ((7, 1.0), (9, 0.0)):
        f = torch.dot(w[4], u[target])
        g = (label - torch.sigmoid(f)) * 0.1 if abs(f) < MAX_EXP else 0.0
        neu1e += g * u[target]
        expected_u[target] += g * w[4]
    torch.testing.assert_close(tables["output_vectors"], expected_u)
    torch.testing.assert_close(tables["input_vectors"][4], w[4] + neu1e)


def test_cbow_mean_gives_every_context_word_the_whole_error():
    config = Word2VecConfig(VOCAB, DIM, "cbow", negative=1)
    model = _model(config)
    ex = {"inputs": torch.tensor([[1, 2, 3]]), "input_mask": torch.tensor([[True, True, False]]),
          "targets": torch.tensor([5]), "negatives": torch.tensor([[6]])}
    tables = {n: p.detach().clone() for n, p in model.named_parameters()}
    _step(model, tables, 0.1, ex)
    moved = tables["input_vectors"] - model.input_vectors.detach()
    torch.testing.assert_close(moved[1], moved[2])
    assert moved[1].abs().sum() > 0 and moved[3].abs().sum() == 0  # the masked-out word is untouched


def test_saturated_terms_make_no_update():
    config = Word2VecConfig(VOCAB, DIM, "skipgram", negative=1)
    model = Word2Vec(config)
    with torch.no_grad():
        model.input_vectors.zero_()
        model.input_vectors[0, 0] = 10.0
        model.output_vectors.zero_()
        model.output_vectors[1, 0] = 1.0  # dot = 10 >= MAX_EXP
    tables = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = _step(model, tables, 0.5, {"inputs": torch.tensor([0]), "targets": torch.tensor([1]),
                                      "negatives": torch.tensor([[2]])})
    assert torch.equal(tables["output_vectors"][1], model.output_vectors[1].detach())
    assert tables["output_vectors"][2, 0] == pytest.approx(-2.5)  # the negative (dot 0) moves: (0 - 0.5) * 0.5 * 10
    assert loss.item() == pytest.approx(np.log(2), rel=1e-6)  # only the negative's term counts


def test_registered_variants_build_and_round_trip(tmp_path):
    model = create_model("word2vec_cbow_hs", vocab_size=VOCAB, embed_dim=DIM)
    assert model.config.architecture == "cbow" and model.output_vectors is None
    assert model.node_vectors.shape == (VOCAB - 1, DIM)
    assert 1.0 / DIM >= model.input_vectors.abs().max() > 0.5 / DIM  # gensim 4's uniform(-1/D, 1/D)
    save_pretrained(model, tmp_path / "m")
    loaded = from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and torch.equal(loaded.input_vectors, model.input_vectors)
    skipgram = create_model("word2vec_skipgram", vocab_size=VOCAB)
    assert skipgram.config.embed_dim == 100 and skipgram.config.window == 5 and skipgram.config.sample == 1e-3


def test_config_and_input_errors_name_the_argument():
    with pytest.raises(ValueError, match="architecture must be one of"):
        Word2VecConfig(architecture="glove")
    with pytest.raises(ValueError, match="negative=0 needs hierarchical_softmax=True"):
        Word2VecConfig(negative=0)
    with pytest.raises(ValueError, match=r"window must be in \[1, 1024\], got 0"):
        Word2VecConfig(window=0)
    model = Word2Vec(Word2VecConfig(VOCAB, DIM, "skipgram", negative=K))
    with pytest.raises(ValueError, match=r"negatives must have shape \(2, 3\), got \(2, 2\)"):
        model(torch.tensor([1, 2]), torch.tensor([3, 4]), negatives=torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"skipgram inputs must have shape \(2,\)"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 4]), negatives=torch.zeros(2, 3, dtype=torch.long))
    tables = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match=r"rows must cover the output tables \['output_vectors'\]"):
        model.sgd_step_(tables, 0.1, torch.tensor([1]), [])
    cbow = Word2Vec(Word2VecConfig(VOCAB, DIM, "cbow", negative=K))
    with pytest.raises(ValueError, match="CBOW needs input_mask"):
        cbow(torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 4]), negatives=torch.zeros(2, 3, dtype=torch.long))
