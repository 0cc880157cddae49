"""``formers classify --checkpoint DIR IMAGE...``: the top classes of each image, with probabilities.

The checkpoint (or run) directory must hold an image classifier and the ``preprocessing.json`` written beside it
by an ``image_classification`` recipe (class names, image size, channels, normalisation). Images of any size are
converted to the model's channels and resized to its image size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from formers.hub import from_pretrained, resolve_checkpoint_dir


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
    from formers.data.image_transforms import Preprocessing
    from formers.data.images import read_image
    from formers.training.trainer import resolve_device

    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="print the top-5 classes of images with an image-classification checkpoint")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint or run directory")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top-k", type=int, default=5, help="classes to print per image (default 5)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    results = classify_images(args.checkpoint, args.images, args.top_k, args.device)
    for path, top in zip(args.images, results, strict=True):
        print(path)
        for rank, (name, prob) in enumerate(top, start=1):
            print(f"  {rank}. {prob:7.2%}  {name}")
    return 0
