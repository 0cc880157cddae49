"""Hugging Face model directories in and out, once for every converter.

Reading: :func:`load_hf_directory` reads the weight files, asks the converter registered for the directory's
``model_type`` (``@register_converter("hf", model_type)``) to build the formers model and rename the tensors, and
loads them with the shared checks. Writing: :func:`write_hf_directory` writes ``config.json``, any extra JSON files
(``generation_config.json``) and ``model.safetensors`` atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor, nn

from formers.files import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    atomic_directory,
    load_state_into,
    read_hf_weights,
)
from formers.registry import converters, size_limit

COMPUTED_BUFFERS = 2**24
"""Elements a converted model may hold beyond its weights (position tables, masks: buffers it computes)."""


def load_hf_directory(directory: Path, meta: dict[str, Any], allow_non_finite: bool = False) -> nn.Module:
    """Builds the formers model for a Hugging Face directory, dispatching on ``meta["model_type"]``.

    The converter builds its formers config from ``meta`` (each field checked by the config's ``__post_init__``)
    and the model through :func:`formers.registry.build_model`, bounded by the weights read: at most twice their
    elements plus :data:`COMPUTED_BUFFERS`, so a ``config.json`` asking for a model its weights cannot fill is
    refused before the model is allocated. The weights are then loaded with the shared checks (shapes, dtype kinds,
    and no NaN or infinite values unless ``allow_non_finite``).

    Returns:
        The model with the directory's weights (train mode, on CPU; ``formers.from_pretrained`` moves it and sets
        eval mode).
    """
    model_type = meta["model_type"]
    known = converters("hf")
    if not isinstance(model_type, str) or model_type not in known:
        raise ValueError(f"Hugging Face model_type {model_type!r} is not supported yet; supported: {sorted(known)}")
    hf_state = read_hf_weights(directory)
    # the model may hold twice the file's elements (tied copies, padded rows) plus computed buffers, no more: a
    # config.json that does not match its weights is refused before the model is allocated
    in_file = sum(t.numel() for t in hf_state.values())
    reason = f"what the weights in {directory} can fill ({in_file:,} elements)"
    bound = size_limit(2 * in_file + COMPUTED_BUFFERS, reason)
    try:
        with bound:
            model, state = known[model_type](meta, hf_state, directory)
    except (KeyError, IndexError, ZeroDivisionError, OverflowError, AttributeError) as e:
        # the converter read a config.json or tensors that may come from anyone: a missing key or a value of the
        # wrong kind is the directory's fault, said as such
        raise ValueError(
            f"{directory}: its {CONFIG_NAME} and weights do not describe a {model_type} model formers can convert "
            f"({type(e).__name__}: {e})"
        ) from None
    load_state_into(model, state, directory / WEIGHTS_NAME, allow_non_finite=allow_non_finite)
    return model


def write_hf_directory(
    directory: str | Path, hf_config: dict[str, Any], state: dict[str, Tensor], extra_json: dict[str, Any] | None = None
) -> Path:
    """Atomically writes a Hugging Face directory: ``config.json``, ``extra_json`` files and ``model.safetensors``.

    Every tensor is copied to a contiguous CPU tensor of its own (safetensors refuses tensors sharing memory).
    """
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps(hf_config, indent=2), encoding="utf-8")
        for name, content in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
    return directory
