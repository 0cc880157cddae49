"""Object-detection recipes: the ``data`` and ``task_options`` sections, the run's setup and its final report.

Data sources (``data.dataset``): ``fashion_detect`` (generated from Fashion-MNIST on first use into ``data.root``,
default ``$FORMERS_DATA_DIR/fashion-detect`` or ``~/.cache/formers/fashion-detect``), ``coco`` (``train`` /
``test`` annotation JSON files with their image folders), ``voc`` (folders or files of Pascal VOC XML) and ``csv``
(``image_path,xmin,ymin,xmax,ymax,label`` files). VOC and CSV sets without a ``test`` file hold out the images named
in ``holdout`` (split by image, so no tile of a test image is trained on). Large images are tiled (``tile_size``)
after the split. Every reader's report (dropped or clipped boxes, images without boxes, tiling) is printed.

The final report gives COCO AP, AP50, AP75 and AP small/medium/large on the test split for the final (and best)
weights, and the same AP after class-wise non-maximum suppression (``report_nms_iou``): DETR's predictions need
none, which the two numbers show. Each checkpoint holds ``preprocessing.json`` for ``formers detect``/``evaluate``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from formers.config import from_dict, to_dict
from formers.data.detection import DetectionDataset, read_coco, read_csv_boxes, read_voc
from formers.data.detection_loader import (
    PREPROCESSING_FILE,
    DetectionLoader,
    DetectionPreprocessing,
    HeldDetectionLoader,
    eval_transform,
    tile_dataset,
    train_transform,
)
from formers.data.downloads import default_cache_dir
from formers.data.fashion_detect import (
    FashionDetectConfig,
    generate_fashion_detect,
    load_fashion_detect,
)
from formers.devices import resolve_device
from formers.hub import from_pretrained
from formers.recipes.recipe import Recipe, RunSetup, model_from_section, model_section
from formers.tasks.detection import (
    DetectionTask,
    HungarianMatcher,
    LossWeights,
    SetCriterion,
)
from formers.training.best import best_checkpoint

DATASETS = ("fashion_detect", "coco", "voc", "csv")


@dataclass
class DetectionData:
    """The ``data`` section of a detection recipe (see the module docstring for the sources)."""

    dataset: str = "fashion_detect"
    root: str | None = None  # fashion_detect: folder of the generated set
    data_dir: str | None = None  # fashion_detect: folder of the Fashion-MNIST files
    generate: dict = field(default_factory=dict)  # fashion_detect: FashionDetectConfig fields
    train: str | None = None  # coco: JSON; voc: XML folder or file; csv: CSV file
    train_images: str | None = None  # folder of the training images (default: the annotation file's)
    test: str | None = None
    test_images: str | None = None
    holdout: list[str] = field(default_factory=list)  # voc/csv without `test`: image file names held out for test
    classes: list[str] | None = None  # voc/csv: class names in label order (default: sorted names found)
    merge_classes: dict[str, str] = field(default_factory=dict)  # e.g. {"Alive": "Tree", "Dead": "Tree"}
    tile_size: int | None = None  # cut larger images into tiles of this side (after the split)
    tile_overlap: float = 0.05
    batch_size: int = 16
    eval_batch_size: int = 16
    num_workers: int = 0
    preload: bool = True  # decode every image once into memory
    invalid_boxes: str = "drop"  # "drop" (reported) or "raise"
    # training batches padded to multiples of this (few shapes: CUDA plans its convolutions once per shape);
    # None: 64 on CUDA, else exact
    pad_multiple: int | None = None


@dataclass
class DetectionOptions:
    """The ``task_options`` section: augmentation, normalisation, matching and loss weights, backbone freezing."""

    scales: list[int] | None = None  # shorter sides of the multi-scale resize (None: keep the image size)
    max_size: int = 1333
    crop: list[int] | None = None  # [min, max] side of DETR's random crop (None: no crop)
    crop_scales: list[int] = field(default_factory=lambda: [400, 500, 600])
    hflip: bool = True
    eval_size: int | None = None  # shorter side at evaluation (None: keep the image size)
    mean: list[float] | None = None  # per-channel normalisation (None: computed from the training images)
    std: list[float] | None = None
    class_cost: float = 1.0
    box_cost: float = 5.0
    giou_cost: float = 2.0
    ce_weight: float = 1.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    no_object_weight: float = 0.1
    aux_loss: bool = True
    freeze_backbone_stages: int = 0  # freeze the stem and this many stages (DETR freezes 1 of a pretrained ResNet)
    report_nms_iou: float | None = 0.7  # also report AP after class-wise NMS at this IoU (None: not)


RESUMABLE = ("task_options.report_nms_iou",)
"""Keys of this task's sections that may change when a run resumes."""


