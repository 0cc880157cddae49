"""Masked language modelling (BERT pre-training): MLM (+ optional next-sentence) loss; held-out MLM accuracy.

Batches come from :mod:`formers.data.mlm`: ``input_ids`` (masked), ``token_type_ids``, ``padding_mask``,
``labels`` (the original id at the ~15% selected positions, -100 elsewhere) and, with next-sentence
prediction, ``next_sentence_labels`` (0 = IsNext, 1 = NotNext). Evaluation scores held-out documents masked
once with a fixed seed, so every evaluation of every run sees the same masked positions: masked-token accuracy,
mean cross-entropy over masked tokens and its exponential, the MLM perplexity (and NSP accuracy).

Recipes read a built-in public-domain corpus (``bible-en``: the King James Bible embedded in the package, one
document per chapter, one sentence per verse) or a UTF-8 text file (documents separated by blank lines, one
sentence per line); every ``heldout_every``-th document is held out. A WordPiece vocabulary is trained on the
training documents and saved, with the weights, in every checkpoint (``vocab.txt``), so a run directory is a
complete model directory for fine-tuning (``formers.from_pretrained`` + ``WordPieceTokenizer.from_directory``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.data.mlm import IGNORE_INDEX
from formers.layers import value_checks
from formers.training.task import StepOutput
from formers.training.trainer import move_to_device


def _model_inputs(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    return batch["input_ids"], batch["token_type_ids"], batch["padding_mask"]


def _forward(model: nn.Module, batch: dict[str, Tensor]):
    """The model's output with MLM logits (N, V) for the N masked positions, in row-major order."""
    return model(*_model_inputs(batch), masked_positions=batch["labels"] != IGNORE_INDEX)


class MaskedLMTask:
    """Trains ``BertForMaskedLM`` / ``BertForPreTraining``: cross-entropy on masked tokens (+ next-sentence loss).

    Args:
        next_sentence_weight: weight of the next-sentence loss when batches carry ``next_sentence_labels`` and the
            model returns ``next_sentence_logits`` (the paper sums both losses: 1.0).
    """

    def __init__(self, next_sentence_weight: float = 1.0) -> None:
        if next_sentence_weight < 0:
            raise ValueError(f"next_sentence_weight must be >= 0, got {next_sentence_weight}")
        self.next_sentence_weight = next_sentence_weight

    def training_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        """Mean cross-entropy over the batch's masked tokens, plus the weighted next-sentence loss."""
        with value_checks(False):
            out = _forward(model, batch)
        labels = batch["labels"]
        mlm = F.cross_entropy(out.logits.float(), labels[labels != IGNORE_INDEX])
        metrics: dict[str, Tensor | float] = {"mlm_loss": mlm.detach()}
        loss = mlm
        nsp_logits = getattr(out, "next_sentence_logits", None)
        if nsp_logits is not None and "next_sentence_labels" in batch:
            nsp = F.cross_entropy(nsp_logits.float(), batch["next_sentence_labels"])
            metrics["nsp_loss"] = nsp.detach()
            loss = loss + self.next_sentence_weight * nsp
        return StepOutput(loss=loss, metrics=metrics, num_tokens=batch["input_ids"].numel())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, eval_batches) -> dict[str, float]:
        """Masked-token accuracy, mean masked-token loss, perplexity (= exp loss) and NSP accuracy if present."""
        device = next(model.parameters()).device
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.long)
        nsp_correct = torch.zeros((), device=device, dtype=torch.long)
        count, nsp_count = 0, 0
        for batch in eval_batches:
            batch = move_to_device(batch, device)
            with value_checks(False):
                out = _forward(model, batch)
            selected = batch["labels"] != IGNORE_INDEX  # (B, T)
            logits = out.logits.float()  # (N, V)
            targets = batch["labels"][selected]  # (N,)
            loss_sum += F.cross_entropy(logits, targets, reduction="sum").double()
            correct += (logits.argmax(-1) == targets).sum()
            count += int(selected.sum())
            nsp_logits = getattr(out, "next_sentence_logits", None)
            if nsp_logits is not None and "next_sentence_labels" in batch:
                nsp_correct += (nsp_logits.argmax(-1) == batch["next_sentence_labels"]).sum()
                nsp_count += batch["next_sentence_labels"].numel()
        if count == 0:
            raise ValueError("the evaluation batches hold no masked token")
        loss = float(loss_sum) / count
        metrics = {"mlm_accuracy": int(correct) / count, "mlm_loss": loss, "perplexity": math.exp(min(loss, 50.0))}
        if nsp_count:
            metrics["nsp_accuracy"] = int(nsp_correct) / nsp_count
        return metrics


# ----------------------------------------------------------------------------- corpora


def bible_documents() -> list[tuple[str, list[str]]]:
    """The King James Bible (public domain, embedded): one document per chapter (``"Gen.1"``), verses as sentences."""
    from formers.data.corpora import read_bible_en_es

    chapters: dict[str, list[str]] = {}
    for reference, english, _ in read_bible_en_es():
        chapters.setdefault(reference.rsplit(".", 1)[0], []).append(english)
    return list(chapters.items())


def text_documents(path: str | Path) -> list[tuple[str, list[str]]]:
    """A UTF-8 text file as documents: blocks separated by blank lines, one sentence per non-blank line."""
    documents: list[tuple[str, list[str]]] = []
    current: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            current.append(line.strip())
        elif current:
            documents.append((f"doc{len(documents)}", current))
            current = []
    if current:
        documents.append((f"doc{len(documents)}", current))
    if not documents:
        raise ValueError(f"{path} holds no text")
    return documents


