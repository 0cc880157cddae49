"""Detection batches: box-aware augmentation, padding collation, evaluation padding, tiling and fashion-detect."""

from __future__ import annotations

import hashlib

import pytest
import torch

pytest.importorskip("torchvision")

from torchvision import tv_tensors  # noqa: E402

from formers.data.detection import DetectionDataset, DetectionImage  # noqa: E402
from formers.data.detection_loader import (  # noqa: E402
    PAD_BOX,
    PAD_LABEL,
    DetectionLoader,
    DetectionSamples,
    HeldDetectionLoader,
    collate_detection,
    eval_transform,
    pad_targets,
    tile_dataset,
    train_transform,
)
from formers.layers.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh  # noqa: E402


def _image(image_id: int, width: int, height: int, boxes: list[list[float]], labels: list[int]) -> DetectionImage:
    """An image black everywhere but inside its boxes (white), so that any transform can be checked on pixels."""
    pixels = torch.zeros(3, height, width, dtype=torch.uint8)
    for x0, y0, x1, y1 in boxes:
        pixels[:, int(y0) : int(y1), int(x0) : int(x1)] = 255
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return DetectionImage(image_id, width, height, b, torch.tensor(labels), torch.zeros(len(labels), dtype=torch.bool),
                          (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), None, pixels)


def _dataset() -> DetectionDataset:
    return DetectionDataset([
        _image(1, 120, 80, [[10, 10, 50, 40], [70, 30, 110, 70]], [0, 1]),
        _image(2, 64, 96, [[8, 16, 40, 80]], [1]),
        _image(3, 100, 100, [], []),
    ], ["a", "b"])


def test_augmented_boxes_still_frame_their_objects():
    transform = train_transform(scales=[48, 64, 80], max_size=120, crop=(30, 60), crop_scales=[60, 70])
    samples = DetectionSamples(_dataset(), transform)
    torch.manual_seed(0)
    seen_sizes = set()
    for _ in range(30):
        for i in range(2):
            s = samples[i]
            image, boxes = s["image"], s["boxes"]
            seen_sizes.add(tuple(image.shape[1:]))
            assert boxes.shape[0] == s["labels"].shape[0] and max(image.shape[1:]) <= 120
            inside = torch.zeros(image.shape[1:], dtype=torch.bool)
            for x0, y0, x1, y1 in boxes.tolist():
                assert x1 > x0 and y1 > y0  # degenerate boxes are sanitised away
                inside[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1] = True
            bright = image[0] > 127
            # Boxes cover the bright pixels and little else (resampling blurs edges by a pixel or two).
            assert (bright & ~inside).float().mean() < 0.03
            if boxes.shape[0]:
                assert bright[inside].float().mean() > 0.8
    assert len(seen_sizes) > 3  # multi-scale resizing and crops happened


def test_padded_targets_keep_each_image_s_boxes_in_order_and_refuse_wrong_sizes():
    labels = torch.tensor([4, 5, 6, 7])
    boxes = torch.arange(16, dtype=torch.float32).view(4, 4) / 16
    padded_labels, padded_boxes = pad_targets(labels, boxes, [1, 0, 3])
    assert padded_labels.tolist() == [[4, PAD_LABEL, PAD_LABEL], [PAD_LABEL] * 3, [5, 6, 7]]
    assert torch.equal(padded_boxes[padded_labels >= 0], boxes)
    assert torch.equal(padded_boxes[padded_labels < 0], torch.tensor(PAD_BOX).expand(5, 4))
    assert pad_targets(labels[:0], boxes[:0], [0, 0])[0].shape == (2, 0)
    with pytest.raises(ValueError, match=r"sizes \[1, 1\] must give the box count of each image, summing to the 4"):
        pad_targets(labels, boxes, [1, 1])


def _one_size_dataset(n: int = 12) -> DetectionDataset:
    g = torch.Generator().manual_seed(0)
    images = []
    for i in range(n):
        count = int(torch.randint(0, 3, (), generator=g))
        corners = torch.randint(0, 30, (count, 2), generator=g)
        boxes = torch.cat([corners, corners + torch.randint(4, 30, (count, 2), generator=g)], 1).float().tolist()
        images.append(_image(i + 1, 64, 48, boxes, torch.randint(0, 2, (count,), generator=g).tolist()))
        images[-1].pixels[0, :, : 3 + i] = 77  # a left-right asymmetric mark, so that a flip shows
    return DetectionDataset(images, ["a", "b"])


