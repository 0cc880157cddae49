"""Object-detection data: annotated images read from COCO JSON, Pascal VOC XML or CSV boxes, checked on the way in.

Every source becomes a :class:`DetectionDataset`: a list of :class:`DetectionImage` (an image file, or pixels held
in memory, with its boxes as corners in pixels and its labels), the class names, and the COCO category id of each
label. Labels are contiguous (0..K-1) whatever the source's ids: COCO's non-contiguous category ids (1..90 with gaps)
are sorted and numbered, and written back by :meth:`DetectionDataset.to_coco` and at evaluation.

Input is checked before training starts, and nothing is dropped silently:

- an error names the file and the annotation for what cannot be repaired: unknown category ids or class names,
  annotations of unknown images, duplicate image ids, images whose file is missing, is not an image, or whose size
  differs from what the annotation file says;
- boxes that can be repaired or left out are handled by ``invalid_boxes``: ``"drop"`` (the default) clips boxes
  that cross the image border and drops non-finite, inverted, zero-area and wholly outside boxes, then warns with
  counts and the first examples (file, annotation, reason) and keeps the same lines in ``dataset.report``;
  ``"raise"`` raises on the first one instead;
- images without boxes are kept (negatives teach "no object") and counted in the report.

COCO ``iscrowd`` boxes (and VOC ``difficult`` objects) are kept for evaluation, where pycocotools ignores
detections matched to them, and left out of training, as DETR does.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import Tensor

from formers.data.images import read_image

InvalidBoxes = Literal["drop", "raise"]


@dataclass
class DetectionImage:
    """One annotated image.

    Attributes:
        image_id: its id (COCO's, or 1.. in file order for VOC/CSV).
        width: width in pixels.
        height: height in pixels.
        boxes: (N, 4) float32 corners (x0, y0, x1, y1) in pixels, inside [0, width] x [0, height].
        labels: (N,) int64 labels in [0, num_classes).
        iscrowd: (N,) bool: crowd (COCO) or difficult (VOC) objects, ignored by training and evaluation.
        area: (N,) float32 object areas for COCO's small/medium/large ranges (COCO's ``area``, else box areas).
        path: the image file, or None when ``pixels`` hold the image.
        pixels: (3, height, width) uint8 pixels held in memory (tiles, generated sets), or None.
    """

    image_id: int
    width: int
    height: int
    boxes: Tensor
    labels: Tensor
    iscrowd: Tensor
    area: Tensor
    path: Path | None = None
    pixels: Tensor | None = None

    def load(self) -> Tensor:
        """The image as (3, height, width) uint8 RGB pixels."""
        if self.pixels is not None:
            return self.pixels
        if self.path is None:
            raise ValueError(f"image {self.image_id} has neither a file nor pixels")
        image = read_image(self.path, 3)
        if tuple(image.shape[1:]) != (self.height, self.width):
            raise ValueError(f"image {str(self.path)!r} is {image.shape[2]}x{image.shape[1]} pixels, its annotations "
                             f"say {self.width}x{self.height}")
        return image


@dataclass
class DetectionDataset:
    """Annotated images with contiguous labels.

    Attributes:
        images: the :class:`DetectionImage` list.
        class_names: name of each label.
        category_ids: COCO category id of each label (as read from COCO, else 1..K).
        report: what the readers repaired, dropped or noticed (also warned about when loading).
    """

    images: list[DetectionImage]
    class_names: list[str]
    category_ids: list[int] = field(default_factory=list)
    report: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.category_ids:
            self.category_ids = list(range(1, len(self.class_names) + 1))
        if len(self.category_ids) != len(self.class_names):
            raise ValueError(f"{len(self.class_names)} class names but {len(self.category_ids)} category ids")
        ids = [image.image_id for image in self.images]
        if len(set(ids)) != len(ids):
            raise ValueError(f"image ids must be unique, got duplicates {sorted({i for i in ids if ids.count(i) > 1})[:5]}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> DetectionImage:
        return self.images[index]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_boxes(self) -> int:
        return sum(image.boxes.shape[0] for image in self.images)

    def preload(self) -> DetectionDataset:
        """Decodes every image into memory once (small sets: no decoding per epoch); returns ``self``."""
        for image in self.images:
            if image.pixels is None:
                image.pixels = image.load()
        return self

    def merge_classes(self, mapping: dict[str, str]) -> DetectionDataset:
        """The dataset with classes renamed or merged (``{"Alive": "Tree", "Dead": "Tree"}``); unnamed classes are
        kept; the new classes are sorted and numbered 1.. as category ids."""
        unknown = sorted(set(mapping) - set(self.class_names))
        if unknown:
            raise ValueError(f"merge_classes names classes {unknown} that the dataset does not have ({self.class_names})")
        names = [mapping.get(name, name) for name in self.class_names]
        classes = sorted(set(names))
        new_label = torch.tensor([classes.index(name) for name in names], dtype=torch.int64)  # (K_old,)
        images = [DetectionImage(im.image_id, im.width, im.height, im.boxes, new_label[im.labels], im.iscrowd, im.area,
                                 im.path, im.pixels) for im in self.images]
        return DetectionDataset(images, classes, list(range(1, len(classes) + 1)), list(self.report))

    def subset(self, indices: Sequence[int]) -> DetectionDataset:
        """The images at ``indices`` with the same classes (the report is kept)."""
        return DetectionDataset([self.images[i] for i in indices], list(self.class_names), list(self.category_ids),
                                list(self.report))

    def to_coco(self) -> dict:
        """The ground truth as a COCO dataset dict (``images``, ``annotations`` with [x, y, w, h] boxes,
        ``categories``), for ``pycocotools``; annotation ids run from 1."""
        images, annotations = [], []
        for image in self.images:
            name = image.path.name if image.path is not None else f"{image.image_id}.png"
            images.append({"id": image.image_id, "file_name": name, "width": image.width, "height": image.height})
            for box, label, crowd, area in zip(image.boxes.tolist(), image.labels.tolist(), image.iscrowd.tolist(),
                                               image.area.tolist()):
                x0, y0, x1, y1 = box
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image.image_id,
                    "category_id": self.category_ids[label], "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": area, "iscrowd": int(crowd),
                })
        categories = [{"id": cid, "name": name} for cid, name in zip(self.category_ids, self.class_names)]
        return {"images": images, "annotations": annotations, "categories": categories}

    def summary(self) -> str:
        """One line: images, boxes, classes, images without boxes."""
        empty = sum(1 for image in self.images if image.boxes.shape[0] == 0)
        return (f"{len(self.images):,} images, {self.num_boxes:,} boxes, {self.num_classes} classes, "
                f"{empty:,} images without boxes")


# ----------------------------------------------------------------------------- checks


class _BoxChecker:
    """Clips or drops bad boxes according to ``policy``, remembering what it did for the report."""

    def __init__(self, policy: InvalidBoxes, source: str) -> None:
        if policy not in ("drop", "raise"):
            raise ValueError(f"invalid_boxes must be 'drop' or 'raise', got {policy!r}")
        self.policy, self.source = policy, source
        self.dropped: list[str] = []
        self.clipped: list[str] = []

    def check(self, box: list[float], width: int, height: int, where: str) -> list[float] | None:
        """The box (x0, y0, x1, y1), clipped to the image, or None when it must be dropped."""
        x0, y0, x1, y1 = box
        reason = None
        if not all(map(_finite, box)):
            reason = f"non-finite coordinates {box}"
        elif x1 < x0 or y1 < y0:
            reason = f"inverted box {box} (x1 < x0 or y1 < y0)"
        elif x1 == x0 or y1 == y0:
            reason = f"zero-area box {box}"
        elif x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            reason = f"box {box} lies outside the {width}x{height} image"
        if reason is not None:
            if self.policy == "raise":
                raise ValueError(f"{self.source}: {where}: {reason}")
            self.dropped.append(f"{where}: {reason}")
            return None
        clipped = [min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width),
                   min(max(y1, 0.0), height)]
        if clipped != [x0, y0, x1, y1]:
            if self.policy == "raise":
                raise ValueError(f"{self.source}: {where}: box {box} crosses the border of the {width}x{height} image")
            self.clipped.append(f"{where}: box {box} clipped to the {width}x{height} image")
        return clipped

    def finish(self, dataset: DetectionDataset) -> DetectionDataset:
        """Adds the report lines to ``dataset`` and warns about them."""
        lines = []
        for what, items in (("dropped", self.dropped), ("clipped", self.clipped)):
            if items:
                lines.append(f"{self.source}: {what} {len(items)} box(es): " + "; ".join(items[:3])
                             + (" ..." if len(items) > 3 else ""))
        empty = sum(1 for image in dataset.images if image.boxes.shape[0] == 0)
        if empty:
            lines.append(f"{self.source}: {empty} image(s) without boxes kept as negatives")
        dataset.report += lines
        for line in lines:
            warnings.warn(line, stacklevel=3)
        return dataset


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def image_size(path: Path, source: str) -> tuple[int, int]:
    """(width, height) of an image file from its header, with errors naming the file and who referenced it."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"{source} refers to image {str(path)!r}, which does not exist")
    try:
        with Image.open(path) as img:
            return img.size
    except UnidentifiedImageError:
        raise ValueError(f"{source} refers to {str(path)!r}, which is not an image file Pillow can read") from None
    except OSError as e:
        raise ValueError(f"{source} refers to {str(path)!r}, which cannot be read: {e}") from None