def _check(data: DetectionData, options: DetectionOptions) -> None:
    if data.dataset not in DATASETS:
        raise ValueError(f"data.dataset must be one of {DATASETS}, got {data.dataset!r}")
    if data.dataset != "fashion_detect" and not data.train:
        raise ValueError(f"dataset {data.dataset!r} needs data.train (annotation file or folder)")
    if data.dataset != "fashion_detect" and not data.test and not data.holdout:
        raise ValueError("give data.test, or data.holdout: image file names kept out of training for the test")
    if data.dataset == "fashion_detect":
        FashionDetectConfig(**data.generate)  # unknown keys and bad values raise here
    if data.invalid_boxes not in ("drop", "raise"):
        raise ValueError(f"data.invalid_boxes must be 'drop' or 'raise', got {data.invalid_boxes!r}")
    if data.pad_multiple is not None and data.pad_multiple < 1:
        raise ValueError(f"data.pad_multiple must be >= 1 (or null: 64 on CUDA, else 1), got {data.pad_multiple}")
    if options.crop is not None and len(options.crop) != 2:
        raise ValueError(f"task_options.crop must be [min, max], got {options.crop}")


def sections(recipe: Recipe) -> dict[str, dict]:
    """The recipe's ``data``, ``task_options`` and ``model`` sections checked (nothing read or built) and with their
    defaults filled in."""
    data = from_dict(DetectionData, recipe.data, prefix="data.")
    options = from_dict(DetectionOptions, recipe.task_options, prefix="task_options.")
    _check(data, options)
    return {"data": to_dict(data), "task_options": to_dict(options), "model": model_section(recipe.model)}


def train_pad_multiple(data: DetectionData, device: torch.device) -> int:
    """What training batches are padded to multiples of: ``data.pad_multiple``, or 64 on CUDA and 1 elsewhere."""
    if data.pad_multiple is not None:
        return data.pad_multiple
    return 64 if device.type == "cuda" else 1


def _split_holdout(dataset: DetectionDataset, names: list[str]) -> tuple[DetectionDataset, DetectionDataset]:
    files = [im.path.name if im.path is not None else "" for im in dataset.images]
    missing = sorted(set(names) - set(files))
    if missing:
        raise ValueError(f"data.holdout names images {missing} that the training annotations do not hold: {files[:8]}")
    test = [i for i, f in enumerate(files) if f in names]
    train = [i for i, f in enumerate(files) if f not in names]
    if not train:
        raise ValueError("data.holdout leaves no training image")
    return dataset.subset(train), dataset.subset(test)


DEEPFOREST_HINT = (
    "the DeepForest sample images (MIT) ship in the deepforest wheel: `pip download --no-deps deepforest==2.1.0`, "
    "unzip it and copy deepforest/data/* into $FORMERS_DATA_DIR/deepforest (or give --set data.train=FOLDER); "
    "shared/data/deepforest/README.md lists the files"
)


