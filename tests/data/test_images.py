"""Tests for formers.data.images: idx files, Fashion-MNIST lookup/download/checksums, digits, folders, batching."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from formers.data import images as img
from formers.data.downloads import ChecksumError
from formers.data.images import (
    ImageBatchLoader,
    ImageFolder,
    ImageSplit,
    image_eval_batches,
    load_digits,
    parse_idx,
    read_idx,
    read_image,
)


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.tobytes()


def test_parse_idx_round_trip_and_bad_files(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(images)), images)
    ints = np.array([1, -2, 70000], dtype=">i4")
    assert parse_idx(idx_bytes(ints)).tolist() == [1, -2, 70000]
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(images)))
    assert np.array_equal(read_idx(path), images)
    with pytest.raises(ValueError, match="not an idx file: bad magic"):
        parse_idx(b"\x1f\x8b\x08\x00rest")
    with pytest.raises(ValueError, match=r"holds 39 bytes, its header \(2, 3, 4\) of uint8 implies 40"):
        parse_idx(idx_bytes(images)[:-1], "cut.idx")
    path.write_bytes(gzip.compress(idx_bytes(images))[:-9])
    with pytest.raises(ValueError, match="cannot read idx file .*truncated or corrupt"):
        read_idx(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_idx(tmp_path / "missing.gz")


@pytest.fixture
def fashion_dir() -> Path:
    try:
        return img.fashion_mnist_dir(download_missing=False)
    except FileNotFoundError as e:
        pytest.skip(f"no local Fashion-MNIST copy: {e}")


def test_fashion_mnist_splits_are_the_published_dataset(fashion_dir: Path) -> None:
    test = img.load_fashion_mnist("test", fashion_dir)
    assert test.images.shape == (10_000, 1, 28, 28) and test.images.dtype == torch.uint8
    assert test.class_names[9] == "Ankle boot" and test.num_classes == 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    train = img.load_fashion_mnist("train", fashion_dir)
    assert len(train) == 60_000 and train.labels[:6].tolist() == [9, 0, 0, 3, 0, 2]
    assert abs(train.images.float().mean().item() / 255 - 0.2860) < 1e-3  # the known pixel mean
    with pytest.raises(ValueError, match="split must be one of"):
        img.load_fashion_mnist("val", fashion_dir)


def test_fashion_mnist_rejects_a_tampered_copy(fashion_dir: Path, tmp_path: Path) -> None:
    for train_file, test_file in [img.FASHION_MNIST_FILES["test"], img.FASHION_MNIST_FILES["train"]]:
        for f in (train_file, test_file):
            (tmp_path / f).symlink_to(fashion_dir / f)
    labels = img.FASHION_MNIST_FILES["test"][1]
    data = bytearray(gzip.decompress((fashion_dir / labels).read_bytes()))
    data[-1] = (data[-1] + 1) % 10
    (tmp_path / labels).unlink()
    (tmp_path / labels).write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(ChecksumError, match="not the published Fashion-MNIST file"):
        img.load_fashion_mnist("test", tmp_path)
    assert img.load_fashion_mnist("test", tmp_path, verify=False).labels[-1] == data[-1]


def test_fashion_mnist_downloads_from_the_first_working_mirror(tmp_path: Path, monkeypatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    sums = {}
    for name in [f for pair in img.FASHION_MNIST_FILES.values() for f in pair]:
        (mirror / name).write_bytes(gzip.compress(name.encode()))
        sums[name] = hashlib.sha256((mirror / name).read_bytes()).hexdigest()
    monkeypatch.setattr(img, "FASHION_MNIST_SHA256", sums)
    monkeypatch.setattr(img, "FASHION_MNIST_DEFAULT_DIR", tmp_path / "not-installed")
    urls = ((tmp_path / "dead").as_uri() + "/{file}", mirror.as_uri() + "/{file}")
    monkeypatch.setattr(img, "FASHION_MNIST_URLS", urls)
    monkeypatch.setenv("FORMERS_DATA_DIR", str(tmp_path / "cache"))
    real_lookup = img.resolve_data_dir  # only an explicit data_dir is honoured: no shared/data copy may be found
    monkeypatch.setattr(img, "resolve_data_dir", lambda name, files, data_dir=None: (
        real_lookup(name, files, data_dir) if data_dir is not None else None))
    folder = img.fashion_mnist_dir()
    assert folder == tmp_path / "cache" / "fashion-mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(sums)
    with pytest.raises(FileNotFoundError, match="lacks the fashion-mnist files"):
        img.fashion_mnist_dir(tmp_path / "mirror" / "nowhere")
    # A corrupted mirror file is refused by its checksum and nothing is left under the final name.
    sums = {k: "0" * 64 for k in sums}
    monkeypatch.setattr(img, "FASHION_MNIST_SHA256", sums)
    monkeypatch.setenv("FORMERS_DATA_DIR", str(tmp_path / "cache2"))
    with pytest.raises(ChecksumError):
        img.fashion_mnist_dir()
    assert not any((tmp_path / "cache2" / "fashion-mnist").glob("*.gz"))


def test_digits_split_is_stratified_fixed_and_disjoint() -> None:
    train, test = load_digits("train"), load_digits("test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape[1:] == (1, 8, 8) and int(train.images.max()) == 255
    assert torch.bincount(test.labels).min() >= 35  # every class held out in proportion
    flat_train = {bytes(x) for x in train.images.flatten(1).numpy()}
    overlap = sum(bytes(x) in flat_train for x in test.images.flatten(1).numpy())
    assert overlap <= 2  # the sklearn set holds a couple of duplicate images; the split itself is disjoint
    assert torch.equal(load_digits("test").labels, test.labels)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits("train", test_fraction=1.5)


def write_png(path: Path, size: tuple[int, int], value: int, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_read_image_converts_channels_and_names_unreadable_files(tmp_path: Path) -> None:
    write_png(tmp_path / "rgb.png", (5, 3), 200, mode="RGB")
    x = read_image(tmp_path / "rgb.png", 3)
    assert x.shape == (3, 3, 5) and x.dtype == torch.uint8 and x[:, 0, 0].tolist() == [200, 0, 55]
    assert read_image(tmp_path / "rgb.png", 1).shape == (1, 3, 5)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"cannot read image '.*notes.png'"):
        read_image(tmp_path / "notes.png")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes((tmp_path / "rgb.png").read_bytes()[:40])
    with pytest.raises(ValueError, match="cut.png"):
        read_image(truncated)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="in_channels must be 1"):
        read_image(tmp_path / "rgb.png", 2)


def test_image_folder_reads_one_folder_per_class(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "cat" / "a.png", (10, 12), 10)
    write_png(tmp_path / "train" / "cat" / "b.PNG", (6, 6), 20)
    write_png(tmp_path / "train" / "dog" / "c.png", (8, 8), 30)
    (tmp_path / "train" / "dog" / "readme.txt").write_text("ignored")
    folder = ImageFolder(tmp_path / "train", in_channels=1, image_size=4)
    assert folder.class_names == ["cat", "dog"] and len(folder) == 3
    image, label = folder[2]
    assert image.shape == (1, 4, 4) and label == 1 and int(image[0, 0, 0]) == 30
    split = folder.load_all()
    assert split.images.shape == (3, 1, 4, 4) and split.labels.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="differ in size"):
        ImageFolder(tmp_path / "train", in_channels=1).load_all()
    with pytest.raises(ValueError, match=r"has classes \['cat', 'dog'\], expected \['cat'\]"):
        ImageFolder(tmp_path / "train", class_names=["cat"])
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match="empty' holds no images"):
        ImageFolder(tmp_path / "train")
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="holds no class folders"):
        ImageFolder(tmp_path / "flat")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "absent")


def test_image_split_validates() -> None:
    with pytest.raises(ValueError, match="uint8 tensor of shape"):
        ImageSplit(torch.zeros(2, 1, 4, 4), torch.zeros(2), ["a"])
    with pytest.raises(ValueError, match=r"labels must be a tensor of shape \(2,\)"):
        ImageSplit(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3), ["a"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\)"):
        ImageSplit(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), ["a"])


def test_batch_loader_order_depends_on_seed_and_epoch_only() -> None:
    n = 10
    split = ImageSplit(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1), torch.arange(n) % 3, ["a", "b", "c"])
    loader = ImageBatchLoader(split, batch_size=3, seed=5)
    assert len(loader) == 3
    epoch0 = [b["images"].flatten().tolist() for b in loader]
    assert [len(b) for b in epoch0] == [3, 3, 3] and len(set(sum(epoch0, []))) == 9  # no repeats, last dropped
    assert epoch0 == [b["images"].flatten().tolist() for b in loader]
    loader.set_epoch(1)
    assert epoch0 != [b["images"].flatten().tolist() for b in loader]
    batch = next(iter(loader))
    assert torch.equal(batch["labels"], batch["images"].flatten().long() % 3)
    with pytest.raises(ValueError, match="batch_size must be in"):
        ImageBatchLoader(split, batch_size=11)
    batches = image_eval_batches(split, 4)
    assert [len(b["labels"]) for b in batches] == [4, 4, 2]
    assert torch.cat([b["images"] for b in batches]).flatten().tolist() == list(range(n))
