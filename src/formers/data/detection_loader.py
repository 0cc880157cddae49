"""Detection batches: tiling of large images, box-aware augmentation, padding collation and the epoch loader.

Augmentation is torchvision's (``transforms.v2`` on ``tv_tensors.Image`` + ``tv_tensors.BoundingBoxes``), so boxes
follow every flip, resize and crop without hand-written box arithmetic. The training pipeline is DETR's
(facebookresearch/detr ``make_coco_transforms``): horizontal flip, then either a multi-scale resize of the shorter
side (longer side at most ``max_size``) or a resize, a random crop and the multi-scale resize; boxes are clamped to
the image and those a crop left (nearly) empty are dropped with their labels. Evaluation resizes deterministically.

Batches pad images at the bottom/right to the largest in the batch (or to a fixed ``pad_to``) and carry a pixel mask;
boxes are normalised (cx, cy, w, h) relative to each image's own size (see :mod:`formers.tasks.detection`). An
evaluation loader pads every batch to the same size, so an image's predictions, and the AP, do not depend on the
batch it falls in.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from formers.data.detection import DetectionDataset, DetectionImage
from formers.data.image_transforms import channel_tensors
from formers.data.images import epoch_generator
from formers.layers.boxes import box_area, box_xyxy_to_cxcywh

Transform = Callable[[dict[str, Any]], dict[str, Any]]
PREPROCESSING_FILE = "preprocessing.json"


@dataclass
class DetectionPreprocessing:
    """What a detection checkpoint needs to detect in new images as it was evaluated; saved as
    ``preprocessing.json`` beside the weights.

    Attributes:
        class_names: name of each label.
        category_ids: COCO category id of each label.
        mean: per-channel mean of the [0, 1]-scaled training pixels.
        std: per-channel standard deviation.
        size: shorter side images are resized to (None: kept as they are).
        max_size: longest side after the resize.
    """

    class_names: list[str]
    category_ids: list[int]
    mean: list[float]
    std: list[float]
    size: int | None = 800
    max_size: int = 1333

    def __post_init__(self) -> None:
        if len(self.category_ids) != len(self.class_names):
            raise ValueError(f"{len(self.class_names)} class names but {len(self.category_ids)} category ids")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values (RGB) and std > 0, got {self.mean} and {self.std}")

    def transform(self) -> Transform:
        """The evaluation resize."""
        return eval_transform(self.size, self.max_size)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Writes ``preprocessing.json`` into ``directory``."""
        path = Path(directory) / PREPROCESSING_FILE
        path.write_text(json.dumps({"task": "detection", **asdict(self)}, indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DetectionPreprocessing:
        """Reads ``preprocessing.json`` from a checkpoint directory."""
        path = Path(directory) / PREPROCESSING_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: a detection checkpoint needs the preprocessing.json its "
                                    "recipe writes (class names, normalisation, resize)")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.pop("task", None) != "detection":
            raise ValueError(f"{path} does not describe a detection model (no \"task\": \"detection\")")
        return cls(**data)


# ----------------------------------------------------------------------------- transforms


class RandomSizeCrop:
    """A random crop whose height and width are drawn uniformly in [min_size, min(max_size, side)] (DETR's)."""

    def __init__(self, min_size: int, max_size: int) -> None:
        if not 0 < min_size <= max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {min_size} and {max_size}")
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        from torchvision.transforms import v2

        height, width = v2.functional.get_size(sample["image"])
        size = [int(torch.randint(min(self.min_size, side), min(self.max_size, side) + 1, ()).item())
                for side in (height, width)]
        return v2.RandomCrop(size)(sample)


def train_transform(
    scales: Sequence[int] | None = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800),
    max_size: int = 1333,
    crop: tuple[int, int] | None = (384, 600),
    crop_scales: Sequence[int] = (400, 500, 600),
    hflip: bool = True,
) -> Transform:
    """DETR's training augmentation (defaults: the paper's COCO pipeline).

    Args:
        scales: shorter-side sizes drawn from for the resize; ``None`` keeps the image size (no resize, no crop).
        max_size: longest side after a resize.
        crop: ``(min, max)`` side of the random crop taken half of the time (between two resizes); ``None``: no crop.
        crop_scales: shorter-side sizes of the resize before the crop.
        hflip: random horizontal flips.
    """
    from torchvision.transforms import v2

    steps: list[Callable] = [v2.RandomHorizontalFlip()] if hflip else []
    if scales is not None:
        resize = v2.RandomShortestSize(min_size=list(scales), max_size=max_size)
        if crop is not None:
            cropped = v2.Compose([v2.RandomShortestSize(min_size=list(crop_scales)), RandomSizeCrop(*crop), resize])
            steps.append(v2.RandomChoice([resize, cropped]))
        else:
            steps.append(resize)
    # Resizing can leave a coordinate a rounding error past the border, which SanitizeBoundingBoxes would take for
    # an invalid box: clamp first.
    steps += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1)]
    return v2.Compose(steps)


