"""Translation recipes: the ``data`` and ``task_options`` sections, the run's setup and its final report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from formers.config import from_dict, to_dict
from formers.data.buckets import default_pad_multiple
from formers.data.corpora import load_corpus_split
from formers.data.parallel import (
    ParallelDataset,
    TranslationLoader,
    read_parallel,
    read_tsv,
)
from formers.data.tokenizers.joint_bpe import SubwordTokenizer
from formers.devices import resolve_device
from formers.hub import from_pretrained
from formers.inference.translate import Translator
from formers.recipes.recipe import Recipe, RunSetup, model_from_section, model_section
from formers.tasks.metrics import corpus_bleu
from formers.tasks.translation import TranslationEvalSet, TranslationTask
from formers.training.best import best_checkpoint
from formers.training.checkpoint import average_run_checkpoints, step_checkpoints


@dataclass
class TranslationData:
    """The ``data`` section of a translation recipe.

    ``corpus`` is ``"bible-en-es"`` (embedded, public domain), ``"multi30k"`` (``data_dir``,
    ``$FORMERS_DATA_DIR/multi30k``, ``../shared/data/multi30k`` or download) or ``"files"`` (your own
    ``train_src``/``train_tgt`` or ``train_tsv`` and the matching ``valid_*``).
    """
    corpus: str = "bible-en-es"
    src_lang: str = "en"
    tgt_lang: str = "es"
    data_dir: str | None = None
    train_src: str | None = None
    train_tgt: str | None = None
    train_tsv: str | None = None
    valid_src: str | None = None
    valid_tgt: str | None = None
    valid_tsv: str | None = None
    valid_split: str = "val"
    vocab_size: int = 8000
    min_frequency: int = 2
    max_len: int = 128  # longer training pairs are rejected (and counted), never truncated
    max_tokens: int = 4096
    pad_multiple: int | None = None  # training batches padded to multiples of this; None: 16 on CUDA, else exact
    # rows padded too (fillers weigh nothing), so the batches take a few shapes that the Trainer replays as CUDA
    # graphs (train.cuda_graphs); None: on CUDA
    static_batches: bool | None = None
    max_train_pairs: int | None = None
    max_valid_pairs: int | None = None


@dataclass
class TranslationOptions:
    """The ``task_options`` section: loss and decoding settings."""
    label_smoothing: float = 0.1
    eval_beam_size: int = 1  # decoding during training-time evaluation (1 = greedy, fast)
    final_beam_size: int = 4  # decoding for the final report
    alpha: float = 0.6
    max_bleu_sentences: int | None = None  # cap on sentences decoded during training-time evaluation
    average_last: int = 0  # average the last N step checkpoints at the end (0 = off)


RESUMABLE = ("task_options.final_beam_size", "task_options.average_last")
"""Keys of this task's sections that may change when a run resumes (they only shape the final report)."""


def _check_files(data: TranslationData) -> None:
    if data.corpus != "files":
        return
    for split in ("train", "valid"):
        src, tgt, tsv = (getattr(data, f"{split}_{k}") for k in ("src", "tgt", "tsv"))
        if not tsv and not (src and tgt):
            raise ValueError(f"corpus 'files' needs data.{split}_src and data.{split}_tgt, or data.{split}_tsv")


def sections(recipe: Recipe) -> dict[str, dict]:
    """The recipe's ``data``, ``task_options`` and ``model`` sections checked (nothing read or built) and with their
    defaults filled in."""
    data = from_dict(TranslationData, recipe.data, prefix="data.")
    _check_files(data)
    options = from_dict(TranslationOptions, recipe.task_options, prefix="task_options.")
    return {"data": to_dict(data), "task_options": to_dict(options), "model": model_section(recipe.model)}


def _read_split(data: TranslationData, split: str) -> tuple[list[str], list[str]]:

    if data.corpus != "files":
        return load_corpus_split(data.corpus, split, data.src_lang, data.tgt_lang, data.data_dir)
    src, tgt, tsv = (getattr(data, f"{split}_{k}") for k in ("src", "tgt", "tsv"))
    if tsv:
        pairs = read_tsv(tsv)
    elif src and tgt:
        pairs = read_parallel(src, tgt)
    else:
        raise ValueError(f"corpus 'files' needs data.{split}_src and data.{split}_tgt, or data.{split}_tsv")
    return list(pairs.src), list(pairs.tgt)