def _make_image(image_id: int, width: int, height: int, boxes: list[list[float]], labels: list[int],
                crowd: list[bool], areas: list[float | None], path: Path | None) -> DetectionImage:
    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)  # (N, 4), also for N = 0
    box_areas = ((box_tensor[:, 2] - box_tensor[:, 0]) * (box_tensor[:, 3] - box_tensor[:, 1])).tolist()
    area = [a if a is not None else b for a, b in zip(areas, box_areas)]
    return DetectionImage(
        image_id=image_id, width=width, height=height, boxes=box_tensor,
        labels=torch.tensor(labels, dtype=torch.int64), iscrowd=torch.tensor(crowd, dtype=torch.bool),
        area=torch.tensor(area, dtype=torch.float32), path=path,
    )


# ----------------------------------------------------------------------------- COCO JSON


def read_coco(
    annotation_file: str | os.PathLike[str],
    images_dir: str | os.PathLike[str] | None = None,
    invalid_boxes: InvalidBoxes = "drop",
    verify_images: bool = True,
) -> DetectionDataset:
    """Reads a COCO-format detection set (``images``, ``annotations`` with [x, y, w, h] ``bbox``, ``categories``).

    Args:
        annotation_file: the JSON file.
        images_dir: folder of the ``file_name`` of each image (default: the JSON file's folder).
        invalid_boxes: ``"drop"`` (reported) or ``"raise"`` (see the module docstring).
        verify_images: open every image's header to check it exists, is an image and has the stated size.

    Raises:
        ValueError / FileNotFoundError: naming the file and annotation (see the module docstring).
    """
    path = Path(annotation_file)
    images_dir = Path(images_dir) if images_dir is not None else path.parent
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read COCO annotation file {str(path)!r}: {e}") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key) if isinstance(data, dict) else None, list):
            raise ValueError(f"{path} is not a COCO detection file: it has no {key!r} list")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    if len(label_of) != len(categories):
        raise ValueError(f"{path}: duplicate category ids in 'categories'")
    checker = _BoxChecker(invalid_boxes, str(path))
    records: dict[int, dict] = {}
    for entry in data["images"]:
        image_id = entry.get("id")
        if image_id in records:
            raise ValueError(f"{path}: image id {image_id} appears twice in 'images'")
        file = images_dir / entry["file_name"]
        width, height = int(entry["width"]), int(entry["height"])
        if verify_images:
            actual = image_size(file, f"{path} (image id {image_id})")
            if actual != (width, height):
                raise ValueError(f"{path}: image id {image_id} is {width}x{height} in the annotations but "
                                 f"{str(file)!r} is {actual[0]}x{actual[1]}")
        records[image_id] = {"path": file, "width": width, "height": height, "boxes": [], "labels": [],
                             "crowd": [], "areas": []}
    for ann in data["annotations"]:
        where = f"annotation id {ann.get('id')} (image id {ann.get('image_id')})"
        record = records.get(ann.get("image_id"))
        if record is None:
            raise ValueError(f"{path}: {where} refers to an image id that 'images' does not list")
        if ann.get("category_id") not in label_of:
            raise ValueError(f"{path}: {where} has category_id {ann.get('category_id')}, which 'categories' does not "
                             f"define (known: {sorted(label_of)[:20]})")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise ValueError(f"{path}: {where} has bbox {bbox!r}; expected [x, y, width, height]")
        x, y, w, h = (float(v) for v in bbox)
        box = checker.check([x, y, x + w, y + h], record["width"], record["height"], where)
        if box is None:
            continue
        record["boxes"].append(box)
        record["labels"].append(label_of[ann["category_id"]])
        record["crowd"].append(bool(ann.get("iscrowd", 0)))
        record["areas"].append(float(ann["area"]) if "area" in ann else None)
    images = [_make_image(i, r["width"], r["height"], r["boxes"], r["labels"], r["crowd"], r["areas"], r["path"])
              for i, r in records.items()]
    dataset = DetectionDataset(images, [c["name"] for c in categories], [c["id"] for c in categories])
    return checker.finish(dataset)


