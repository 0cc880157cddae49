from __future__ import annotations

import gzip
import itertools

import pytest
import torch

from formers.data.word2vec import EncodedCorpus, Word2VecLoader, prepare_corpus
from formers.inference.word_vectors import WordVectors
from formers.models.word2vec import Word2Vec, Word2VecConfig, output_rows
from formers.tasks.word2vec import Word2VecEvaluation, Word2VecTask
from formers.training.trainer import Trainer, TrainerConfig

TEXT = "\n".join(
    " ".join(f"w{(i * 7 + j * 3) % 23}" for j in range(5 + i % 9)) for i in range(400)
)


@pytest.fixture
def corpus(tmp_path) -> EncodedCorpus:
    (tmp_path / "c.txt").write_text(TEXT, encoding="utf-8")
    prepare_corpus(tmp_path / "c.txt", tmp_path / "prepared", min_count=2)
    return EncodedCorpus(tmp_path / "prepared")


def _setup(corpus: EncodedCorpus, architecture: str = "skipgram", words_per_update: int = 50,
           compile_updates: bool = False, graph_updates: bool | None = None, **config):
    cfg = Word2VecConfig(len(corpus.vocab), 16, architecture, window=3, **config)
    torch.manual_seed(0)
    return Word2Vec(cfg), Word2VecTask(corpus.vocab, cfg, words_per_update=words_per_update,
                                       compile_updates=compile_updates, graph_updates=graph_updates)


@pytest.mark.parametrize("mode", ["eager", "compiled", "grouped"])
@pytest.mark.parametrize("architecture", ["skipgram", "cbow"])
def test_a_step_applies_the_sequential_updates_of_its_chunk(corpus, architecture, mode):
    """Also through torch.compile, whose one graph serves every update size, and as the padded groups that CUDA
    graphs replay (the CUDA default; run eagerly here)."""
    model, task = _setup(corpus, architecture, compile_updates=mode == "compiled", graph_updates=mode == "grouped",
                         hierarchical_softmax=True)
    batch = next(iter(Word2VecLoader(corpus, words_per_batch=600, seed=1, epochs=2)))
    # the reference: draw the chunk's examples, then update centre group by centre group
    ex = task.examples(batch, torch.device("cpu"))
    tables = {n: p.detach().clone() for n, p in model.named_parameters()}
    total, last_centre = 0.0, int(ex["centres"][-1]) + 1
    groups = ex["centres"] // task.words_per_update
    for g in groups.unique().tolist():
        rows = groups == g
        part = {k: v[rows] for k, v in task.model_inputs(ex).items()}
        share = g * task.words_per_update / last_centre  # of the chunk, for the learning rate's decay
        alpha = task.learning_rate(batch["progress"] + share * (batch["progress_end"] - batch["progress"]))
        targets = output_rows(part["targets"], part.get("negatives"), part.get("points"), part.get("codes"),
                              part.get("path_mask"))
        total += model.sgd_step_(tables, alpha, part["inputs"], targets, part.get("input_mask")).sum().item()
    out = task.training_step(model, batch)
    assert out.loss.item() == pytest.approx(total / len(ex["targets"]), rel=1e-5)
    assert out.num_tokens == batch["words"].shape[0] and out.metrics["alpha"] == alpha
    out.loss.backward()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), tables[name], rtol=0, atol=1e-6)


