"""Reading the weight files of Hugging Face model directories: safetensors only, single or sharded."""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor

from formers.hub import WEIGHTS_NAME, load_safetensors

WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


def read_hf_weights(directory: Path) -> dict[str, Tensor]:
    """All tensors of ``model.safetensors`` or of the shards its index names; never a pickle file."""
    weights, index = directory / WEIGHTS_NAME, directory / WEIGHTS_INDEX_NAME
    if weights.exists():
        return load_safetensors(weights)
    if index.exists():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(load_safetensors(directory / shard))
        return state
    raise FileNotFoundError(
        f"{directory} holds no {WEIGHTS_NAME} (or {WEIGHTS_INDEX_NAME}); formers never reads pickle checkpoints "
        "such as pytorch_model.bin: convert them to safetensors first"
    )