# ----------------------------------------------------------------------------- Pascal VOC XML


def _xml_text(node: ET.Element, tag: str, source: str) -> str:
    found = node.find(tag)
    if found is None or found.text is None:
        raise ValueError(f"{source} lacks <{tag}>")
    return found.text.strip()


def read_voc(
    xml_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    images_dir: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | None = None,
    invalid_boxes: InvalidBoxes = "drop",
) -> DetectionDataset:
    """Reads Pascal VOC XML annotations (one file per image: ``<filename>``, ``<size>``, ``<object>``s).

    Coordinates are taken as continuous pixel corners, as they are written (no -1 shift). ``difficult`` objects
    become crowd boxes (ignored by training and evaluation). Image ids are 1.. in the order of the sorted files.

    Args:
        xml_files: an XML file, a folder of them, or a list of files.
        images_dir: folder of the images named by ``<filename>`` (default: each XML file's folder).
        class_names: the classes, in label order (default: the sorted names found); other names raise.
        invalid_boxes: ``"drop"`` (reported) or ``"raise"``.
    """
    files = _list_files(xml_files, ".xml")
    parsed = []
    for file in files:
        try:
            root = ET.parse(file).getroot()
        except (ET.ParseError, OSError) as e:
            raise ValueError(f"cannot parse VOC annotation file {str(file)!r}: {e}") from None
        if root.tag != "annotation":
            raise ValueError(f"{file} is not a VOC annotation file (root <{root.tag}>, expected <annotation>)")
        parsed.append((file, root))
    names = sorted({_xml_text(o, "name", str(f)) for f, root in parsed for o in root.iter("object")})
    classes = list(class_names) if class_names is not None else names
    checker = _BoxChecker(invalid_boxes, "VOC annotations")
    images = []
    for image_id, (file, root) in enumerate(parsed, start=1):
        image_path = (Path(images_dir) if images_dir is not None else file.parent) / _xml_text(root, "filename", str(file))
        width, height = image_size(image_path, str(file))
        size = root.find("size")
        if size is not None and size.find("width") is not None:
            stated = (int(float(_xml_text(size, "width", str(file)))), int(float(_xml_text(size, "height", str(file)))))
            if stated != (width, height):
                raise ValueError(f"{file} says its image is {stated[0]}x{stated[1]} but {str(image_path)!r} is "
                                 f"{width}x{height}")
        boxes, labels, crowd = [], [], []
        for k, obj in enumerate(root.iter("object")):
            where = f"{file.name} object {k}"
            name = _xml_text(obj, "name", where)
            if name not in classes:
                raise ValueError(f"{file}: object {k} has class {name!r}, not one of {classes}")
            bndbox = obj.find("bndbox")
            if bndbox is None:
                raise ValueError(f"{file}: object {k} ({name}) has no <bndbox>")
            try:
                coords = [float(_xml_text(bndbox, t, where)) for t in ("xmin", "ymin", "xmax", "ymax")]
            except ValueError as e:
                raise ValueError(f"{file}: object {k} has a malformed <bndbox>: {e}") from None
            box = checker.check(coords, width, height, where)
            if box is None:
                continue
            boxes.append(box)
            labels.append(classes.index(name))
            difficult = obj.find("difficult")
            crowd.append(difficult is not None and (difficult.text or "0").strip() == "1")
        images.append(_make_image(image_id, width, height, boxes, labels, crowd, [None] * len(boxes), image_path))
    return checker.finish(DetectionDataset(images, classes))