def resolve_data_path(path: str, name: str) -> str:
    """``path`` when it exists, else ``$FORMERS_DATA_DIR/<its last part>`` when that does (a recipe's
    ``../shared/data/X`` on a machine whose data lie elsewhere); otherwise one error naming both and how to get the
    data."""
    if Path(path).exists():
        return path
    root = os.environ.get("FORMERS_DATA_DIR")
    fallback = Path(root) / Path(path).name if root else None
    if fallback is not None and fallback.exists():
        return str(fallback)
    tried = f" nor {str(fallback)!r}" if fallback is not None else " (nor $FORMERS_DATA_DIR, which is not set)"
    hint = f"; {DEEPFOREST_HINT}" if Path(path).name == "deepforest" else ""
    raise FileNotFoundError(f"{name}: {path!r} does not exist{tried}{hint}")


def load_datasets(data: DetectionData) -> tuple[DetectionDataset, DetectionDataset]:
    """The (train, test) sets a recipe's ``data`` section names, merged, split and tiled as it says."""
    if data.dataset not in DATASETS:
        raise ValueError(f"data.dataset must be one of {DATASETS}, got {data.dataset!r}")
    if data.dataset == "fashion_detect":
        root = Path(data.root) if data.root else default_cache_dir() / "fashion-detect"
        generate_fashion_detect(root, FashionDetectConfig(**data.generate), data.data_dir)
        train, test = load_fashion_detect(root, "train"), load_fashion_detect(root, "test")
    else:
        if not data.train:
            raise ValueError(f"dataset {data.dataset!r} needs data.train (annotation file or folder)")

        def read(path: str, images: str | None, classes: list[str] | None) -> DetectionDataset:
            if data.dataset == "coco":
                return read_coco(path, images, invalid_boxes=data.invalid_boxes)
            if data.dataset == "voc":
                return read_voc(path, images, classes, invalid_boxes=data.invalid_boxes)
            return read_csv_boxes(path, images, classes, invalid_boxes=data.invalid_boxes)

        train = read(resolve_data_path(data.train, "data.train"), data.train_images, data.classes)
        if data.test:
            test = read(resolve_data_path(data.test, "data.test"), data.test_images,
                        train.class_names if data.dataset != "coco" else None)
        elif data.holdout:
            train, test = _split_holdout(train, data.holdout)
        else:
            raise ValueError("give data.test, or data.holdout: image file names kept out of training for the test")
        if data.merge_classes:
            train, test = train.merge_classes(data.merge_classes), test.merge_classes(data.merge_classes)
        if train.class_names != test.class_names:
            raise ValueError(f"train classes {train.class_names} differ from test classes {test.class_names}")
    if data.tile_size:
        train = tile_dataset(train, data.tile_size, data.tile_overlap)
        test = tile_dataset(test, data.tile_size, data.tile_overlap)
    if data.preload:
        train.preload(), test.preload()
    return train, test