def test_held_batches_are_the_loader_s_batches_and_flip_on_the_device_as_torchvision_does():
    from torchvision.transforms.v2 import functional as TF

    dataset = _one_size_dataset()
    plain = DetectionLoader(dataset, 4, None, seed=3)
    held = HeldDetectionLoader(dataset, 4, hflip=False, seed=3)
    assert held.static_shapes and len(held) == len(plain) == 3
    for epoch in (0, 1):
        plain.set_epoch(epoch), held.set_epoch(epoch)
        for ours, theirs in zip(held, plain, strict=True):
            width = theirs["labels"].shape[1]
            assert torch.equal(ours["images"], theirs["images"]) and ours["padding_mask"].all()
            assert ours["sizes"] == theirs["sizes"] and ours["image_ids"] == theirs["image_ids"]
            assert torch.equal(ours["labels"][:, :width], theirs["labels"]) and (ours["labels"][:, width:] < 0).all()
            torch.testing.assert_close(ours["boxes"][:, :width], theirs["boxes"])

    flipping = HeldDetectionLoader(dataset, 4, hflip=True, seed=3)  # epoch 0: the same order as held's
    held.set_epoch(0)
    flipped = 0
    for ours, theirs in zip(flipping, held, strict=True):
        for image, row, labels, n, original, boxes in zip(ours["images"], ours["boxes"], ours["labels"],
                                                          ours["sizes"], theirs["images"], theirs["boxes"]):
            if torch.equal(image, original):
                assert torch.equal(row, boxes)
                continue
            flipped += 1
            assert torch.equal(image, TF.horizontal_flip(original))
            corners = tv_tensors.BoundingBoxes(box_cxcywh_to_xyxy(boxes[:n]) * torch.tensor([64, 48, 64, 48]),
                                               format="XYXY", canvas_size=(48, 64))
            expected = box_xyxy_to_cxcywh(TF.horizontal_flip(corners).as_subclass(torch.Tensor)) / torch.tensor(
                [64, 48, 64, 48])
            torch.testing.assert_close(row[:n], expected)
            torch.testing.assert_close(row[n:], torch.tensor(PAD_BOX).expand(row.shape[0] - n, 4))
    assert 0 < flipped < 12
    with pytest.raises(ValueError, match="images of one size"):
        HeldDetectionLoader(_dataset(), 2)


def test_collation_pads_with_a_mask_and_normalises_boxes():
    samples = DetectionSamples(_dataset(), None)
    batch = collate_detection([samples[0], samples[1], samples[2]])
    assert batch["images"].shape == (3, 3, 100, 120) and batch["images"].dtype == torch.uint8
    assert batch["padding_mask"][1, :96, :64].all() and not batch["padding_mask"][1, :, 64:].any()
    assert batch["sizes"] == [2, 1, 0] and batch["image_ids"] == [1, 2, 3]
    assert batch["labels"].tolist() == [[0, 1], [1, -1], [-1, -1]]  # one row per image, padded with -1
    torch.testing.assert_close(batch["boxes"][0, 0], torch.tensor([30 / 120, 25 / 80, 40 / 120, 30 / 80]))
    torch.testing.assert_close(batch["boxes"][1, 0], torch.tensor([24 / 64, 48 / 96, 32 / 64, 64 / 96]))
    torch.testing.assert_close(batch["boxes"][1, 1], torch.tensor(PAD_BOX))  # padding: the whole image
    assert batch["boxes"].shape == (3, 2, 4)
    assert batch["orig_sizes"] == [(80, 120), (96, 64), (100, 100)]
    assert collate_detection([samples[1]], pad_to=(100, 128))["images"].shape == (1, 3, 100, 128)
    with pytest.raises(ValueError, match="smaller than an image"):
        collate_detection([samples[0]], pad_to=(50, 50))
    coarse = collate_detection([samples[0], samples[1], samples[2]], pad_multiple=64)  # (100, 120) -> (128, 128)
    assert coarse["images"].shape == (3, 3, 128, 128)
    assert torch.equal(coarse["padding_mask"][:, :100, :120], batch["padding_mask"])
    assert not coarse["padding_mask"][:, 100:].any() and not coarse["padding_mask"][:, :, 120:].any()
    assert torch.equal(coarse["images"][:, :, :100, :120], batch["images"]) and torch.equal(coarse["boxes"], batch["boxes"])
    with pytest.raises(ValueError, match="pad_multiple must be >= 1, got 0"):
        DetectionLoader(_dataset(), 1, pad_multiple=0)


def test_eval_loader_pads_every_batch_alike_and_keeps_order():
    loader = DetectionLoader(_dataset(), batch_size=1, transform=eval_transform(64, max_size=100), train=False)
    shapes = [tuple(b["images"].shape[-2:]) for b in loader]
    assert loader.pad_to == (96, 96) and shapes == [(96, 96)] * 3  # (H, W) 64x96, 96x64 and 64x64 after the resize
    assert [b["image_ids"][0] for b in loader] == [1, 2, 3] and len(loader.coco["annotations"]) == 3
    train = DetectionLoader(_dataset(), batch_size=2, transform=None, seed=3)
    train.set_epoch(1)
    first = [b["image_ids"] for b in train]
    assert len(first) == 1 and first == [b["image_ids"] for b in train]  # a function of (seed, epoch)