def eval_transform(size: int | None = 800, max_size: int = 1333) -> Transform:
    """Deterministic resize of the shorter side to ``size`` (longer side at most ``max_size``); ``None``: none."""
    from torchvision.transforms import v2

    if size is None:
        return v2.Identity()
    return v2.Compose([v2.Resize(size, max_size=max_size), v2.ClampBoundingBoxes()])


def output_size(transform: Transform, height: int, width: int) -> tuple[int, int]:
    """(height, width) a deterministic transform gives an image of this size (probed with an empty box set)."""
    from torchvision import tv_tensors

    boxes = tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(height, width))
    out = transform(boxes)
    return tuple(out.canvas_size)


# ----------------------------------------------------------------------------- samples and collation


class DetectionSamples(torch.utils.data.Dataset):
    """Decoded, transformed samples of a :class:`DetectionDataset`.

    Each sample is a dict: ``image`` (3, h, w) uint8, ``boxes`` (n, 4) corners in the transformed image's pixels,
    ``labels`` (n,), ``image_id`` and ``orig_size`` (height, width) of the annotated image.

    Args:
        dataset: the images.
        transform: a ``transforms.v2`` pipeline (or None).
        train: leave crowd boxes out (they only matter to evaluation).
    """

    def __init__(self, dataset: DetectionDataset, transform: Transform | None = None, train: bool = True) -> None:
        self.dataset, self.transform, self.train = dataset, transform, train

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """The sample at ``key``: an index, or ``(index, seed)`` to draw its augmentation from a generator seeded with
        ``seed`` (the same sample in any worker process, or in none)."""
        if isinstance(key, tuple):
            index, seed = key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self._sample(index)
        return self._sample(key)

    def _sample(self, index: int) -> dict[str, Any]:
        from torchvision import tv_tensors

        item: DetectionImage = self.dataset[index]
        keep = ~item.iscrowd if self.train else torch.ones_like(item.iscrowd)
        sample = {
            "image": tv_tensors.Image(item.load()),
            "boxes": tv_tensors.BoundingBoxes(item.boxes[keep], format="XYXY", canvas_size=(item.height, item.width)),
            "labels": item.labels[keep],
        }
        if self.transform is not None:
            sample = self.transform(sample)
        return {"image": sample["image"].as_subclass(Tensor), "boxes": sample["boxes"].as_subclass(Tensor).float(),
                "labels": sample["labels"], "image_id": item.image_id, "orig_size": (item.height, item.width)}


