"""Image-classification recipes: the ``data`` and ``task_options`` sections, the run's setup and its final report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from formers.config import from_dict, to_dict
from formers.data.image_transforms import (
    PREPROCESSING_FILE,
    MixUpCutMix,
    Preprocessing,
    channel_mean_std,
)
from formers.data.images import (
    ImageBatchLoader,
    ImageFolder,
    ImageSplit,
    image_eval_batches,
    load_digits,
    load_fashion_mnist,
    resize_images,
)
from formers.devices import resolve_device
from formers.hub import from_pretrained
from formers.recipes.recipe import Recipe, RunSetup, model_from_section, model_section
from formers.tasks.image_classification import ImageClassificationTask
from formers.training.best import best_checkpoint


@dataclass
class ImageData:
    """The ``data`` section of an image-classification recipe.

    ``dataset`` is ``"fashion_mnist"`` (``data_dir`` or the default search, see
    :func:`formers.data.images.fashion_mnist_dir`), ``"digits"`` (scikit-learn, 8x8) or ``"image_folder"``
    (``train_dir`` and ``test_dir``, one sub-folder per class, resized to ``image_size``).
    """
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    train_dir: str | None = None
    test_dir: str | None = None
    in_channels: int = 3  # image_folder only: 1 (grayscale) or 3 (RGB)
    image_size: int | None = None  # resize to this (None: the dataset's size; required for image_folder)
    val_size: int = 0  # hold out this many training images to evaluate during training (0: evaluate on test)
    batch_size: int = 128
    eval_batch_size: int = 1000
    device_data: bool = True  # keep the training split on the training device (batches never cross the bus)


@dataclass
class ImageOptions:
    """The ``task_options`` section: regularisation and augmentation of training batches."""
    label_smoothing: float = 0.0
    crop_padding: int = 0
    hflip: bool = False
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    mean: list[float] | None = None  # per-channel normalisation (None: computed from the training images)
    std: list[float] | None = None


RESUMABLE = ()
"""Keys of this task's sections that may change when a run resumes."""


def _check_dataset(data: ImageData) -> None:
    if data.dataset not in ("fashion_mnist", "digits", "image_folder"):
        raise ValueError(f"data.dataset must be 'fashion_mnist', 'digits' or 'image_folder', got {data.dataset!r}")
    if data.dataset == "image_folder":
        if not data.train_dir or not data.test_dir:
            raise ValueError("dataset 'image_folder' needs data.train_dir and data.test_dir")
        if data.image_size is None:
            raise ValueError("dataset 'image_folder' needs data.image_size (every image is resized to it)")


def sections(recipe: Recipe) -> dict[str, dict]:
    """The recipe's ``data``, ``task_options`` and ``model`` sections checked (nothing read or built) and with their
    defaults filled in."""
    data = from_dict(ImageData, recipe.data, prefix="data.")
    _check_dataset(data)
    options = from_dict(ImageOptions, recipe.task_options, prefix="task_options.")
    return {"data": to_dict(data), "task_options": to_dict(options), "model": model_section(recipe.model)}


def load_splits(data: ImageData) -> tuple[ImageSplit, ImageSplit]:
    """The (train, test) splits a recipe's ``data`` section names, resized to ``data.image_size`` if set."""
    _check_dataset(data)
    if data.dataset == "fashion_mnist":
        train, test = load_fashion_mnist("train", data.data_dir), load_fashion_mnist("test", data.data_dir)
    elif data.dataset == "digits":
        train, test = load_digits("train"), load_digits("test")
    else:
        train_folder = ImageFolder(data.train_dir, data.in_channels, data.image_size)
        train = train_folder.load_all()
        test = ImageFolder(data.test_dir, data.in_channels, data.image_size, train_folder.class_names).load_all()
    if data.image_size is not None:
        train = ImageSplit(resize_images(train.images, data.image_size), train.labels, train.class_names)
        test = ImageSplit(resize_images(test.images, data.image_size), test.labels, test.class_names)
    return train, test


