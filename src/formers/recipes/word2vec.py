"""word2vec recipes: the ``data`` and ``task_options`` sections, the run's setup and its end-of-run report.

The corpus is encoded once into ``<run_dir>/data`` (vocabulary, memory-mapped word ids; two streaming passes, so it
may be larger than memory) and reused when the run resumes. The Trainer steps through chunks of
``words_per_batch`` words; the task applies word2vec's learning rate itself, so the recipe's optimizer is SGD with
learning rate 1, a constant schedule and no clipping (``setup`` checks). The end-of-run report scores the final
vectors on analogies and word-pair similarity and writes them as ``vectors.bin`` (the C tool's binary format, for
gensim and ``formers similar``), ``vectors.txt`` (its text format) and ``vectors/`` (safetensors + ``vocab.txt``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from formers.config import from_dict, to_dict
from formers.data.downloads import resolve_data_dir
from formers.data.word2vec import (
    META_FILE,
    VOCAB_FILE,
    CorpusMeta,
    EncodedCorpus,
    Word2VecLoader,
    prepare_corpus,
)
from formers.inference.word_vectors import UnknownWordError, WordVectors
from formers.recipes.recipe import Recipe, RunSetup, model_from_section, model_section
from formers.tasks.word2vec import Word2VecEvaluation, Word2VecTask

SHARED_CORPUS = "word2vec"
SHARED_FILES = ["corpus.txt.gz", "eval/questions-words.txt", "eval/wordsim353.tsv"]


@dataclass
class Word2VecData:
    """The ``data`` section of a word2vec recipe.

    Give ``corpus: word2vec`` (the shared English corpus: ``data_dir``, ``$FORMERS_DATA_DIR/word2vec`` or
    ``../shared/data/word2vec``, whose ``eval/`` files then default for ``analogies`` and ``pairs``), ``text`` (a UTF-8
    file, ``.gz`` allowed, one sentence per line) or ``prepared`` (a folder written by ``prepare_corpus``).
    """
    corpus: str | None = None
    text: str | None = None
    prepared: str | None = None
    data_dir: str | None = None
    tokenizer: str = "whitespace"  # or "lowercase_letters" (the shared corpus's gensim baseline)
    min_count: int = 5
    max_vocab_size: int | None = None
    words_per_batch: int = 1_000_000  # words per Trainer step (one chunk drawn on the device at once)


@dataclass
class Word2VecOptions:
    """The ``task_options`` section: learning rate, update granularity, evaluation and report."""
    alpha: float = 0.025
    min_alpha: float = 0.0001
    words_per_update: int = 250  # centre words per sequential update (see Word2VecTask); GPU recipes: 1000
    graph_updates: bool | None = None  # padded groups of updates replayed as CUDA graphs (None: on CUDA)
    analogies: str | None = None  # questions-words.txt style file (default: the shared one with corpus: word2vec)
    pairs: str | None = None  # WordSim-353 style file (default: the shared one with corpus: word2vec)
    restrict_vocab: int = 30_000  # analogies and pairs use the most frequent words only (gensim's restrict_vocab)
    report_words: tuple[str, ...] = ("king", "woman", "france", "good", "day")
    report_topn: int = 8


RESUMABLE = ("task_options.report_words", "task_options.report_topn")
"""Keys of this task's sections that may change when a run resumes (they only shape the final report)."""


def sections(recipe: Recipe) -> dict[str, dict]:
    """The recipe's ``data``, ``task_options`` and ``model`` sections checked (nothing read or built) and with their
    defaults filled in; also the optimisation settings the task needs."""
    data = from_dict(Word2VecData, recipe.data, prefix="data.")
    given = [k for k in ("corpus", "text", "prepared") if getattr(data, k)]
    if len(given) != 1:
        raise ValueError(f"data needs exactly one of corpus, text or prepared; got {given or 'none'}")
    options = from_dict(Word2VecOptions, recipe.task_options, prefix="task_options.")
    _check_optimization(recipe)
    return {"data": to_dict(data), "task_options": to_dict(options), "model": model_section(recipe.model)}


def _check_optimization(recipe: Recipe) -> None:
    """The task hands the Trainer its whole update as the gradient: only plain SGD with lr 1 applies it unchanged."""
    optim, train = recipe.optim, recipe.train
    wanted = {"optim.name": (optim.name, "sgd"), "optim.lr": (optim.lr, 1.0), "optim.schedule": (optim.schedule, "constant"),
              "optim.warmup_steps": (optim.warmup_steps, 0), "optim.weight_decay": (optim.weight_decay, 0.0),
              "train.max_grad_norm": (train.max_grad_norm, 0.0), "train.grad_accum_steps": (train.grad_accum_steps, 1),
              "train.precision": (train.precision, "fp32")}
    for key, (got, expected) in wanted.items():
        if got != expected:
            raise ValueError(
                f"word2vec recipes need {key}={expected!r} (the task applies alpha itself and hands the Trainer its "
                f"update as the gradient), got {got!r}; set the learning rate with task_options.alpha / min_alpha"
            )
    if train.max_epochs is None:
        raise ValueError("word2vec recipes need train.max_epochs (the learning rate decays over the epochs), got None")


