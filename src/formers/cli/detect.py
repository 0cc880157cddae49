"""``formers detect --checkpoint DIR IMAGE... [--threshold T] [--draw OUT.png]``: objects in images, as JSON lines;
and the detection side of ``formers evaluate --checkpoint DIR --coco ANNOTATIONS.json --images DIR`` (COCO AP).

The checkpoint (or run) directory must hold a detection model and the ``preprocessing.json`` a ``detection`` recipe
writes beside it (class names, COCO category ids, normalisation, evaluation resize). ``detect`` prints one line per
image: ``{"image": PATH, "detections": [{"label", "name", "score", "box": [x0, y0, x1, y1]}, ...]}`` in the image's
pixels, most confident first; ``--draw`` writes the image with its boxes (``OUT-<image name>.png`` for several).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from formers.data.images import read_image
from formers.devices import resolve_device
from formers.inference.detection import Detector
from formers.tasks.detection import evaluate_coco_checkpoint
from formers.viz.detection import draw_detections, save_image


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect objects in images with a detection checkpoint (JSON lines)")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint or run directory")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--threshold", type=float, default=0.5, help="keep detections scoring above this (default 0.5)")
    p.add_argument("--draw", type=Path, default=None, metavar="OUT.png",
                   help="write the image with its boxes here (OUT-<image name>.png for several images)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=run)


DRAW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _drawing_path(out: Path, image: str, many: bool) -> Path:
    return out.with_name(f"{out.stem}-{Path(image).stem}{out.suffix or '.png'}") if many else out


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.threshold < 1.0:
        raise ValueError(f"--threshold must be in [0, 1), got {args.threshold}")
    suffix = args.draw.suffix.lower() if args.draw is not None else None
    if suffix is not None and suffix not in DRAW_SUFFIXES and not (suffix == "" and len(args.images) > 1):
        raise ValueError(f"--draw must be an image path ending in one of {', '.join(DRAW_SUFFIXES)}, got "
                         f"{str(args.draw)!r}")
    images = [read_image(path, 3) for path in args.images]  # every file is checked before the model loads
    detector = Detector.from_checkpoint(args.checkpoint, resolve_device(args.device), args.batch_size)
    names = detector.preprocessing.class_names
    for path, image, found in zip(args.images, images, detector(images, args.threshold), strict=True):
        print(json.dumps({"image": str(path), "detections": found.to_records(names)}), flush=True)
        if args.draw is not None:
            drawn = draw_detections(image, found.boxes, found.labels.tolist(), found.scores.tolist(), names)
            save_image(drawn, _drawing_path(args.draw, path, len(images) > 1))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``formers evaluate --coco``: COCO AP of a detection checkpoint on a COCO-format set."""
    metrics = evaluate_coco_checkpoint(args.checkpoint, args.coco, args.images, args.batch_size,
                                       resolve_device(args.device))
    print(f"COCO AP {metrics['ap']:.4f}, AP50 {metrics['ap50']:.4f}, AP75 {metrics['ap75']:.4f}, "
          f"AP small {metrics['ap_small']:.4f}, medium {metrics['ap_medium']:.4f}, large {metrics['ap_large']:.4f}")
    print(json.dumps({k: round(v, 6) for k, v in metrics.items()}))
    return 0