def _list_files(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], suffix: str) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() == suffix)
            if not files:
                raise ValueError(f"folder {str(path)!r} holds no {suffix} files")
            return files
        if not path.is_file():
            raise FileNotFoundError(f"annotation file {str(path)!r} does not exist")
        return [path]
    files = [Path(p) for p in source]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"annotation file {str(file)!r} does not exist")
    return sorted(files)


# ----------------------------------------------------------------------------- CSV boxes

CSV_COLUMNS = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")


def read_csv_boxes(
    csv_file: str | os.PathLike[str],
    images_dir: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | None = None,
    invalid_boxes: InvalidBoxes = "drop",
) -> DetectionDataset:
    """Reads boxes from a CSV file with the columns ``image_path,xmin,ymin,xmax,ymax,label`` (one box per row).

    A row with empty coordinates or all four 0 (DeepForest's convention) marks an image without boxes. Image ids are
    1.. in order of first appearance.

    Args:
        csv_file: the CSV file (header required).
        images_dir: folder the ``image_path`` values are relative to (default: the CSV file's folder).
        class_names: the classes, in label order (default: the sorted labels found); other labels raise.
        invalid_boxes: ``"drop"`` (reported) or ``"raise"``.
    """
    path = Path(csv_file)
    if not path.is_file():
        raise FileNotFoundError(f"CSV box file {str(path)!r} does not exist")
    folder = Path(images_dir) if images_dir is not None else path.parent
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} lacks the column(s) {missing}; expected a header {','.join(CSV_COLUMNS)}")
        rows = list(reader)
    labels_found = sorted({r["label"] for r in rows if r["label"]})
    classes = list(class_names) if class_names is not None else labels_found
    checker = _BoxChecker(invalid_boxes, str(path))
    by_image: dict[str, dict] = {}
    for line, row in enumerate(rows, start=2):
        where = f"line {line} ({row['image_path']})"
        record = by_image.get(row["image_path"])
        if record is None:
            image_path = folder / row["image_path"]
            width, height = image_size(image_path, f"{path} {where}")
            record = by_image[row["image_path"]] = {"path": image_path, "width": width, "height": height,
                                                    "boxes": [], "labels": []}
        values = [row[c].strip() for c in ("xmin", "ymin", "xmax", "ymax")]
        if not any(values) or all(v in ("0", "0.0") for v in values):
            continue  # an image without boxes
        try:
            coords = [float(v) for v in values]
        except ValueError:
            raise ValueError(f"{path}: {where} has non-numeric coordinates {values}") from None
        if row["label"] not in classes:
            raise ValueError(f"{path}: {where} has label {row['label']!r}, not one of {classes}")
        box = checker.check(coords, record["width"], record["height"], where)
        if box is not None:
            record["boxes"].append(box)
            record["labels"].append(classes.index(row["label"]))
    images = [_make_image(i, r["width"], r["height"], r["boxes"], r["labels"], [False] * len(r["boxes"]),
                          [None] * len(r["boxes"]), r["path"]) for i, r in enumerate(by_image.values(), start=1)]
    return checker.finish(DetectionDataset(images, classes))


__all__ = ["CSV_COLUMNS", "DetectionDataset", "DetectionImage", "image_size", "read_coco", "read_csv_boxes",
           "read_voc"]
