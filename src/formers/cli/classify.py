"""``formers classify --checkpoint DIR IMAGE...``: the top classes of each image, with probabilities.

The checkpoint (or run) directory must hold an image classifier and the ``preprocessing.json`` written beside it
by an ``image_classification`` recipe (class names, image size, channels, normalisation). Images of any size are
converted to the model's channels and resized to its image size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from formers.inference.classification import classify_images


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
