"""Batched image preprocessing and augmentation on the training device, through torchvision's v2 functional ops.

Every function takes a whole batch ``(B, C, H, W)`` already on its device, so a GPU recipe never waits on a
host-side per-sample pipeline: random crops with padding and horizontal flips draw a separate offset / coin per
image and apply them in one gather; MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) use torchvision's
``v2.MixUp`` / ``v2.CutMix``, which mix a batch with its rolled self and return soft targets. Random draws use
torch's global generator of the batch's device, which the Trainer seeds and checkpoints, so resumed runs repeat them.

:class:`Preprocessing` is what a checkpoint needs to classify new images the way it was trained: class names,
image size, channels and the normalisation mean/std. It is saved as ``preprocessing.json`` beside the weights.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

PREPROCESSING_FILE = "preprocessing.json"


def _torchvision():
    """torchvision's ``v2`` transforms and their functional ops, imported on first use: only image work needs them,
    so a text-only install (``pip install formers``) starts without torchvision."""
    try:
        from torchvision.transforms import v2
        from torchvision.transforms.v2 import functional
    except ImportError as e:
        raise ModuleNotFoundError(f"image transforms need torchvision: pip install 'formers[vision]' ({e})") from e
    return v2, functional


@dataclass
class Preprocessing:
    """How raw uint8 images become model inputs, and what the model's outputs mean.

    Attributes:
        class_names: name of each output class, by index.
        image_size: (H, W) the model takes; other images are resized to it.
        in_channels: 1 (grayscale) or 3 (RGB).
        mean: per-channel mean of the [0, 1]-scaled training pixels, subtracted.
        std: per-channel standard deviation, divided by.
    """

    class_names: list[str]
    image_size: tuple[int, int]
    in_channels: int
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.mean = [float(m) for m in self.mean] or [0.5] * self.in_channels
        self.std = [float(s) for s in self.std] or [0.5] * self.in_channels
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(f"mean and std need one value per channel ({self.in_channels}), "
                             f"got {len(self.mean)} and {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be > 0, got {self.std}")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the JSON file ``path`` (a directory gets ``preprocessing.json`` inside it)."""
        path = Path(path)
        if path.is_dir():
            path = path / PREPROCESSING_FILE
        data = {**asdict(self), "image_size": list(self.image_size)}
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Preprocessing:
        """Reads a file written by :meth:`save` (a directory means its ``preprocessing.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / PREPROCESSING_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: an image-classification checkpoint keeps its class names and normalisation "
                "there (written by `formers train` with an image_classification recipe)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError) as e:
            raise ValueError(f"corrupt {path}: {e}") from None

    def __call__(self, images: Tensor) -> Tensor:
        """(B, C, H, W) uint8 -> (B, C, *image_size) float32, resized when needed and normalised."""
        if images.shape[-2:] != self.image_size:
            images = _torchvision()[1].resize(images, list(self.image_size), antialias=True)
        return normalize_images(images, self.mean, self.std)


def normalize_images(images: Tensor, mean: list[float], std: list[float]) -> Tensor:
    """(B, C, H, W) uint8 pixels -> float32 ``(pixels / 255 - mean) / std`` per channel."""
    TF = _torchvision()[1]
    mean_t, std_t = channel_tensors(tuple(mean), tuple(std), images.device)
    return TF.normalize(TF.to_dtype(images, torch.float32, scale=True), mean_t, std_t)


@functools.lru_cache(maxsize=16)
def channel_tensors(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """``mean`` and ``std`` as float32 tensors on ``device``, made once: a copy from a Python list on every batch
    would make the training step wait for the host (and could not be captured in a CUDA graph)."""
    if not all(std):
        raise ValueError(f"std must be non-zero in every channel, got {list(std)}")
    # non_blocking: from pageable memory the copy is done when it returns, and it never waits on the device (the
    # first call can come inside a CUDA-graph warm-up, which refuses synchronising operations)
    return (torch.tensor(mean, dtype=torch.float32).to(device, non_blocking=True),
            torch.tensor(std, dtype=torch.float32).to(device, non_blocking=True))


def channel_mean_std(images: Tensor, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of (N, C, H, W) uint8 images scaled to [0, 1] (in chunks)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].double().div_(255.0)
        total += x.sum(dim=(0, 2, 3)).cpu()
        squares += x.square().sum(dim=(0, 2, 3)).cpu()
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


def random_crop_flip(images: Tensor, padding: int = 0, flip: bool = False) -> Tensor:
    """Per-image random crops of a zero-padded batch and random horizontal flips (each with probability 1/2).

    Args:
        images: (B, C, H, W), any dtype.
        padding: pixels of zero padding on each side before cropping back to (H, W); 0 turns cropping off.
        flip: mirror a random half of the images left-right.

    Returns:
        (B, C, H, W), the same dtype and device.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    b, c, h, w = images.shape
    device = images.device
    if padding:
        padded = _torchvision()[1].pad(images, [padding, padding, padding, padding])  # (B, C, H + 2p, W + 2p)
        top = torch.randint(0, 2 * padding + 1, (b, 1), device=device)
        left = torch.randint(0, 2 * padding + 1, (b, 1), device=device)
        rows = (top + torch.arange(h, device=device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (left + torch.arange(w, device=device))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(b, device=device)[:, None, None, None]  # (B, 1, 1, 1)
        channel = torch.arange(c, device=device)[None, :, None, None]  # (1, C, 1, 1)
        images = padded[batch, channel, rows, cols]  # (B, C, H, W): one gather for every image's own crop
    if flip:
        mirror = torch.rand(b, device=device) < 0.5
        images = torch.where(mirror[:, None, None, None], _torchvision()[1].horizontal_flip(images), images)
    return images


class MixUpCutMix:
    """Mixes a batch with MixUp or CutMix (torchvision's) and returns soft targets.

    With probability ``prob`` a batch is mixed: by CutMix with probability ``switch_prob`` when both alphas are
    positive (timm's convention), else by whichever is enabled; otherwise targets are the one-hot labels.

    Args:
        num_classes: width of the targets.
        mixup_alpha: Beta(alpha, alpha) parameter of MixUp's mixing weight; 0 disables MixUp.
        cutmix_alpha: the same for CutMix's box area; 0 disables CutMix.
        prob: probability of mixing a batch at all.
        switch_prob: probability of CutMix rather than MixUp when both are enabled.
    """

    def __init__(
        self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0,
        switch_prob: float = 0.5,
    ) -> None:
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (0 = off), got {value}")
        for name, value in (("prob", prob), ("switch_prob", switch_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.num_classes, self.prob, self.switch_prob = num_classes, prob, switch_prob
        v2 = _torchvision()[0] if mixup_alpha > 0 or cutmix_alpha > 0 else None
        self.mixup = v2.MixUp(alpha=mixup_alpha, num_classes=num_classes) if mixup_alpha > 0 else None
        self.cutmix = v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes) if cutmix_alpha > 0 else None

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup is not None or self.cutmix is not None)

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) float images, (B,) int64 labels -> mixed images and (B, num_classes) float targets."""
        if not self.enabled or float(torch.rand(())) >= self.prob:
            return images, F.one_hot(labels, self.num_classes).to(images.dtype)
        use_cutmix = self.mixup is None or (self.cutmix is not None and float(torch.rand(())) < self.switch_prob)
        return (self.cutmix if use_cutmix else self.mixup)(images, labels)


__all__ = [
    "PREPROCESSING_FILE",
    "MixUpCutMix",
    "Preprocessing",
    "channel_mean_std",
    "channel_tensors",
    "normalize_images",
    "random_crop_flip",
]
