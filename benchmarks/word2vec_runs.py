"""Training formers' and gensim's word2vec on one corpus with one tokenization and the same settings, for the
speed and quality benchmarks (``word2vec_speed.py``, ``word2vec_quality.py``).

Both read the same sentences: ``formers.data.word2vec.read_sentences`` of the corpus file (gensim gets them as a
list of word lists, so its timing includes no reading or tokenizing; formers' corpus is encoded before its timer
starts). Each trainer's wall time covers training only (gensim: ``train()``, after ``build_vocab``; formers: the
Trainer's ``fit``, after ``prepare_corpus``), and words/s is the corpus's words (out-of-vocabulary ones included)
times the epochs over that time, the same count for both.
"""

from __future__ import annotations

import csv
import os
import platform
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from formers.data.downloads import resolve_data_dir
from formers.data.word2vec import (
    EncodedCorpus,
    Word2VecLoader,
    prepare_corpus,
    read_sentences,
)
from formers.inference.word_vectors import WordVectors
from formers.models.word2vec import Word2Vec, Word2VecConfig
from formers.tasks.word2vec import Word2VecTask
from formers.training.trainer import Trainer, TrainerConfig


@dataclass
class Settings:
    """What both libraries train with (gensim's defaults unless changed)."""

    architecture: str = "cbow"  # or "skipgram"
    embed_dim: int = 100
    window: int = 5
    negative: int = 5
    sample: float = 1e-3
    min_count: int = 5
    epochs: int = 5
    alpha: float = 0.025
    min_alpha: float = 0.0001


FILES = ["corpus.txt.gz", "eval/questions-words.txt", "eval/wordsim353.tsv"]
"""The shared word2vec folder's files (``../shared/data/word2vec``)."""


def load_setup(args: Any) -> tuple[Path, list[list[str]], int]:
    """Applies ``--threads``, finds the corpus folder and reads its sentences (``--max-words``); fills in
    ``args.words_per_update`` and returns ``(folder, sentences, words_per_batch)`` with the device's defaults
    (1M words per chunk and updates of 1,000 words on CUDA, 100k and 250 on a CPU)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = resolve_data_dir("word2vec", FILES, args.data_dir)
    if folder is None:
        raise SystemExit("the shared word2vec corpus is missing: set --data-dir or $FORMERS_DATA_DIR/word2vec")
    cuda = args.device.startswith("cuda")
    words_per_batch = args.words_per_batch or (1_000_000 if cuda else 100_000)
    args.words_per_update = args.words_per_update or (1000 if cuda else 250)
    return folder, read_corpus(str(folder / "corpus.txt.gz"), "lowercase_letters", args.max_words), words_per_batch


def read_corpus(path: str, tokenizer: str, max_words: int | None = None) -> list[list[str]]:
    """The corpus's sentences as word lists (the first ``max_words`` words' worth of lines when given)."""
    return first_words(read_sentences(path, tokenizer), max_words)


def first_words(sentences: Iterable[list[str]], max_words: int | None) -> list[list[str]]:
    """The leading sentences up to the one that reaches ``max_words`` words (all of them for None)."""
    taken, count = [], 0
    for words in sentences:
        if max_words is not None and count >= max_words:
            break
        taken.append(words)
        count += len(words)
    return taken


def write_corpus(sentences: list[list[str]], folder: Path) -> Path:
    """The sentences as a text file (one per line), so formers prepares exactly what gensim is given."""
    path = folder / "corpus.txt"
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(" ".join(s) + "\n" for s in sentences)
    return path


def evaluate(vectors: WordVectors, eval_dir: Path | None, restrict_vocab: int) -> dict[str, float]:
    """Analogy accuracy (with its semantic / syntactic split) and WordSim-353 Spearman, as gensim computes them."""
    if eval_dir is None:
        return {}
    analogies = vectors.evaluate_analogies(eval_dir / "questions-words.txt", restrict_vocab=restrict_vocab)
    pairs = vectors.evaluate_pairs(eval_dir / "wordsim353.tsv", restrict_vocab=restrict_vocab)
    return {"analogy": analogies.accuracy, "semantic": analogies.semantic_accuracy,
            "syntactic": analogies.syntactic_accuracy, "analogies_evaluated": analogies.total,
            "wordsim_spearman": pairs.spearman, "wordsim_pairs": pairs.pairs}


def train_formers(
    text: Path, settings: Settings, seed: int, device: str, words_per_batch: int, words_per_update: int,
    work_dir: Path, compile_updates: bool = False, graph_updates: bool | None = None,
) -> tuple[WordVectors, dict[str, Any]]:
    """Prepares ``text`` and trains through the Trainer on ``device``; returns the vectors and timings.
    ``compile_updates``, ``graph_updates``: :class:`Word2VecTask`'s (default: CUDA graphs on CUDA, eager on a CPU)."""
    start = time.perf_counter()
    meta = prepare_corpus(text, work_dir / "prepared", "whitespace", settings.min_count)
    prepare_s = time.perf_counter() - start
    corpus = EncodedCorpus(work_dir / "prepared")
    config = Word2VecConfig(len(corpus.vocab), settings.embed_dim, settings.architecture, settings.window,
                            negative=settings.negative, sample=settings.sample)
    torch.manual_seed(seed)
    model = Word2Vec(config)
    task = Word2VecTask(corpus.vocab, config, settings.alpha, settings.min_alpha, words_per_update, compile_updates,
                        graph_updates)
    loader = Word2VecLoader(corpus, words_per_batch, seed=seed, epochs=settings.epochs)
    trainer_config = TrainerConfig(max_steps=None, max_epochs=settings.epochs, max_grad_norm=0.0, device=device,
                                   progress_bar=False, tensorboard=False, log_every=10**9, seed=seed)
    trainer = Trainer(model, task, loader, trainer_config, work_dir / "run",
                      optimizer=torch.optim.SGD(model.parameters(), lr=1.0))
    _sync(device)
    start = time.perf_counter()
    trainer.fit()
    _sync(device)
    fit_s = time.perf_counter() - start
    # The Trainer's own throughput (one log row over the whole run: its last step reads the device back) excludes
    # the final checkpoint and plot that fit() also does.
    with open(work_dir / "run" / "metrics.csv", newline="", encoding="utf-8") as fh:
        kept_per_s = float([row for row in csv.DictReader(fh) if row["tokens_per_s"]][-1]["tokens_per_s"])
    train_s = meta.kept_words * settings.epochs / kept_per_s
    words = meta.total_words * settings.epochs
    timing = {"prepare_s": round(prepare_s, 2), "train_s": round(train_s, 2), "fit_s": round(fit_s, 2),
              "words_per_s": round(words / train_s), "steps": trainer.state.step, "vocab_size": len(corpus.vocab)}
    return WordVectors(corpus.vocab.words, model.input_vectors.detach().cpu(), corpus.vocab.counts), timing


