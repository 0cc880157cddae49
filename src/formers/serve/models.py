"""The models a playground serves: each checkpoint loaded once at startup, given an id and the task it does.

A request names a model by its id, never by a path: the ids are the checkpoint directories' names (made unique), and
the server reads no file after startup. Each model carries a lock: requests on one model run one at a time, so
that two of them never share its KV cache or interleave its forward passes; different models run in parallel.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from formers.data.detection_loader import DetectionPreprocessing
from formers.data.image_transforms import Preprocessing
from formers.data.tokenizers.load import load_tokenizer
from formers.hub import checkpoint_family, from_pretrained, resolve_checkpoint_dir
from formers.inference.detection import Detector
from formers.inference.embedding import (
    directory_max_length,
    directory_pooling,
    load_embedder,
)
from formers.inference.translate import Translator

TASKS = ("translate", "generate", "classify", "detect", "embed")
"""What a served model does, by family: see :func:`task_of`."""

MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""A model id: a name, never a path (no ``/``, no ``.``)."""

_TASK_OF_FAMILY = {
    "transformer": "translate", "rnn": "translate", "gpt": "generate", "vit": "classify", "tnt": "classify",
    "swin": "classify", "efficientformer": "classify", "detr": "detect", "bert": "embed",
}


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server.

    Attributes:
        max_upload_bytes: largest image upload.
        max_image_pixels: largest image (width x height), read from its header before decoding.
        max_text_chars: longest text (a source sentence, a prompt, one sentence to embed).
        max_new_tokens: most tokens one generation may make.
        max_sentences: most sentences one embedding request may compare.
        max_attention_values: most attention weights one result carries (layers x heads x queries x keys); longer
            inputs show the attention of their last tokens only.
    """

    max_upload_bytes: int = 8 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    max_text_chars: int = 2000
    max_new_tokens: int = 256
    max_sentences: int = 16
    max_attention_values: int = 2_000_000

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{name} must be an int >= 1, got {value!r}")


@dataclass
class ServedModel:
    """One loaded checkpoint.

    Attributes:
        id: its name in the API.
        task: one of :data:`TASKS`.
        family: the model family (``"gpt"``, ``"vit"``...).
        model: the model, in eval mode.
        tokenizer: text models' tokenizer (None for images).
        preprocessing: image models' preprocessing (None for text).
        info: what the page shows about it (class names, max_seq_len...).
        runner: what the task runs besides the model: the :class:`~formers.inference.detection.Detector` of a
            detection model; an embedding model's length limit and pooling.
        lock: held while a request runs on the model.
    """

    id: str
    task: str
    family: str
    model: nn.Module
    tokenizer: Any = None
    preprocessing: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    runner: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> dict[str, Any]:
        """The JSON ``GET /api/models`` lists for this model."""
        return {"id": self.id, "task": self.task, "family": self.family, **self.info}


def task_of(family: str) -> str:
    """The task a family's checkpoint does in the playground.

    Raises:
        ValueError: a family the playground has no task for (word2vec), naming it.
    """
    if family not in _TASK_OF_FAMILY:
        raise ValueError(f"the playground serves {sorted(_TASK_OF_FAMILY)} models, got a {family!r} model")
    return _TASK_OF_FAMILY[family]


def model_ids(paths: list[Path]) -> list[str]:
    """An id per checkpoint path: its directory's name made a valid id, suffixed ``-2``, ``-3``... when taken."""
    ids: list[str] = []
    for path in paths:
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(path).resolve().name).strip("-_")[:56] or "model"
        base = base if re.match(MODEL_ID, base) else f"m{base}"[:56]
        candidate, n = base, 2
        while candidate in ids:
            candidate, n = f"{base}-{n}", n + 1
        ids.append(candidate)
    return ids


def load_model(path: str | Path, model_id: str, device: str | torch.device = "cpu") -> ServedModel:
    """Loads one checkpoint (formers or Hugging Face directory, or a run) with what its task needs.

    Raises:
        FileNotFoundError: a missing checkpoint, tokenizer or ``preprocessing.json``.
        ValueError: a family the playground has no task for, or files that do not belong together.
    """
    directory = resolve_checkpoint_dir(path)
    family = checkpoint_family(directory)
    if family == "bert" or (family is None and (directory / "vocab.txt").is_file()):
        encoder, tokenizer, directory = load_embedder(directory, device=str(device))
        limit, source = directory_max_length(directory, encoder, tokenizer)
        pooling = directory_pooling(directory)
        info = {"max_tokens": limit, "pooling": pooling, "dim": encoder.config.embed_dim}
        return ServedModel(model_id, "embed", "bert", encoder.eval(), tokenizer, info=info,
                           runner={"max_length": limit, "limit_source": source, "pooling": pooling})
    model = from_pretrained(directory, device=device)
    family = getattr(model, "family", family) or type(model).__name__
    task = task_of(family)
    c = model.config
    if task == "translate":
        tokenizer = load_tokenizer(directory)
        if tokenizer.vocab_size > c.src_vocab_size:
            raise ValueError(f"{directory}: tokenizer.json has {tokenizer.vocab_size} tokens but the model's "
                             f"vocabulary is {c.src_vocab_size}")
        Translator(model, tokenizer)  # checks the tokenizer can batch sources
        info = {"max_tokens": c.max_seq_len, **{k: v for k, v in (getattr(c, "tokenizer", None) or {}).items()
                                                   if k in ("src_lang", "tgt_lang")}}
        return ServedModel(model_id, task, family, model, tokenizer, info=info)
    if task == "generate":
        tokenizer = load_tokenizer(directory)
        if tokenizer.vocab_size > c.vocab_size:
            raise ValueError(f"{directory}: the tokenizer has {tokenizer.vocab_size} tokens but the model's "
                             f"vocabulary is {c.vocab_size}")
        return ServedModel(model_id, task, family, model, tokenizer, info={"max_tokens": c.max_seq_len})
    if task == "classify":
        prep = Preprocessing.load(directory)
        if getattr(c, "num_classes", None) != len(prep.class_names):
            raise ValueError(f"{directory} holds a {family!r} model with num_classes={getattr(c, 'num_classes', None)}"
                             f", but preprocessing.json names {len(prep.class_names)} classes")
        info = {"classes": list(prep.class_names), "image_size": list(prep.image_size)}
        return ServedModel(model_id, task, family, model, preprocessing=prep, info=info)
    prep = DetectionPreprocessing.load(directory)
    detector = Detector(model, prep, batch_size=1)
    return ServedModel(model_id, task, family, model, preprocessing=prep, runner=detector,
                       info={"classes": list(prep.class_names)})


def load_models(paths: list[str | Path], device: str | torch.device = "cpu") -> dict[str, ServedModel]:
    """Every checkpoint loaded once, by id (in the order given)."""
    if not paths:
        raise ValueError("give at least one checkpoint to serve")
    ids = model_ids([Path(p) for p in paths])
    return {model_id: load_model(path, model_id, device) for model_id, path in zip(ids, paths, strict=True)}
