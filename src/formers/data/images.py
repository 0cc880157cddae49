"""Image-classification data: Fashion-MNIST (idx files), scikit-learn's digits, and image folders.

Every source becomes an :class:`ImageSplit`: one uint8 tensor ``(N, C, H, W)`` of pixels, int64 labels and the
class names. Small datasets are kept whole in memory (Fashion-MNIST's 60,000 training images are 47 MB) so that
:class:`ImageBatchLoader` can index batches straight out of a tensor on the training device and the task can
augment them there, instead of decoding and collating one sample at a time on the host.

Fashion-MNIST (Xiao et al. 2017, https://github.com/zalandoresearch/fashion-mnist) is read from its four gzipped
idx files, looked up in ``data_dir``, ``$FORMERS_DATA_DIR/fashion-mnist``, a sibling ``shared/data/fashion-mnist``
and Debian's ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``), and only then
downloaded (checked against the upstream files' SHA-256). Debian recompresses the files, so every copy is checked
by the SHA-256 of its *decompressed* idx bytes, which all faithful copies share.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from formers.data.downloads import (
    ChecksumError,
    default_cache_dir,
    download,
    resolve_data_dir,
)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of a loader's epoch: its order (and draws such as flips) are functions of ``(seed, epoch)``
    alone, so a resumed run draws the same batches, and loaders that share it yield the same order."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


@dataclass
class ImageSplit:
    """A labelled image set held in memory.

    Attributes:
        images: (N, C, H, W) uint8 pixels.
        labels: (N,) int64 class indices in ``[0, len(class_names))``.
        class_names: name of each class, by index.
    """

    images: Tensor
    labels: Tensor
    class_names: list[str]

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            is_tensor = isinstance(self.images, Tensor)
            got = f"{self.images.dtype} {tuple(self.images.shape)}" if is_tensor else type(self.images).__name__
            raise ValueError(f"images must be a uint8 tensor of shape (N, C, H, W), got {got}")
        if not isinstance(self.labels, Tensor) or self.labels.shape != (self.images.shape[0],):
            got = tuple(self.labels.shape) if isinstance(self.labels, Tensor) else type(self.labels).__name__
            raise ValueError(f"labels must be a tensor of shape ({self.images.shape[0]},), got {got}")
        self.labels = self.labels.long()
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)):
            raise ValueError(f"labels must lie in [0, {len(self.class_names)}) (one per class name), "
                             f"got [{int(self.labels.min())}, {int(self.labels.max())}]")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, index: Tensor | slice) -> ImageSplit:
        """The images at ``index`` (a slice or an index tensor), with the same class names."""
        return ImageSplit(self.images[index], self.labels[index], list(self.class_names))

    def to(self, device: torch.device | str) -> ImageSplit:
        """The split with images and labels on ``device``."""
        return ImageSplit(self.images.to(device), self.labels.to(device), list(self.class_names))


# ----------------------------------------------------------------------------- idx files


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx_bytes(path: str | os.PathLike[str]) -> bytes:
    """The raw idx bytes of ``path`` (gunzipped when it ends in ``.gz``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"idx file {str(path)!r} does not exist")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"cannot read idx file {path}: {e} (a truncated or corrupt download?)") from None


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decodes the idx format (LeCun's MNIST files): a 4-byte magic, big-endian int32 dimensions, then the values.

    Raises:
        ValueError: bad magic, unknown type code, or a payload whose size does not match the dimensions.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{source} is not an idx file: bad magic number {data[:4].hex() or '(empty)'}")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source} is truncated: {len(data)} bytes, the header alone needs {header}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{source} holds {len(data)} bytes, its header {shape} of {dtype} implies {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an idx file (``.gz`` or plain) into a numpy array of its stored shape."""
    return parse_idx(read_idx_bytes(path), str(path))


# ----------------------------------------------------------------------------- Fashion-MNIST

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_SIZES = {"train": 60_000, "test": 10_000}
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the files."""
FASHION_MNIST_URLS = (
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/{file}",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{file}",
)
# SHA-256 of the upstream gzip files (their MD5s match the dataset README's), used to check downloads.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
# SHA-256 of the decompressed idx bytes: the same for the upstream files and Debian's recompressed copies.
FASHION_MNIST_CONTENT_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


def fashion_mnist_dir(data_dir: str | os.PathLike[str] | None = None, download_missing: bool = True) -> Path:
    """The folder holding the four Fashion-MNIST ``.gz`` files, downloading them when no local copy exists.

    Searched: ``data_dir`` (which then must hold them), ``$FORMERS_DATA_DIR/fashion-mnist``, a sibling
    ``shared/data/fashion-mnist``, then ``/usr/share/datasets/fashion-mnist``; else the files are downloaded into
    ``$FORMERS_DATA_DIR/fashion-mnist`` (or ``~/.cache/formers/fashion-mnist``) and checked against their SHA-256.

    Raises:
        FileNotFoundError: ``data_dir`` lacks a file, or no copy exists and ``download_missing`` is False.
        ConnectionError: no local copy and the download failed.
    """
    files = [f for pair in FASHION_MNIST_FILES.values() for f in pair]
    folder = resolve_data_dir("fashion-mnist", files, data_dir)
    if folder is not None:
        return folder
    if all((FASHION_MNIST_DEFAULT_DIR / f).is_file() for f in files):
        return FASHION_MNIST_DEFAULT_DIR
    folder = default_cache_dir() / "fashion-mnist"
    if not download_missing and not all((folder / f).is_file() for f in files):
        raise FileNotFoundError(
            f"no Fashion-MNIST copy found (looked in $FORMERS_DATA_DIR/fashion-mnist, shared/data/fashion-mnist, "
            f"{FASHION_MNIST_DEFAULT_DIR}); `apt-get install dataset-fashion-mnist` or pass data_dir"
        )
    for file in files:
        errors = []
        for url in FASHION_MNIST_URLS:
            try:
                download(url.format(file=file), folder / file, FASHION_MNIST_SHA256[file])
                break
            except ConnectionError as e:
                errors.append(str(e))
        else:
            raise ConnectionError(f"could not download {file} from any mirror: " + "; ".join(errors))
    return folder


def load_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None, verify: bool = True
) -> ImageSplit:
    """Loads a Fashion-MNIST split: 60,000 ``train`` or 10,000 ``test`` 28x28 grayscale images of 10 classes.

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: folder holding the ``.gz`` idx files (see :func:`fashion_mnist_dir` for the search order).
        verify: check the SHA-256 of the decompressed files (about 0.1 s).

    Returns:
        An :class:`ImageSplit` with images (N, 1, 28, 28) uint8 and labels (N,).

    Raises:
        ValueError: unknown split, or a file that is corrupt or differs from the published dataset.
    """
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(FASHION_MNIST_FILES)}, got {split!r}")
    folder = fashion_mnist_dir(data_dir)
    arrays = []
    for file in FASHION_MNIST_FILES[split]:
        data = read_idx_bytes(folder / file)
        if verify:
            actual = hashlib.sha256(data).hexdigest()
            if actual != FASHION_MNIST_CONTENT_SHA256[file]:
                raise ChecksumError(
                    f"{folder / file} is not the published Fashion-MNIST file: decompressed sha256 {actual}, "
                    f"expected {FASHION_MNIST_CONTENT_SHA256[file]}"
                )
        arrays.append(parse_idx(data, str(folder / file)))
    images, labels = arrays
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise ValueError(f"Fashion-MNIST {split} in {folder}: images {images.shape} do not match labels {labels.shape}")
    pixels = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)
    return ImageSplit(pixels, torch.from_numpy(labels.astype(np.int64)), list(FASHION_MNIST_CLASSES))


# ----------------------------------------------------------------------------- scikit-learn digits

DIGITS_CLASSES = [str(d) for d in range(10)]


def load_digits(split: str = "train", test_fraction: float = 0.2, seed: int = 0) -> ImageSplit:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels) as uint8 images, split train/test.

    The split is stratified by class and fixed by ``seed`` (1,437 train / 360 test with the defaults). Pixels
    0..16 are scaled to 0..255.

    Args:
        split: ``"train"`` or ``"test"``.
        test_fraction: share of each class held out for ``test``, in (0, 1).
        seed: the split's random seed.

    Returns:
        An :class:`ImageSplit` with images (N, 1, 8, 8).
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = sk_load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8) in 0..255
    index = np.arange(len(pixels))
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=bunch.target)
    chosen = np.sort(train_idx if split == "train" else test_idx)
    images = torch.from_numpy(pixels[chosen]).unsqueeze(1)  # (N, 8, 8) -> (N, 1, 8, 8)
    return ImageSplit(images, torch.from_numpy(bunch.target[chosen].astype(np.int64)), list(DIGITS_CLASSES))


# ----------------------------------------------------------------------------- image files and folders

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_MODES = {1: "L", 3: "RGB"}


def read_image(path: str | os.PathLike[str], in_channels: int = 3) -> Tensor:
    """Decodes an image file into (C, H, W) uint8 pixels, converted to grayscale (1) or RGB (3).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an image that Pillow can decode (named in the message), or a bad channel count.
    """
    if in_channels not in _MODES:
        raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"image file {str(path)!r} is a directory; expected an image file (PNG, JPEG, ...)")
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    return _decode(path, in_channels, f"image {str(path)!r}")


def decode_image(data: bytes, in_channels: int = 3, source: str = "the image", max_pixels: int | None = None) -> Tensor:
    """Decodes the bytes of an image file (an upload) into (C, H, W) uint8 pixels, grayscale (1) or RGB (3).

    Args:
        data: the file's bytes, any format Pillow reads.
        in_channels: 1 or 3.
        source: what the bytes are, named in errors.
        max_pixels: refuse images with more pixels than this (read from the header, before decoding).

    Raises:
        ValueError: not an image Pillow can decode, too many pixels, or a bad channel count.
    """
    import io

    if in_channels not in _MODES:
        raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    return _decode(io.BytesIO(data), in_channels, source, max_pixels)


def _decode(file: Any, in_channels: int, source: str, max_pixels: int | None = None) -> Tensor:
    from PIL import Image, UnidentifiedImageError

    size = None
    try:
        with Image.open(file) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                size = (img.width, img.height)  # refused below, before any pixel is decoded
            else:
                array = np.asarray(img.convert(_MODES[in_channels]))
    except UnidentifiedImageError:
        raise ValueError(f"cannot read {source}: not an image format Pillow can decode") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # truncated or corrupt data
        raise ValueError(f"cannot read {source}: {e}") from None
    if size is not None:
        raise ValueError(f"{source} has {size[0]}x{size[1]} pixels, more than the limit of {max_pixels}; "
                         "send a smaller image")
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)  # (H, W, C) -> (C, H, W)


def resize_images(images: Tensor, image_size: int | tuple[int, int]) -> Tensor:
    """Resizes (..., C, H, W) uint8 images to ``image_size`` (bilinear, antialiased; unchanged when already there)."""
    from torchvision.transforms.v2 import functional as TF

    size = [image_size, image_size] if isinstance(image_size, int) else list(image_size)
    if list(images.shape[-2:]) == size:
        return images
    return TF.resize(images, size, antialias=True)


class ImageFolder(torch.utils.data.Dataset):
    """Images stored one folder per class: ``root/<class name>/<image file>``.

    Classes are the sub-folders in sorted order; files with other extensions are ignored.

    Args:
        root: the folder of class folders.
        in_channels: 1 (grayscale) or 3 (RGB): every image is converted to it.
        image_size: resize every image to this (int or (H, W)); ``None`` keeps each file's size.
        class_names: expected classes (e.g. the training folder's, for a test folder); ``None`` reads them.

    Raises:
        FileNotFoundError: ``root`` is missing.
        ValueError: no class folders, a class folder without images, or classes differing from ``class_names``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        in_channels: int = 3,
        image_size: int | tuple[int, int] | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {str(self.root)!r} does not exist")
        if in_channels not in _MODES:
            raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise ValueError(f"image folder {str(self.root)!r} holds no class folders (expected root/<class>/<image>)")
        if class_names is not None and found != list(class_names):
            raise ValueError(f"image folder {str(self.root)!r} has classes {found}, expected {list(class_names)}")
        self.class_names = found
        self.in_channels = in_channels
        self.image_size = image_size
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(found):
            folder = self.root / name
            files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ValueError(f"class folder {str(folder)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            self.samples += [(f, label) for f in files]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        """(C, H, W) uint8 pixels and the class index of sample ``index``."""
        path, label = self.samples[index]
        image = read_image(path, self.in_channels)
        if self.image_size is not None:
            image = resize_images(image, self.image_size)
        return image, label

    def load_all(self) -> ImageSplit:
        """Decodes every image into one in-memory :class:`ImageSplit` (needs ``image_size`` or equal sizes)."""
        images, labels = zip(*(self[i] for i in range(len(self))), strict=True)
        sizes = sorted({tuple(im.shape) for im in images})
        if len(sizes) > 1:
            raise ValueError(f"images in {str(self.root)!r} differ in size {sizes[:4]}; set image_size to resize them")
        return ImageSplit(torch.stack(images), torch.tensor(labels, dtype=torch.int64), list(self.class_names))


# ----------------------------------------------------------------------------- batching


class ImageBatchLoader:
    """Shuffled batches of ``{"images": (B, C, H, W) uint8, "labels": (B,) int64}`` indexed out of a split.

    Put the split on the training device first (``split.to("cuda")``): each batch is then one gather on the device,
    with no host work beyond a per-epoch permutation. The order is a function of ``(seed, epoch)``, so resumed runs
    repeat it; the last partial batch is dropped (steady batch statistics and shapes).

    Args:
        split: the training images.
        batch_size: images per batch (at most ``len(split)``).
        seed: shuffling seed.
    """

    def __init__(self, split: ImageSplit, batch_size: int, seed: int = 0) -> None:
        if not 1 <= batch_size <= len(split):
            raise ValueError(f"batch_size must be in [1, {len(split)}] (the split's size), got {batch_size}")
        self.split, self.batch_size, self.seed, self.epoch = split, batch_size, seed, 0
        # every batch has one shape: the Trainer may replay the step as a CUDA graph (``train.cuda_graphs``)
        self.static_shapes = True

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.split) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        generator = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(len(self.split), generator=generator).to(self.split.images.device)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield {"images": self.split.images[index], "labels": self.split.labels[index]}


def image_eval_batches(split: ImageSplit, batch_size: int) -> list[dict[str, Tensor]]:
    """Every image of ``split`` in order, in batches of ``batch_size`` (the last may be smaller)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [
        {"images": split.images[i : i + batch_size], "labels": split.labels[i : i + batch_size]}
        for i in range(0, len(split), batch_size)
    ]


__all__ = [
    "DIGITS_CLASSES",
    "FASHION_MNIST_CLASSES",
    "ImageBatchLoader",
    "ImageFolder",
    "ImageSplit",
    "fashion_mnist_dir",
    "image_eval_batches",
    "load_digits",
    "load_fashion_mnist",
    "parse_idx",
    "read_idx",
    "read_image",
    "resize_images",
]
