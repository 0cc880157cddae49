"""Image classification with a trained checkpoint and the ``preprocessing.json`` saved beside it."""

from __future__ import annotations

from pathlib import Path

import torch

from formers.data.image_transforms import Preprocessing
from formers.data.images import read_image
from formers.devices import resolve_device
from formers.hub import from_pretrained, resolve_checkpoint_dir
from formers.layers import check_int


def classify_images(
    directory: str | Path, paths: list[str | Path], top_k: int = 5, device: str = "auto"
) -> list[list[tuple[str, float]]]:
    """The ``top_k`` (class name, probability) pairs of each image file, most likely first.

    Args:
        directory: a checkpoint or run directory holding the model and ``preprocessing.json``.
        paths: image files (any format Pillow reads).
        top_k: classes to return per image (at most the number of classes).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Raises:
        FileNotFoundError: a missing image, checkpoint or ``preprocessing.json``.
        ValueError: an unreadable image file (named), a model that is not an image classifier, ``top_k < 1``.
    """
    check_int(top_k, "top_k", minimum=1)
    if isinstance(paths, (str, Path)):
        raise TypeError(f"paths must be a list of image files, got one {type(paths).__name__}; pass [path]")
    if not paths:
        raise ValueError("no image files given")
    directory = resolve_checkpoint_dir(directory)
    prep = Preprocessing.load(directory)
    images = [read_image(p, prep.in_channels) for p in paths]  # every file is checked before the model loads
    model = from_pretrained(directory, device=resolve_device(device))
    num_classes = getattr(model.config, "num_classes", None)
    if num_classes != len(prep.class_names):
        raise ValueError(
            f"{directory} holds a {getattr(model, 'family', type(model).__name__)!r} model with num_classes="
            f"{num_classes}, but preprocessing.json names {len(prep.class_names)} classes"
        )
    param = next(model.parameters())
    batch = torch.stack([prep(im[None])[0] for im in images]).to(param.device)  # (N, C, H, W)
    with torch.inference_mode():
        probs = model(batch).logits.float().softmax(dim=-1)  # (N, K)
    values, indices = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [
        [(prep.class_names[i], float(v)) for v, i in zip(row_v.tolist(), row_i.tolist(), strict=True)]
        for row_v, row_i in zip(values, indices, strict=True)
    ]