def _two_steps(corpus, device: str, architecture: str = "cbow",
               **options) -> tuple[list[float], dict[str, torch.Tensor], Word2VecTask]:
    model, task = _setup(corpus, architecture, words_per_update=20, negative=3, hierarchical_softmax=True, **options)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    losses = []
    for batch in itertools.islice(Word2VecLoader(corpus, words_per_batch=700, seed=3, epochs=2), 3):
        loss = task.training_step(model, batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses, {n: p.detach().cpu() for n, p in model.named_parameters()}, task


def test_padded_groups_span_chunks_and_groups_as_the_sequential_updates_do(corpus, monkeypatch):
    """Several groups a chunk (the last one padded with empty updates) and captured layouts reused across chunks."""
    import formers.tasks.word2vec as module

    monkeypatch.setattr(module, "UPDATES_PER_GRAPH", 4)
    monkeypatch.setattr(module, "PAD_MULTIPLE", 4)  # several widths over the three chunks
    for architecture in ("cbow", "skipgram"):
        eager_losses, eager, _ = _two_steps(corpus, "cpu", architecture, graph_updates=False)
        losses, grouped, task = _two_steps(corpus, "cpu", architecture, graph_updates=True)
        assert losses == pytest.approx(eager_losses, rel=1e-5)
        for name, p in grouped.items():
            torch.testing.assert_close(p, eager[name], rtol=0, atol=1e-6)
    layouts = task._grouped.groups.values()  # skip-gram's widths vary: each updates the one copy of the tables
    assert len(layouts) >= 2 and all(group.tables is task._grouped.tables for group in layouts)
    with pytest.raises(ValueError, match="compile_updates and graph_updates .* choose one"):
        _setup(corpus, compile_updates=True, graph_updates=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_updates_equal_the_eager_updates_on_cuda(corpus):
    eager_losses, eager, _ = _two_steps(corpus, "cuda", graph_updates=False)
    losses, graphed, task = _two_steps(corpus, "cuda")  # the CUDA default: captured groups
    assert all(group.graph is not None for group in task._grouped.groups.values())
    assert losses == pytest.approx(eager_losses, rel=1e-4)
    for name, p in graphed.items():  # index_add_ on CUDA sums in no fixed order
        torch.testing.assert_close(p, eager[name], rtol=1e-4, atol=1e-5)


def test_a_failing_compiler_falls_back_to_the_eager_updates_with_a_warning(corpus, monkeypatch):
    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no C++ compiler")
        return call

    batch = next(iter(Word2VecLoader(corpus, words_per_batch=600, seed=1, epochs=2)))
    model, task = _setup(corpus, compile_updates=False)
    expected = task.training_step(model, batch).loss
    monkeypatch.setattr(torch, "compile", broken)
    model, task = _setup(corpus, compile_updates=True)
    with pytest.warns(UserWarning, match="compiling the word2vec updates failed .*no C\\+\\+ compiler.*eagerly"):
        loss = task.training_step(model, batch).loss
    assert loss.item() == expected.item()


def test_examples_are_a_function_of_the_chunk_seed(corpus):
    _, task = _setup(corpus)
    batch = next(iter(Word2VecLoader(corpus, words_per_batch=300, seed=1)))
    a, b = task.examples(batch, torch.device("cpu")), task.examples(batch, torch.device("cpu"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = task.examples({**batch, "seed": batch["seed"] + 1}, torch.device("cpu"))
    assert not torch.equal(a["negatives"][:50], other["negatives"][:50])


def test_learning_rate_decays_linearly_to_min_alpha(corpus):
    _, task = _setup(corpus)
    assert task.learning_rate(0.0) == 0.025
    assert task.learning_rate(0.5) == pytest.approx((0.025 + 0.0001) / 2)
    assert task.learning_rate(1.0) == pytest.approx(0.0001)
    with pytest.raises(ValueError, match="need 0 <= min_alpha <= alpha"):
        Word2VecTask(corpus.vocab, _setup(corpus)[0].config, alpha=0.01, min_alpha=0.1)
    with pytest.raises(ValueError, match="vocab has 23 words but config.vocab_size is 5"):
        Word2VecTask(corpus.vocab, Word2VecConfig(vocab_size=5))


def _fit(corpus, run_dir, epochs: int, resume: bool = False) -> Word2Vec:
    model, task = _setup(corpus, "cbow")
    loader = Word2VecLoader(corpus, words_per_batch=500, seed=4, epochs=2)
    config = TrainerConfig(max_steps=None, max_epochs=epochs, max_grad_norm=0.0, save_every=3, device="cpu",
                           progress_bar=False, tensorboard=False, log_every=2, seed=4)
    trainer = Trainer(model, task, loader, config, run_dir, optimizer=torch.optim.SGD(model.parameters(), lr=1.0))
    trainer.fit(resume=resume)
    return model


def test_the_trainer_trains_word2vec_and_resumes_exactly(corpus, tmp_path):
    whole = _fit(corpus, tmp_path / "whole", epochs=2)
    _fit(corpus, tmp_path / "split", epochs=1)
    resumed = _fit(corpus, tmp_path / "split", epochs=2, resume=True)
    assert torch.equal(whole.input_vectors, resumed.input_vectors)
    fresh = _setup(corpus, "cbow")[0]
    assert not torch.equal(whole.input_vectors, fresh.input_vectors)
    header = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()[0]
    assert "train_alpha" in header and "train_examples" in header


def _corpus_slice(shared_data, folder, words: int):
    """The first ``words`` words of the shared corpus (Jane Austen's novels), one line per paragraph."""
    source = shared_data / "word2vec" / "corpus.txt.gz"
    if not source.is_file():
        pytest.skip(f"{source} is absent: see /work/shared/data/word2vec/README.md (build_corpus.py rebuilds it)")
    lines, count = [], 0
    with gzip.open(source, "rt", encoding="utf-8") as fh:
        for line in itertools.takewhile(lambda _: count < words, fh):
            lines.append(line)
            count += len(line.split())
    folder.mkdir()
    (folder / "slice.txt").write_text("".join(lines), encoding="utf-8")
    prepare_corpus(folder / "slice.txt", folder / "prepared", tokenizer="lowercase_letters")
    return EncodedCorpus(folder / "prepared")


# A held-out similarity set for Austen's novels: each word's partner, never used in training.
RELATED = [("he", "she"), ("his", "her"), ("mother", "father"), ("sister", "brother"), ("mr", "mrs"),
           ("morning", "evening"), ("man", "woman"), ("daughter", "son"), ("week", "month"), ("young", "old")]


def _train(corpus: EncodedCorpus, epochs: int, dim: int = 50, words_per_batch: int = 50_000):
    cfg = Word2VecConfig(len(corpus.vocab), dim, "cbow")
    torch.manual_seed(0)
    model, task = Word2Vec(cfg), Word2VecTask(corpus.vocab, cfg)
    loader = Word2VecLoader(corpus, words_per_batch=words_per_batch, seed=0, epochs=epochs)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:
            task.training_step(model, batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return model, task


def _partners_found(model: Word2Vec, corpus: EncodedCorpus) -> int:
    vectors = WordVectors(corpus.vocab.words, model.input_vectors)
    return sum(b in dict(vectors.most_similar(a, topn=10)) for a, b in RELATED)


def test_neighbours_of_frequent_words_become_meaningful_on_real_text(shared_data, tmp_path):
    corpus = _corpus_slice(shared_data, tmp_path / "austen", words=250_000)
    untrained = Word2Vec(Word2VecConfig(len(corpus.vocab), 50, "cbow"))
    assert _partners_found(untrained, corpus) <= 1
    model, _ = _train(corpus, epochs=5)
    assert _partners_found(model, corpus) >= 5  # 7 of 10 partners are among the 10 nearest words (seed 0)


@pytest.mark.slow
def test_a_full_epoch_on_the_shared_corpus_correlates_with_wordsim(shared_data, tmp_path):
    corpus = _corpus_slice(shared_data, tmp_path / "all", words=10**9)
    model, task = _train(corpus, epochs=1, dim=100, words_per_batch=100_000)
    eval_dir = shared_data / "word2vec" / "eval"
    scores = task.evaluate(model, Word2VecEvaluation(eval_dir / "questions-words.txt", eval_dir / "wordsim353.tsv", 30_000))
    assert scores["pairs_spearman"] > 0.12 and scores["analogy_accuracy"] > 0.008, scores  # gensim, 1 epoch: 0.16, 0.019