def holdout(train: ImageSplit, val_size: int, seed: int) -> tuple[ImageSplit, ImageSplit | None]:
    """Splits ``val_size`` random images (fixed by ``seed``) off the training split."""
    if val_size <= 0:
        return train, None
    if val_size >= len(train):
        raise ValueError(f"data.val_size must be < the {len(train)} training images, got {val_size}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train.subset(order[val_size:].sort().values), train.subset(order[:val_size].sort().values)


def setup(recipe: Recipe, run_dir: Path, resume: bool) -> RunSetup:
    """Builds data, model, task and the final report for an image-classification recipe (see :mod:`formers.recipes.run`)."""
    start = time.perf_counter()
    data = from_dict(ImageData, recipe.data, prefix="data.")
    options = from_dict(ImageOptions, recipe.task_options, prefix="task_options.")
    print(f"data: loading {data.dataset} ...", flush=True)
    train, test = load_splits(data)
    train, val = holdout(train, data.val_size, recipe.train.seed)
    mean, std = (options.mean, options.std) if options.mean and options.std else channel_mean_std(train.images)
    preprocessing = Preprocessing(train.class_names, train.image_size, train.in_channels, mean, std)
    model = model_from_section(
        recipe.model, in_channels=train.in_channels, num_classes=train.num_classes, image_size=train.image_size[0]
    )
    if data.device_data:
        train = train.to(resolve_device(recipe.train.device))
    loader = ImageBatchLoader(train, data.batch_size, seed=recipe.train.seed)
    test_batches = image_eval_batches(test, data.eval_batch_size)
    eval_batches = image_eval_batches(val, data.eval_batch_size) if val is not None else test_batches
    mix = MixUpCutMix(train.num_classes, options.mixup_alpha, options.cutmix_alpha, options.mix_prob,
                      options.mix_switch_prob)
    task = ImageClassificationTask(preprocessing, options.label_smoothing, options.crop_padding, options.hflip, mix)
    prep_path = preprocessing.save(Path(run_dir) / PREPROCESSING_FILE)
    print(
        f"data: {data.dataset} {len(train):,} train / {len(val) if val is not None else 0:,} val / {len(test):,} test "
        f"images {train.in_channels}x{train.image_size[0]}x{train.image_size[1]}, {train.num_classes} classes, "
        f"batch {data.batch_size}; model {recipe.model.get('name')} with "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters"
    )

    def finalize(trainer) -> dict:
        return final_report(trainer, task, test_batches, run_dir, start)

    return RunSetup(model, task, loader, eval_batches, {PREPROCESSING_FILE: prep_path}, finalize)


def final_report(trainer, task: ImageClassificationTask, test_batches, run_dir: Path, start: float) -> dict:
    """Test loss, accuracy and top-5 of the final (and best) weights, the run's wall time and hardware."""
    minutes = (time.perf_counter() - start) / 60.0
    device = trainer.device
    threads = f"CPU ({torch.get_num_threads()} threads)"
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
    precision = trainer.config.precision
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    candidates = {"final": trainer.model}
    best = best_checkpoint(run_dir)
    if best is not None:
        candidates["best"] = from_pretrained(best, device=device)
    results: dict = {"train_minutes": round(minutes, 2), "hardware": hardware}
    for name, model in candidates.items():
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32"):
            metrics = task.evaluate(model, test_batches)
        for key, value in metrics.items():
            results[f"test_{key}_{name}"] = round(value, 4)
        print(f"final: {name:<5} test accuracy {metrics['acc']:.4f}, top-5 {metrics['top5']:.4f}, "
              f"loss {metrics['loss']:.4f} ({sum(len(b['labels']) for b in test_batches):,} images)")
    results["test_acc"] = results["test_acc_final"]
    print(f"final: {minutes:.1f} minutes on {hardware}")
    return results


__all__ = ["ImageClassificationTask", "ImageData", "ImageOptions", "holdout", "load_splits", "normalize_images"]
