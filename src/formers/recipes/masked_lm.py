"""Masked-LM pretraining recipes: the ``data`` and ``task_options`` sections, the run's setup and its final report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from formers.config import from_dict, to_dict
from formers.data.buckets import default_pad_multiple
from formers.data.mlm import (
    MLMCollator,
    MLMLoader,
    bible_documents,
    build_examples,
    fixed_eval_batches,
    split_documents,
    text_documents,
)
from formers.data.tokenizers.wordpiece import WordPieceTokenizer, check_vocab_matches
from formers.devices import resolve_device
from formers.hub import from_pretrained
from formers.inference.fill_mask import fill_mask
from formers.models.bert import BertConfig, BertForMaskedLM, BertForPreTraining
from formers.recipes.recipe import Recipe, RunSetup, model_section
from formers.registry import create_config
from formers.tasks.masked_lm import MaskedLMTask
from formers.training.best import best_checkpoint


@dataclass
class MaskedLMData:
    """The ``data`` section of a masked-LM recipe.

    Give ``corpus`` (``"bible-en"``) or ``text`` (documents separated by blank lines, one sentence per line).
    ``tokenizer`` names a directory with a ``vocab.txt`` to use instead of training one of ``vocab_size``.
    """
    corpus: str | None = "bible-en"
    text: str | None = None
    tokenizer: str | None = None
    vocab_size: int = 8000
    lowercase: bool = True
    min_frequency: int = 2
    heldout_every: int = 20
    max_len: int = 128
    batch_size: int = 64
    next_sentence: bool = False
    mlm_probability: float = 0.15
    mask_fraction: float = 0.8
    random_fraction: float = 0.1
    eval_batch_size: int = 64
    eval_seed: int = 1234
    max_eval_examples: int | None = None
    pad_multiple: int | None = None  # training batches padded to multiples of this; None: 16 on CUDA, else 1


@dataclass
class MaskedLMOptions:
    """The ``task_options`` section."""
    next_sentence_weight: float = 1.0
    fill_mask_examples: tuple[str, ...] = (
        "In the beginning God created the [MASK] and the earth.",
        "And God said, Let there be [MASK]: and there was light.",
        "The LORD is my [MASK]; I shall not want.",
    )


RESUMABLE = ("task_options.fill_mask_examples",)
"""Keys of this task's sections that may change when a run resumes (they only shape the final report)."""


def _check_source(data: MaskedLMData) -> None:
    if (data.corpus is None) == (data.text is None):
        raise ValueError(f"data needs exactly one of corpus or text, got corpus={data.corpus!r} text={data.text!r}")
    if data.corpus is not None and data.corpus != "bible-en":
        raise ValueError(f"data.corpus must be 'bible-en' (or use data.text), got {data.corpus!r}")


def sections(recipe: Recipe) -> dict[str, dict]:
    """The recipe's ``data``, ``task_options`` and ``model`` sections checked (nothing read or built) and with their
    defaults filled in."""
    data = from_dict(MaskedLMData, recipe.data, prefix="data.")
    _check_source(data)
    options = from_dict(MaskedLMOptions, recipe.task_options, prefix="task_options.")
    model = model_section(recipe.model)
    if not isinstance(create_config(recipe.model["name"]), BertConfig):
        raise ValueError(f"the masked_lm task trains BERT variants, got model {recipe.model['name']!r}")
    return {"data": to_dict(data), "task_options": to_dict(options), "model": model}


def _documents(data: MaskedLMData) -> list[tuple[str, list[str]]]:
    _check_source(data)
    return text_documents(data.text) if data.text is not None else bible_documents()


def tokenize_documents(tokenizer, documents: list[list[str]]) -> list[list[list[int]]]:
    """Word-piece ids of every sentence (no special tokens, no length limit)."""
    return [
        [tokenizer.encode(s, add_special_tokens=False, max_length=1 << 30) for s in doc]
        for doc in documents
    ]


def build_model(section: dict, next_sentence: bool, **derived) -> nn.Module:
    """A BERT variant (``section["name"]``, e.g. ``bert_mini``, with the section's overrides) with the pre-training
    head: ``BertForPreTraining`` when ``next_sentence``, else ``BertForMaskedLM``."""
    if "name" not in section:
        raise ValueError("recipe section 'model' needs a 'name', e.g. bert_mini (see `formers list-models bert*`)")
    overrides = {k: v for k, v in section.items() if k != "name"}
    config = create_config(section["name"], **{**derived, **overrides})
    if not isinstance(config, BertConfig):
        raise ValueError(f"the masked_lm task trains BERT variants, got model {section['name']!r}")
    return BertForPreTraining(config) if next_sentence else BertForMaskedLM(config)