def channel_mean_std(dataset: DetectionDataset, limit: int = 500) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of [0, 1] pixels over (up to ``limit`` of) the images; a constant
    channel gets a standard deviation of 0.01 instead of 0."""
    total, squares, count = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0
    for image in dataset.images[:limit]:
        x = image.load().double().div_(255.0)  # (3, H, W)
        total += x.sum(dim=(1, 2))
        squares += x.square().sum(dim=(1, 2))
        count += x.shape[1] * x.shape[2]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-4).sqrt()
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


def setup(recipe: Recipe, run_dir: Path, resume: bool) -> RunSetup:
    """Builds data, model, task and the final report for a detection recipe (see :mod:`formers.recipes.run`)."""
    start = time.perf_counter()
    data = from_dict(DetectionData, recipe.data, prefix="data.")
    options = from_dict(DetectionOptions, recipe.task_options, prefix="task_options.")
    train, test = load_datasets(data)
    for line in dict.fromkeys(train.report + test.report):
        print(f"data: {line}")
    mean, std = (options.mean, options.std) if options.mean and options.std else channel_mean_std(train)
    model = model_from_section(recipe.model, num_classes=train.num_classes)
    if options.freeze_backbone_stages:
        model.freeze_backbone(options.freeze_backbone_stages)
    crop = tuple(options.crop) if options.crop else None
    evaluation = eval_transform(options.eval_size, options.max_size)
    device = resolve_device(recipe.train.device)
    static = len({(im.height, im.width) for im in train.images}) == 1 and not options.scales and not crop
    if static and device.type == "cuda":  # held on the GPU and flipped there: no workers, no copies per step
        loader = HeldDetectionLoader(train, data.batch_size, options.hflip, seed=recipe.train.seed, device=device)
    else:
        augment = train_transform(options.scales, options.max_size, crop, options.crop_scales, options.hflip)
        loader = DetectionLoader(train, data.batch_size, augment, seed=recipe.train.seed, num_workers=data.num_workers,
                                 pad_multiple=train_pad_multiple(data, device), static_shapes=static)
    test_loader = DetectionLoader(test, data.eval_batch_size, evaluation, train=False, num_workers=data.num_workers)
    focal = model.config.class_scores == "sigmoid"  # model.class_scores: sigmoid scores trained by the focal loss
    criterion = SetCriterion(
        train.num_classes, HungarianMatcher(options.class_cost, options.box_cost, options.giou_cost, focal=focal),
        LossWeights(options.ce_weight, options.l1_weight, options.giou_weight, options.no_object_weight),
        aux_loss=options.aux_loss, class_scores=model.config.class_scores,
    )
    task = DetectionTask(train.num_classes, mean, std, criterion, train.category_ids)
    preprocessing = DetectionPreprocessing(train.class_names, train.category_ids, mean, std, options.eval_size,
                                           options.max_size)
    prep_path = preprocessing.save(Path(run_dir))
    print(
        f"data: {data.dataset} train {train.summary()}; test {test.summary()}; batch {data.batch_size}; model "
        f"{recipe.model.get('name')} with {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters"
    )

    def finalize(trainer) -> dict:
        return final_report(trainer, task, test_loader, run_dir, start, options.report_nms_iou)

    return RunSetup(model, task, loader, test_loader, {PREPROCESSING_FILE: prep_path}, finalize)


def final_report(trainer, task: DetectionTask, test_loader: DetectionLoader, run_dir: Path, start: float,
                 nms_iou: float | None) -> dict:
    """COCO AP of the final (and best) weights on the test split, without and with NMS; wall time and hardware."""
    minutes = (time.perf_counter() - start) / 60.0
    device = trainer.device
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    precision = trainer.config.precision
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    candidates = {"final": trainer.model}
    best = best_checkpoint(run_dir)
    if best is not None:
        candidates["best"] = from_pretrained(best, device=device)
    results: dict = {"train_minutes": round(minutes, 2), "hardware": hardware}
    for name, model in candidates.items():
        model.eval()
        for suffix, iou in [("", None), ("_nms", nms_iou)] if nms_iou is not None else [("", None)]:
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32"):
                metrics = task.evaluate(model, test_loader, nms_iou=iou)
            for key in ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar100"):
                results[f"test_{key}{suffix}_{name}"] = round(metrics[key], 4)
            what = "without NMS" if iou is None else f"with NMS at IoU {iou}"
            print(f"final: {name:<5} test AP {metrics['ap']:.4f}, AP50 {metrics['ap50']:.4f}, AP75 {metrics['ap75']:.4f} "
                  f"{what} ({len(test_loader.dataset):,} images)")
    results["test_ap"] = results["test_ap_final"]
    print(f"final: {minutes:.1f} minutes on {hardware}")
    return results


__all__ = ["RESUMABLE", "DetectionData", "DetectionOptions", "channel_mean_std", "final_report", "load_datasets",
           "sections", "setup", "train_pad_multiple"]