def train_gensim(sentences: list[list[str]], settings: Settings, seed: int, workers: int) -> tuple[WordVectors, dict[str, Any]]:
    """gensim 4's Word2Vec on the same sentences with ``workers`` threads; returns the vectors and timings."""
    from gensim.models import Word2Vec as GensimWord2Vec

    model = GensimWord2Vec(vector_size=settings.embed_dim, window=settings.window, min_count=settings.min_count,
                           sg=int(settings.architecture == "skipgram"), negative=settings.negative,
                           sample=settings.sample, alpha=settings.alpha, min_alpha=settings.min_alpha,
                           epochs=settings.epochs, seed=seed, workers=workers)
    start = time.perf_counter()
    model.build_vocab(sentences)
    vocab_s = time.perf_counter() - start
    start = time.perf_counter()
    effective, raw = model.train(sentences, total_examples=model.corpus_count, epochs=settings.epochs)
    train_s = time.perf_counter() - start
    timing = {"vocab_s": round(vocab_s, 2), "train_s": round(train_s, 2), "words_per_s": round(raw / train_s),
              "effective_words_per_s": round(effective / train_s), "vocab_size": len(model.wv)}
    wv = model.wv
    return WordVectors(list(wv.index_to_key), torch.from_numpy(wv.vectors.copy())), timing


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def machine(device: str, threads: int, workers: int) -> dict[str, Any]:
    """Hardware and software of the run."""
    import gensim
    from gensim.models.word2vec_inner import FAST_VERSION

    info = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": threads,
            "gensim_workers": workers, "torch": torch.__version__, "gensim": gensim.__version__,
            "gensim_fast_version": FAST_VERSION, "python": platform.python_version(), "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    try:
        with open("/proc/loadavg") as fh:
            info["load_average_at_start"] = fh.read().split()[:3]
    except OSError:
        pass
    return info


def scratch_dir() -> tempfile.TemporaryDirectory:
    """A temporary folder outside the working tree."""
    return tempfile.TemporaryDirectory(prefix="formers-word2vec-")