def setup(recipe: Recipe, run_dir: Path, resume: bool) -> RunSetup:
    """Builds tokenizer, model, loaders and the final report for a masked-LM recipe (see :mod:`formers.recipes.run`)."""
    data = from_dict(MaskedLMData, recipe.data, prefix="data.")
    options = from_dict(MaskedLMOptions, recipe.task_options, prefix="task_options.")
    train_docs, held_docs = split_documents(_documents(data), data.heldout_every)
    tok_dir = run_dir / "tokenizer"
    if data.tokenizer is not None:
        tokenizer = WordPieceTokenizer.from_directory(data.tokenizer)
    elif resume and (tok_dir / "vocab.txt").is_file():
        tokenizer = WordPieceTokenizer.from_directory(tok_dir)
    else:
        start = time.perf_counter()
        tokenizer = WordPieceTokenizer.train(
            (" ".join(d) for d in train_docs), data.vocab_size, data.lowercase, data.min_frequency
        )
        print(f"data: trained a WordPiece vocabulary of {tokenizer.vocab_size} in {time.perf_counter() - start:.1f}s")
    tokenizer.save(tok_dir)
    model = build_model(
        recipe.model,
        data.next_sentence,
        vocab_size=tokenizer.vocab_size,
        pad_id=tokenizer.pad_id,
        max_seq_len=data.max_len,
        tokenizer={"kind": "wordpiece", "vocab_sha256": tokenizer.fingerprint, "lowercase": tokenizer.lowercase},
    )
    check_vocab_matches(tokenizer, model)
    ids = dict(cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, next_sentence=data.next_sentence)
    train = build_examples(tokenize_documents(tokenizer, train_docs), data.max_len, seed=recipe.train.seed, **ids)
    held = build_examples(tokenize_documents(tokenizer, held_docs), data.max_len, seed=data.eval_seed, **ids)
    if data.max_eval_examples is not None:
        held = held[: data.max_eval_examples]
    masking = (tokenizer.vocab_size, tokenizer.pad_id, tokenizer.mask_id, sorted(tokenizer.special_ids),
               data.mlm_probability, data.mask_fraction, data.random_fraction)
    # on CUDA, batches padded to a few lengths and every position scored: steps of fixed shapes without host
    # synchronisation, which the Trainer replays as CUDA graphs (train.cuda_graphs); the same masks and loss
    cuda = resolve_device(recipe.train.device).type == "cuda"
    collator = MLMCollator(*masking, pad_multiple=default_pad_multiple(data.pad_multiple, cuda), max_len=data.max_len)
    loader = MLMLoader(train, collator, data.batch_size, seed=recipe.train.seed, drop_last=True)
    eval_set = fixed_eval_batches(held, MLMCollator(*masking), data.eval_batch_size, seed=data.eval_seed)
    n_train = sum(len(e.input_ids) for e in train)
    print(f"data: {len(train_docs)} train documents -> {len(train)} rows ({n_train:,} tokens); "
          f"{len(held_docs)} held-out documents -> {len(held)} rows; model {recipe.model.get('name')} with "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    task = MaskedLMTask(options.next_sentence_weight, all_positions=loader.static_shapes)

    def finalize(trainer) -> dict:
        return final_report(trainer, tokenizer, eval_set, options, run_dir)

    return RunSetup(model, task, loader, eval_set, tokenizer.save, finalize)


@torch.no_grad()
def final_report(trainer, tokenizer, eval_set, options: MaskedLMOptions, run_dir: Path) -> dict:
    """Held-out MLM accuracy / perplexity of the final and best weights, and a few fill-mask predictions."""
    candidates = {"final": trainer.model}
    best = best_checkpoint(run_dir)
    if best is not None:
        candidates["best"] = from_pretrained(best, device=trainer.device)
    task, results = MaskedLMTask(options.next_sentence_weight), {}
    for name, model in candidates.items():
        metrics = task.evaluate(model.eval(), eval_set)
        for key, value in metrics.items():
            results[f"{key}_{name}"] = round(value, 4)
        extra = f", NSP accuracy {metrics['nsp_accuracy']:.4f}" if "nsp_accuracy" in metrics else ""
        print(f"final: {name:<6} held-out MLM accuracy {metrics['mlm_accuracy']:.4f}, "
              f"perplexity {metrics['perplexity']:.2f}{extra}")
    model = candidates.get("best", trainer.model)
    for text in options.fill_mask_examples:
        if tokenizer.special_tokens["mask"] in text:
            print(f"fill-mask: {text} -> {fill_mask(model, tokenizer, text)}")
    return results