def test_tiling_keeps_pixels_and_mostly_visible_boxes():
    big = _image(7, 250, 120, [[10, 10, 40, 40], [90, 20, 130, 60], [190, 90, 240, 118]], [0, 1, 0])
    tiles = tile_dataset(DetectionDataset([big, _image(8, 50, 50, [[1, 1, 9, 9]], [1])], ["a", "b"]), 100, overlap=0.0)
    # x starts 0, 100, 150; y starts 0, 20: 6 tiles, plus the small image kept whole.
    assert len(tiles) == 7 and [t.image_id for t in tiles] == list(range(1, 8))
    first = tiles[0]
    torch.testing.assert_close(first.pixels, big.pixels[:, :100, :100])
    # The box at x 90..130 is 25% inside the first tile (left out there) and 75% inside the second (kept, clipped).
    torch.testing.assert_close(first.boxes, torch.tensor([[10.0, 10, 40, 40]]))
    torch.testing.assert_close(tiles[1].boxes[0], torch.tensor([0.0, 20, 30, 60]))
    assert "left out of a tile" in tiles.report[-1]
    assert tiles[-1].width == 50 and tiles[-1].boxes.shape == (1, 4)  # small images are kept whole


def _fashion_mnist_or_skip():
    from formers.data.images import fashion_mnist_dir

    try:
        return fashion_mnist_dir(download_missing=False)
    except FileNotFoundError:
        pytest.skip("needs Fashion-MNIST: `apt-get install dataset-fashion-mnist` or set $FORMERS_DATA_DIR")


def test_fashion_detect_is_deterministic_with_tight_boxes(tmp_path):
    _fashion_mnist_or_skip()
    from formers.data.fashion_detect import (
        FashionDetectConfig,
        generate_fashion_detect,
        load_fashion_detect,
    )

    config = FashionDetectConfig(num_train=12, num_test=6, canvas_size=64, max_items=3)
    digests = []
    for name in ("one", "two"):
        root = generate_fashion_detect(tmp_path / name, config)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        digests.append({str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    assert digests[0] == digests[1] and len(digests[0]) == 12 + 6 + 3
    train, test = load_fashion_detect(tmp_path / "one", "train"), load_fashion_detect(tmp_path / "one", "test")
    assert (len(train), len(test), train.num_classes, train.category_ids) == (12, 6, 10, list(range(1, 11)))
    for image in train.images:
        ink = image.load().amax(0) > 0  # (H, W): the box edges touch the item
        for x0, y0, x1, y1 in image.boxes.long().tolist():
            window = ink[y0:y1, x0:x1]
            assert window[0].any() and window[-1].any() and window[:, 0].any() and window[:, -1].any()  # tight
    other = generate_fashion_detect(tmp_path / "three", FashionDetectConfig(num_train=12, num_test=6, canvas_size=64,
                                                                           seed=1))
    assert (other / "images" / "train" / "000001.png").read_bytes() != (
        tmp_path / "one" / "images" / "train" / "000001.png").read_bytes()


def test_train_batches_are_a_function_of_seed_and_epoch_whatever_the_workers():
    transform = train_transform([48, 56, 64], max_size=100, crop=(24, 48), crop_scales=[48, 64], hflip=True)

    def epochs(num_workers):
        loader = DetectionLoader(_dataset(), batch_size=2, transform=transform, seed=5, num_workers=num_workers)
        out = []
        for epoch in (0, 1, 0):
            loader.set_epoch(epoch)
            out.append([(b["image_ids"], b["images"], b["boxes"]) for b in loader])
        return out

    alone, workers = epochs(0), epochs(2)
    for a, w in zip(alone, workers):
        for (ids_a, images_a, boxes_a), (ids_w, images_w, boxes_w) in zip(a, w, strict=True):
            assert ids_a == ids_w
            torch.testing.assert_close(images_a, images_w)
            torch.testing.assert_close(boxes_a, boxes_w)
    first, second, again = alone
    assert [b[0] for b in first] == [b[0] for b in again]  # epoch 0 twice: same order and same augmentation
    torch.testing.assert_close(first[0][1], again[0][1])
    assert any(a[0] != b[0] or a[1].shape != b[1].shape or not torch.equal(a[1], b[1]) for a, b in zip(first, second))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_held_batches_equal_the_cpu_s():
    dataset = _one_size_dataset()
    on_gpu, on_cpu = HeldDetectionLoader(dataset, 4, seed=5, device="cuda"), HeldDetectionLoader(dataset, 4, seed=5)
    for ours, theirs in zip(on_gpu, on_cpu, strict=True):
        assert ours["images"].is_cuda and ours["sizes"] == theirs["sizes"]
        for key in ("images", "padding_mask", "labels", "boxes"):
            assert torch.equal(ours[key].cpu(), theirs[key]), key
