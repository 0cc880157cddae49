"""``formers attention --checkpoint DIR INPUT [--layer L] [--head H] --out DIR``: pictures of what the model attends
to for one input (a text, or an image file for image models), written as PNGs whose paths are printed.

What is drawn depends on the family (:mod:`formers.inference.attention_pictures`): self-attention heads for GPT and
BERT, the source x target alignment of a translation, the attention rollout of ViT/TNT over the image, Swin's window
attention, DETR's object queries with their boxes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from formers.inference.attention_pictures import draw_attention


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attention", help="draw a model's attention maps for one text or image (PNGs)")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint or run directory")
    p.add_argument("input", metavar="INPUT", help="the text (text models) or an image file (image models)")
    p.add_argument("--layer", type=int, default=None,
                   help="attention layer to draw, from 0 (default: the last; Swin: the first block)")
    p.add_argument("--head", type=int, default=None, help="one head (default: every head, or their mean)")
    p.add_argument("--out", required=True, type=Path, help="folder for the PNGs")
    p.add_argument("--threshold", type=float, default=0.5, help="detection: draw objects scoring above (default 0.5)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.threshold < 1.0:
        raise ValueError(f"--threshold must be in [0, 1), got {args.threshold}")
    paths = draw_attention(args.checkpoint, args.input, args.out, layer=args.layer, head=args.head,
                           device=args.device, threshold=args.threshold)
    for path in paths:
        print(path)
    return 0