def setup(recipe: Recipe, run_dir: Path, resume: bool) -> RunSetup:
    """Builds tokenizer, model, loaders and the final report for a translation recipe (see :mod:`formers.recipes.run`)."""
    data = from_dict(TranslationData, recipe.data, prefix="data.")
    options = from_dict(TranslationOptions, recipe.task_options, prefix="task_options.")
    train_src, train_tgt = _read_split(data, "train")
    valid_src, valid_tgt = _read_split(data, "valid" if data.corpus == "files" else data.valid_split)
    if data.max_train_pairs is not None:
        train_src, train_tgt = train_src[: data.max_train_pairs], train_tgt[: data.max_train_pairs]
    if data.max_valid_pairs is not None:
        valid_src, valid_tgt = valid_src[: data.max_valid_pairs], valid_tgt[: data.max_valid_pairs]

    tok_path = run_dir / "tokenizer.json"
    if resume and tok_path.is_file():
        tokenizer = SubwordTokenizer.load(tok_path)
    else:
        tokenizer = SubwordTokenizer.train(train_src + train_tgt, data.vocab_size, data.min_frequency)
        tokenizer.save(tok_path)
    model = model_from_section(
        recipe.model,
        src_vocab_size=tokenizer.vocab_size,
        tgt_vocab_size=tokenizer.vocab_size,
        pad_id=tokenizer.pad_id,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        tokenizer={"src_lang": data.src_lang, "tgt_lang": data.tgt_lang, "corpus": data.corpus},
    )
    max_len = min(data.max_len, model.config.max_seq_len)
    train_set = ParallelDataset.from_text(train_src, train_tgt, tokenizer, max_len=max_len)
    if train_set.num_rejected:
        print(f"data: rejected {train_set.num_rejected} of {len(train_src)} training pairs longer than {max_len} tokens")
    valid_set = ParallelDataset.from_text(valid_src, valid_tgt, tokenizer, max_len=None)
    ids = dict(pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
    cuda = resolve_device(recipe.train.device).type == "cuda"
    pad_multiple = default_pad_multiple(data.pad_multiple, cuda)
    static = data.static_batches if data.static_batches is not None else cuda
    train_loader = TranslationLoader(train_set, data.max_tokens, shuffle=True, seed=recipe.train.seed,
                                     pad_multiple=pad_multiple, max_len=max_len, static_batches=static, **ids)
    eval_batches = list(TranslationLoader(valid_set, data.max_tokens, shuffle=False, **ids))
    eval_set = TranslationEvalSet(eval_batches, valid_src, valid_tgt)
    print(
        f"data: {len(train_set)} training pairs, {len(valid_set)} validation pairs, joint BPE vocabulary "
        f"{tokenizer.vocab_size}; model {recipe.model.get('name')} with "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"
    )
    task = TranslationTask(
        tokenizer, options.label_smoothing, options.eval_beam_size, options.alpha, options.max_bleu_sentences
    )

    def finalize(trainer) -> dict:
        return final_report(trainer, tokenizer, eval_set, options, run_dir)

    return RunSetup(model, task, train_loader, eval_set, {"tokenizer.json": tok_path}, finalize)


def final_report(trainer, tokenizer, eval_set: TranslationEvalSet, options: TranslationOptions, run_dir: Path) -> dict:
    """Beam-search BLEU of the final, best and (optionally) averaged weights on the whole validation set."""


    candidates = {"final": trainer.model}
    best = best_checkpoint(run_dir)
    if best is not None:
        candidates["best"] = from_pretrained(best, device=trainer.device)
    saved = len(step_checkpoints(run_dir))
    if options.average_last > 0 and saved < 2:  # e.g. a time budget that ended before the second save
        print(f"final: averaging skipped: the run holds {saved} step checkpoint(s) and averaging needs at least 2 "
              f"(task_options.average_last={options.average_last}, train.save_every={trainer.config.save_every})")
    elif options.average_last > 0:
        paths = average_run_checkpoints(run_dir, options.average_last, run_dir / "averaged")
        candidates[f"averaged_last_{len(paths)}"] = from_pretrained(run_dir / "averaged", device=trainer.device)
    results = {}
    for name, model in candidates.items():
        start = time.perf_counter()
        hyps = Translator(model.eval(), tokenizer, beam_size=options.final_beam_size, alpha=options.alpha).translate(
            eval_set.sources
        )
        bleu = corpus_bleu(hyps, eval_set.references)
        results[f"bleu_{name}"] = round(bleu, 2)
        print(f"final: {name:<20} sacreBLEU {bleu:6.2f} (beam {options.final_beam_size}, "
              f"{len(hyps)} sentences, {time.perf_counter() - start:.0f}s)")
        (run_dir / f"hypotheses_{name}.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    return results