def _sources(data: Word2VecData) -> tuple[str, Path | None]:
    """The text to prepare, and the shared corpus folder when ``corpus: word2vec`` is used."""
    given = [k for k in ("corpus", "text", "prepared") if getattr(data, k)]
    if len(given) != 1:
        raise ValueError(f"data needs exactly one of corpus, text or prepared; got {given or 'none'}")
    if data.corpus is not None:
        if data.corpus != SHARED_CORPUS:
            raise ValueError(f"data.corpus must be {SHARED_CORPUS!r} (or use data.text), got {data.corpus!r}")
        folder = resolve_data_dir(SHARED_CORPUS, SHARED_FILES, data.data_dir)
        if folder is None:
            raise FileNotFoundError(
                f"the shared word2vec corpus ({', '.join(SHARED_FILES)}) is in neither $FORMERS_DATA_DIR/word2vec nor "
                "../shared/data/word2vec; set data.data_dir, or give data.text"
            )
        return str(folder / "corpus.txt.gz"), folder
    return str(data.text), None


def prepared_corpus(data: Word2VecData, run_dir: Path) -> tuple[EncodedCorpus, Path | None]:
    """The encoded corpus (prepared into ``run_dir/data`` on first use) and the shared corpus folder, if used."""
    if data.prepared:
        return EncodedCorpus(data.prepared), None
    text, shared = _sources(data)
    folder = run_dir / "data"
    settings = {"sources": [text], "tokenizer": data.tokenizer, "min_count": data.min_count,
                "max_vocab_size": data.max_vocab_size}
    if (folder / META_FILE).is_file():
        meta = CorpusMeta(**json.loads((folder / META_FILE).read_text(encoding="utf-8")))
        if {k: v for k, v in asdict(meta).items() if k in settings} != settings:
            raise ValueError(f"{folder} was prepared with other data settings ({asdict(meta)}); use a new run_dir")
    else:
        start = time.perf_counter()
        meta = prepare_corpus(text, folder, data.tokenizer, data.min_count, data.max_vocab_size)
        print(f"data: {text} -> {meta.total_words:,} words, vocabulary {meta.vocab_size:,} (min_count "
              f"{data.min_count}), {meta.kept_words:,} kept in {meta.num_sentences:,} sentences "
              f"({time.perf_counter() - start:.0f}s)")
    return EncodedCorpus(folder), shared


def setup(recipe: Recipe, run_dir: Path, resume: bool) -> RunSetup:
    """Builds corpus, model, task, loader and the final report of a word2vec recipe (see ``recipes.run``)."""
    del resume  # the prepared corpus is reused either way; the Trainer restores the position
    _check_optimization(recipe)
    data = from_dict(Word2VecData, recipe.data, prefix="data.")
    options = from_dict(Word2VecOptions, recipe.task_options, prefix="task_options.")
    corpus, shared = prepared_corpus(data, run_dir)
    model = model_from_section(recipe.model, vocab_size=len(corpus.vocab))
    task = Word2VecTask(corpus.vocab, model.config, options.alpha, options.min_alpha, options.words_per_update,
                        graph_updates=options.graph_updates)
    loader = Word2VecLoader(corpus, data.words_per_batch, recipe.train.seed, epochs=recipe.train.max_epochs)
    analogies = options.analogies or (str(shared / "eval" / "questions-words.txt") if shared else None)
    pairs = options.pairs or (str(shared / "eval" / "wordsim353.tsv") if shared else None)
    for name, path in (("analogies", analogies), ("pairs", pairs)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"task_options.{name}={path!r} does not exist")
    evaluation = Word2VecEvaluation(analogies, pairs, options.restrict_vocab) if analogies or pairs else None
    cfg = model.config
    print(f"model: {recipe.model.get('name')} ({cfg.architecture}, {cfg.embed_dim}-d, window {cfg.window}, negative "
          f"{cfg.negative}, hs {cfg.hierarchical_softmax}); {len(loader)} chunks of <= {data.words_per_batch:,} words "
          f"per epoch, {recipe.train.max_epochs} epochs, alpha {options.alpha} -> {options.min_alpha}")

    def finalize(trainer: Any) -> dict[str, Any]:
        return final_report(trainer, task, evaluation, options, run_dir)

    return RunSetup(model, task, loader, evaluation, {VOCAB_FILE: corpus.folder / VOCAB_FILE}, finalize)


def final_report(
    trainer: Any, task: Word2VecTask, evaluation: Word2VecEvaluation | None, options: Word2VecOptions, run_dir: Path
) -> dict[str, Any]:
    """Scores the final vectors, writes them in the C formats and formers' own, and shows a few neighbours."""
    vectors = WordVectors(task.vocab.words, trainer.model.input_vectors, task.vocab.counts)
    results: dict[str, Any] = {}
    if evaluation is not None:
        results = {k: round(v, 4) for k, v in task.evaluate(trainer.model, evaluation).items()}
        print("final: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    start = time.perf_counter()
    vectors.save(run_dir / "vectors.bin", format="binary")
    vectors.save(run_dir / "vectors.txt", format="text")
    vectors.save(run_dir / "vectors", format="formers")
    print(f"vectors: {run_dir / 'vectors.bin'}, vectors.txt, vectors/ ({len(vectors):,} x {vectors.embed_dim}, "
          f"{time.perf_counter() - start:.0f}s)")
    for word in options.report_words:
        try:
            near = vectors.most_similar(word, topn=options.report_topn)
        except UnknownWordError:
            continue
        print(f"  {word}: " + ", ".join(f"{w} {s:.2f}" for w, s in near))
    results["vectors"] = os.fspath(run_dir / "vectors.bin")
    return results