def collate_detection(samples: list[dict[str, Any]], pad_to: tuple[int, int] | None = None,
                      pad_multiple: int = 1) -> dict[str, Any]:
    """Pads images at the bottom/right into one batch with a pixel mask; concatenates normalised boxes.

    Args:
        samples: dicts from :class:`DetectionSamples`.
        pad_to: (H, W) to pad every batch to (at least each image's size); default: the batch's largest sides, rounded
            up to multiples of ``pad_multiple``.
        pad_multiple: see ``pad_to``. Multi-scale training makes a new batch shape at nearly every step, and CUDA
            sets up convolutions per shape on the host, so a coarse multiple (64) keeps the shapes few; the mask
            makes the result independent of it.

    Returns:
        The batch dict described in :mod:`formers.tasks.detection`.
    """
    sizes = [tuple(s["image"].shape[-2:]) for s in samples]
    if pad_to is None:
        height, width = (-(-max(side) // pad_multiple) * pad_multiple for side in zip(*sizes))
    else:
        height, width = pad_to
    if any(h > height or w > width for h, w in sizes):
        raise ValueError(f"pad_to={pad_to} is smaller than an image of the batch ({max(sizes)})")
    channels = samples[0]["image"].shape[0]
    images = torch.zeros(len(samples), channels, height, width, dtype=torch.uint8)
    mask = torch.zeros(len(samples), height, width, dtype=torch.bool)
    boxes = []
    for i, (sample, (h, w)) in enumerate(zip(samples, sizes)):
        images[i, :, :h, :w] = sample["image"]
        mask[i, :h, :w] = True
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        boxes.append(box_xyxy_to_cxcywh(sample["boxes"].reshape(-1, 4)) / scale)  # (n, 4) normalised
    sizes = [int(s["labels"].numel()) for s in samples]
    labels, boxes = pad_targets(torch.cat([s["labels"].reshape(-1) for s in samples]).long(), torch.cat(boxes).float(),
                                sizes)
    return {
        "images": images,
        "padding_mask": mask,
        "labels": labels,
        "boxes": boxes,
        "sizes": sizes,
        "image_ids": [int(s["image_id"]) for s in samples],
        "orig_sizes": [tuple(s["orig_size"]) for s in samples],
    }


PAD_LABEL = -1
"""Label of the padding slots of :func:`pad_targets`."""
PAD_BOX = (0.5, 0.5, 1.0, 1.0)
"""Box of the padding slots: the whole image, so that every IoU and its gradient stay finite."""


def pad_targets(labels: Tensor, boxes: Tensor, sizes: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The boxes of a batch, concatenated image after image, as one row per image padded to the most boxes.

    Args:
        labels: (T,) classes of all images' boxes.
        boxes: (T, 4) their normalised (cx, cy, w, h).
        sizes: boxes per image (B host ints summing to T).

    Returns:
        ``(labels, boxes)``: (B, M) with :data:`PAD_LABEL` after each image's boxes, and (B, M, 4) with
        :data:`PAD_BOX` there; M is the largest of ``sizes``. Only host integers decide the layout (no device read).
    """
    if any(n < 0 for n in sizes) or sum(sizes) != labels.shape[0] or boxes.shape != (labels.shape[0], 4):
        raise ValueError(f"sizes {list(sizes)} must give the box count of each image, summing to the "
                         f"{labels.shape[0]} labels, with boxes (T, 4); got boxes {tuple(boxes.shape)}")
    width = max(sizes, default=0)
    slots = [b * width + j for b, n in enumerate(sizes) for j in range(n)]  # the row slot of each box, in order
    index = torch.tensor(slots, dtype=torch.long).to(labels.device, non_blocking=True)
    out_labels = labels.new_full((len(sizes) * width,), PAD_LABEL)
    out_boxes = boxes.new_tensor(PAD_BOX).repeat(len(sizes) * width, 1)
    out_labels[index] = labels
    out_boxes[index] = boxes
    return out_labels.view(len(sizes), width), out_boxes.view(len(sizes), width, 4)


def normalize_padded(images: Tensor, padding_mask: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(B, C, H, W) uint8 -> normalised float pixels, zero on the padding (DETR pads normalised images with 0).

    Args:
        images: (B, C, H, W) uint8, on any device.
        padding_mask: (B, H, W) bool, True = real pixel.
        mean: per-channel mean of [0, 1] pixels.
        std: per-channel standard deviation.
    """
    m, s = channel_tensors(tuple(mean), tuple(std), images.device)  # made once per device: no copy per batch
    m, s = m.view(1, -1, 1, 1), s.view(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)
    return (images.float() / 255.0 - m) / s * padding_mask[:, None]  # mask (B, H, W) -> (B, 1, H, W)


class DetectionLoader:
    """Batches of a :class:`DetectionDataset` for training (shuffled, augmented) or evaluation (in order).

    The order and every sample's augmentation are functions of ``(seed, epoch)``; ``coco`` holds the ground truth of
    the dataset in COCO format (what :meth:`formers.tasks.detection.DetectionTask.evaluate` scores against).

    Args:
        dataset: the images.
        batch_size: images per batch.
        transform: ``transforms.v2`` pipeline (:func:`train_transform` / :func:`eval_transform`) or None.
        train: shuffle, drop the last partial batch and crowd boxes; else keep order and every image, and pad every
            batch to the same size (deterministic ``transform`` needed).
        seed: seed of the order and of each sample's augmentation.
        num_workers: ``DataLoader`` worker processes decoding and augmenting images, started once and kept across
            epochs; the batches are the same whatever their number.
        pad_multiple: training batches are padded to multiples of this (see :func:`collate_detection`).
        static_shapes: the caller's word that every batch has the same image size (the images are all one size and
            ``transform`` keeps it: flips only), so the Trainer may replay the steps from CUDA graphs
            (:mod:`formers.training.step_graphs`; the box rows vary only with the most boxes of an image).
    """

    def __init__(self, dataset: DetectionDataset, batch_size: int, transform: Transform | None = None,
                 train: bool = True, seed: int = 0, num_workers: int = 0, pad_multiple: int = 1,
                 static_shapes: bool = False) -> None:
        if batch_size < 1 or (train and batch_size > len(dataset)):
            raise ValueError(f"batch_size must be in [1, {len(dataset)}] (the dataset's size), got {batch_size}")
        self.dataset, self.batch_size, self.train = dataset, batch_size, train
        self.samples = DetectionSamples(dataset, transform, train=train)
        if pad_multiple < 1:
            raise ValueError(f"pad_multiple must be >= 1, got {pad_multiple}")
        self.seed, self.epoch, self.num_workers, self.pad_multiple = seed, 0, num_workers, pad_multiple
        self.static_shapes = static_shapes
        self._loader: torch.utils.data.DataLoader | None = None
        self.coco = dataset.to_coco()
        self.pad_to: tuple[int, int] | None = None
        if not train:
            out = [output_size(transform, im.height, im.width) if transform is not None else (im.height, im.width)
                   for im in dataset.images]
            self.pad_to = (max(h for h, _ in out), max(w for _, w in out))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def batches(self) -> list[list[tuple[int, int]]]:
        """This epoch's batches of ``(index, seed)`` keys: the order and each sample's augmentation seed are functions
        of ``(seed, epoch)`` (training: shuffled, the last partial batch dropped; evaluation: in order)."""
        generator = epoch_generator(self.seed, self.epoch)
        n = len(self.dataset)
        order = torch.randperm(n, generator=generator).tolist() if self.train else list(range(n))
        seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
        keys = [(i, seed) for i, seed in zip(order, seeds)]
        batches = [keys[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.train and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._loader is None:  # built once: worker processes live across epochs (an epoch of a small set is a
            # few batches, and starting workers every epoch cost more than the steps)
            self._loader = torch.utils.data.DataLoader(
                self.samples, batch_sampler=_EpochBatches(self), num_workers=self.num_workers,
                collate_fn=partial(collate_detection, pad_to=self.pad_to, pad_multiple=self.pad_multiple),
                persistent_workers=self.num_workers > 0,
            )
        yield from self._loader


class HeldDetectionLoader:
    """Training batches of same-size images held as one tensor on a device, flipped there: no workers, no decoding
    and no host-to-device copy per step, for sets that fit in memory (``fashion-detect``: 20,000 canvases of 64x64,
    245 MB). The batches are :func:`collate_detection`'s (padded targets, every pixel real); the order and each
    image's horizontal flip are functions of ``(seed, epoch)``, as in :class:`DetectionLoader`, whose ``train=True``
    batches with a flip-only transform these equal in distribution (crowd boxes dropped, the last partial batch
    too). Every batch has the same shapes (boxes padded to the set's most per image), so the Trainer replays its steps
    from one CUDA graph (``static_shapes``).

    Args:
        dataset: the images, all of one size.
        batch_size: images per batch.
        hflip: flip each image (and its boxes) left-right with probability 0.5.
        seed: seed of the order and of the flips.
        device: where the images and boxes are held and the batches made.
    """

    static_shapes = True

    def __init__(self, dataset: DetectionDataset, batch_size: int, hflip: bool = True, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        if batch_size < 1 or batch_size > len(dataset):
            raise ValueError(f"batch_size must be in [1, {len(dataset)}] (the dataset's size), got {batch_size}")
        shapes = sorted({(im.height, im.width) for im in dataset.images})
        if len(shapes) != 1:
            raise ValueError(f"HeldDetectionLoader needs images of one size, got {len(shapes)} sizes ({shapes[:3]}...)")
        self.dataset, self.batch_size, self.hflip, self.seed, self.epoch = dataset, batch_size, hflip, seed, 0
        self.coco = dataset.to_coco()
        height, width = shapes[0]
        keep = [~im.iscrowd for im in dataset.images]
        self.sizes = [int(k.sum()) for k in keep]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        labels, boxes = pad_targets(torch.cat([im.labels[k] for im, k in zip(dataset.images, keep)]).long(),
                                    torch.cat([box_xyxy_to_cxcywh(im.boxes[k].reshape(-1, 4)) / scale
                                               for im, k in zip(dataset.images, keep)]).float(), self.sizes)
        device = torch.device(device)
        self.images = torch.stack([im.load() for im in dataset.images]).to(device)  # (N, C, H, W) uint8
        self.labels, self.boxes = labels.to(device), boxes.to(device)  # (N, M), (N, M, 4)
        self.padding_mask = torch.ones(batch_size, height, width, dtype=torch.bool, device=device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        generator = epoch_generator(self.seed, self.epoch)
        n, device = len(self.dataset), self.images.device
        order = torch.randperm(n, generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5 if self.hflip else torch.zeros(n, dtype=torch.bool)
        # the epoch's order and each image's flip, copied to the device once: no host-to-device copy per batch
        order_on, flips_on = order.to(device), flips[order].to(device)  # (N,), (N,) in batch order
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            rows, index = order[start : start + self.batch_size], order_on[start : start + self.batch_size]
            flip = flips_on[start : start + self.batch_size]  # (B,)
            images = self.images[index]
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            boxes = self.boxes[index]  # (B, M, 4) (cx, cy, w, h): a flip maps cx to 1 - cx (padding: cx = 0.5)
            centre_x = torch.where(flip[:, None], 1 - boxes[..., 0], boxes[..., 0])  # (B, M)
            boxes = torch.cat([centre_x[..., None], boxes[..., 1:]], dim=-1)
            picked = rows.tolist()
            images_of = self.dataset.images
            yield {"images": images, "padding_mask": self.padding_mask, "labels": self.labels[index], "boxes": boxes,
                   "sizes": [self.sizes[i] for i in picked], "image_ids": [images_of[i].image_id for i in picked],
                   "orig_sizes": [(images_of[i].height, images_of[i].width) for i in picked]}


class _EpochBatches:
    """The batch sampler of a :class:`DetectionLoader`: the loader's current epoch's batches, drawn when iterated."""

    def __init__(self, loader: DetectionLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.loader.batches())

    def __len__(self) -> int:
        return len(self.loader)


# ----------------------------------------------------------------------------- tiling


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]  # the last tile ends at the border


def tile_dataset(dataset: DetectionDataset, tile_size: int, overlap: float = 0.05,
                 min_visibility: float = 0.5) -> DetectionDataset:
    """Cuts images larger than ``tile_size`` into overlapping square tiles held in memory (smaller images are kept).

    A box cut by a tile border keeps its visible part when at least ``min_visibility`` of its area is inside the
    tile; the others are left out of that tile (they appear whole, or mostly, in a neighbouring one). How many were
    cut and left out goes into the report. Tiles get new image ids 1.. in order.

    Args:
        dataset: the images.
        tile_size: tile side in pixels.
        overlap: fraction of a tile shared with its neighbour, in [0, 1).
        min_visibility: fraction of a box's area that must lie in a tile for the tile to keep it.
    """
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    if tile_size < 1 or not 0.0 <= overlap < 1.0 or not 0.0 < min_visibility <= 1.0:
        raise ValueError(f"need tile_size >= 1, 0 <= overlap < 1, 0 < min_visibility <= 1; got {tile_size}, "
                         f"{overlap}, {min_visibility}")
    stride = max(1, int(round(tile_size * (1 - overlap))))
    tiles: list[DetectionImage] = []
    cut = left_out = 0
    for image in dataset.images:
        if image.width <= tile_size and image.height <= tile_size:
            tiles.append(DetectionImage(len(tiles) + 1, image.width, image.height, image.boxes, image.labels,
                                        image.iscrowd, image.area, image.path, image.pixels))
            continue
        pixels = image.load()
        boxes = tv_tensors.BoundingBoxes(image.boxes, format="XYXY", canvas_size=(image.height, image.width))
        for top in _tile_starts(image.height, tile_size, stride):
            for left in _tile_starts(image.width, tile_size, stride):
                h, w = min(tile_size, image.height), min(tile_size, image.width)
                crop = TF.clamp_bounding_boxes(TF.crop(boxes, top, left, h, w)).as_subclass(Tensor)  # (N, 4)
                visible = box_area(crop) / box_area(image.boxes).clamp(min=1e-9)  # (N,)
                inside = visible > 0
                keep = visible >= min_visibility
                cut += int((inside & (visible < 1 - 1e-6)).sum())
                left_out += int((inside & ~keep).sum())
                tiles.append(DetectionImage(
                    len(tiles) + 1, w, h, crop[keep].contiguous(), image.labels[keep], image.iscrowd[keep],
                    box_area(crop[keep]), None, pixels[:, top : top + h, left : left + w].clone(),
                ))
    out = DetectionDataset(tiles, list(dataset.class_names), list(dataset.category_ids), list(dataset.report))
    out.report.append(f"tiling {len(dataset)} image(s) into {len(tiles)} tile(s) of {tile_size}px (overlap "
                      f"{overlap}): {cut} box crossing(s) of tile borders, {left_out} of them left out of a tile "
                      f"(under {min_visibility:.0%} visible)")
    return out


__all__ = ["PAD_BOX", "PAD_LABEL", "PREPROCESSING_FILE", "DetectionLoader", "DetectionPreprocessing",
           "DetectionSamples", "HeldDetectionLoader", "RandomSizeCrop", "collate_detection", "eval_transform",
           "normalize_padded", "output_size", "pad_targets", "tile_dataset", "train_transform"]