def split_documents(
    documents: list[tuple[str, list[str]]], heldout_every: int
) -> tuple[list[list[str]], list[list[str]]]:
    """(train, held-out) documents: document ``i`` is held out when ``i % heldout_every == heldout_every - 1``."""
    if heldout_every < 2:
        raise ValueError(f"heldout_every must be >= 2, got {heldout_every}")
    if len(documents) < heldout_every:
        raise ValueError(f"heldout_every={heldout_every} holds nothing out of {len(documents)} documents")
    train = [s for i, (_, s) in enumerate(documents) if i % heldout_every != heldout_every - 1]
    held = [s for i, (_, s) in enumerate(documents) if i % heldout_every == heldout_every - 1]
    return train, held


# ----------------------------------------------------------------------------- recipe setup


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


@dataclass
class MaskedLMOptions:
    """The ``task_options`` section."""

    next_sentence_weight: float = 1.0
    fill_mask_examples: tuple[str, ...] = (
        "In the beginning God created the [MASK] and the earth.",
        "And God said, Let there be [MASK]: and there was light.",
        "The LORD is my [MASK]; I shall not want.",
    )


def _documents(data: MaskedLMData) -> list[tuple[str, list[str]]]:
    if (data.corpus is None) == (data.text is None):
        raise ValueError(f"data needs exactly one of corpus or text, got corpus={data.corpus!r} text={data.text!r}")
    if data.text is not None:
        return text_documents(data.text)
    if data.corpus != "bible-en":
        raise ValueError(f"data.corpus must be 'bible-en' (or use data.text), got {data.corpus!r}")
    return bible_documents()


def tokenize_documents(tokenizer, documents: list[list[str]]) -> list[list[list[int]]]:
    """Word-piece ids of every sentence (no special tokens, no length limit)."""
    return [
        [tokenizer.encode(s, add_special_tokens=False, max_length=1 << 30) for s in doc]
        for doc in documents
    ]


def build_model(section: dict, next_sentence: bool, **derived) -> nn.Module:
    """A BERT variant (``section["name"]``, e.g. ``bert_mini``, with the section's overrides) with the pre-training
    head: ``BertForPreTraining`` when ``next_sentence``, else ``BertForMaskedLM``."""
    from formers.models.bert import BertConfig, BertForMaskedLM, BertForPreTraining
    from formers.registry import create_config

    if "name" not in section:
        raise ValueError("recipe section 'model' needs a 'name', e.g. bert_mini (see `formers list-models bert*`)")
    overrides = {k: v for k, v in section.items() if k != "name"}
    config = create_config(section["name"], **{**derived, **overrides})
    if not isinstance(config, BertConfig):
        raise ValueError(f"the masked_lm task trains BERT variants, got model {section['name']!r}")
    return BertForPreTraining(config) if next_sentence else BertForMaskedLM(config)


def setup(recipe, run_dir: Path, resume: bool):
    """Builds tokenizer, model, loaders and the final report for a masked-LM recipe (see ``training.run``)."""
    from formers.config import from_dict
    from formers.data.mlm import MLMCollator, MLMLoader, build_examples, fixed_eval_batches
    from formers.data.tokenizers.wordpiece import WordPieceTokenizer, check_vocab_matches
    from formers.training.run import RunSetup

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
    collator = MLMCollator(
        tokenizer.vocab_size, tokenizer.pad_id, tokenizer.mask_id, sorted(tokenizer.special_ids),
        data.mlm_probability, data.mask_fraction, data.random_fraction,
    )
    loader = MLMLoader(train, collator, data.batch_size, seed=recipe.train.seed, drop_last=True)
    eval_set = fixed_eval_batches(held, collator, data.eval_batch_size, seed=data.eval_seed)
    n_train = sum(len(e.input_ids) for e in train)
    print(f"data: {len(train_docs)} train documents -> {len(train)} rows ({n_train:,} tokens); "
          f"{len(held_docs)} held-out documents -> {len(held)} rows; model {recipe.model.get('name')} with "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    task = MaskedLMTask(options.next_sentence_weight)

    def finalize(trainer) -> dict:
        return final_report(trainer, tokenizer, eval_set, options, run_dir)

    return RunSetup(model, task, loader, eval_set, tokenizer.save, finalize)


@torch.no_grad()
def fill_mask(model: nn.Module, tokenizer, text: str, top_k: int = 3) -> list[list[str]]:
    """The ``top_k`` tokens predicted at each ``[MASK]`` of ``text``, best first."""
    device = next(model.parameters()).device
    batch = move_to_device(tokenizer([text], truncation=True, max_length=model.config.max_seq_len), device)
    logits = model(*_model_inputs(batch)).logits[0]  # (T, V)
    where = (batch["input_ids"][0] == tokenizer.mask_id).nonzero().flatten()
    return [[tokenizer.id_to_token(i) for i in logits[p].topk(top_k).indices.tolist()] for p in where.tolist()]


def final_report(trainer, tokenizer, eval_set, options: MaskedLMOptions, run_dir: Path) -> dict:
    """Held-out MLM accuracy / perplexity of the final and best weights, and a few fill-mask predictions."""
    from formers.hub import from_pretrained

    candidates = {"final": trainer.model}
    if (run_dir / "checkpoints" / "best").is_dir():
        candidates["best"] = from_pretrained(run_dir / "checkpoints" / "best", device=trainer.device)
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
