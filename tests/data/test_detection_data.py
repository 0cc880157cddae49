"""Detection readers (COCO JSON, Pascal VOC XML, CSV): contiguous labels, round trips and clear errors on bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

PIL = pytest.importorskip("PIL.Image")

from formers.data.detection import read_coco, read_csv_boxes, read_voc  # noqa: E402

DEEPFOREST_HINT = ("needs the DeepForest sample images in shared/data/deepforest: "
                   "`pip download --no-deps deepforest==2.1.0` and copy deepforest/data/* (see its README)")


def _png(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(path)
    return path


def _coco(tmp_path: Path, annotations: list[dict], images: list[dict] | None = None) -> Path:
    images = images or [{"id": 10, "file_name": "a.png", "width": 40, "height": 30},
                        {"id": 42, "file_name": "b.png", "width": 20, "height": 20}]
    for image in images:
        if not (tmp_path / image["file_name"]).exists():
            _png(tmp_path / image["file_name"], image["width"], image["height"])
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": 90, "name": "zebra"}, {"id": 3, "name": "car"}, {"id": 7, "name": "train"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


GOOD = [
    {"id": 1, "image_id": 10, "category_id": 90, "bbox": [1, 2, 10, 5], "area": 40.0, "iscrowd": 0},
    {"id": 2, "image_id": 10, "category_id": 3, "bbox": [20, 10, 5, 5], "iscrowd": 1},
    {"id": 3, "image_id": 42, "category_id": 7, "bbox": [0, 0, 20, 20], "iscrowd": 0},
]


def test_coco_non_contiguous_ids_become_labels_and_round_trip(tmp_path):
    ds = read_coco(_coco(tmp_path, GOOD))
    assert ds.class_names == ["car", "train", "zebra"] and ds.category_ids == [3, 7, 90]
    first = ds[0]
    assert first.image_id == 10 and (first.width, first.height) == (40, 30)
    torch.testing.assert_close(first.boxes, torch.tensor([[1.0, 2, 11, 7], [20, 10, 25, 15]]))
    assert first.labels.tolist() == [2, 0] and first.iscrowd.tolist() == [False, True]
    assert first.area.tolist() == [40.0, 25.0]  # COCO's area when given, else the box's
    back = ds.to_coco()
    assert [(a["image_id"], a["category_id"], a["bbox"], a["iscrowd"]) for a in back["annotations"]] == [
        (g["image_id"], g["category_id"], [float(v) for v in g["bbox"]], g["iscrowd"]) for g in GOOD]
    assert {c["id"]: c["name"] for c in back["categories"]} == {90: "zebra", 3: "car", 7: "train"}
    assert ds.report == []
    merged = ds.merge_classes({"zebra": "animal", "train": "vehicle", "car": "vehicle"})
    assert merged.class_names == ["animal", "vehicle"] and merged[0].labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"classes \['bus'\]"):
        ds.merge_classes({"bus": "vehicle"})
    assert ds.preload() is ds and ds[0].pixels.shape == (3, 30, 40) and ds[0].pixels.dtype == torch.uint8


def test_coco_unrepairable_annotations_raise_naming_file_and_annotation(tmp_path):
    bad_category = [*GOOD, {"id": 9, "image_id": 10, "category_id": 5, "bbox": [1, 1, 2, 2]}]
    with pytest.raises(ValueError, match=r"ann\.json: annotation id 9 \(image id 10\) has category_id 5"):
        read_coco(_coco(tmp_path, bad_category))
    with pytest.raises(ValueError, match="annotation id 4 .* image id that 'images' does not list"):
        read_coco(_coco(tmp_path, [*GOOD, {"id": 4, "image_id": 11, "category_id": 3, "bbox": [1, 1, 2, 2]}]))
    with pytest.raises(ValueError, match="image id 10 appears twice"):
        read_coco(_coco(tmp_path, GOOD, images=[{"id": 10, "file_name": "a.png", "width": 40, "height": 30}] * 2))
    with pytest.raises(ValueError, match=r"image id 10 is 40x31 in the annotations but .*a\.png' is 40x30"):
        read_coco(_coco(tmp_path, GOOD, images=[{"id": 10, "file_name": "a.png", "width": 40, "height": 31}]))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png', which is not an image file"):
        read_coco(_coco(tmp_path, [], images=[{"id": 1, "file_name": "notes.png", "width": 5, "height": 5}]))
    with pytest.raises(FileNotFoundError, match=r"missing\.png', which does not exist"):
        read_coco(_coco(tmp_path, [], images=[{"id": 1, "file_name": "missing.png", "width": 5, "height": 5}]),
                  images_dir=tmp_path / "elsewhere")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read COCO annotation file"):
        read_coco(tmp_path / "broken.json")


def test_bad_boxes_are_dropped_with_a_report_or_raise(tmp_path):
    bad = [
        *GOOD,
        {"id": 5, "image_id": 10, "category_id": 3, "bbox": [35, 25, 10, 10]},  # crosses the border: clipped
        {"id": 6, "image_id": 10, "category_id": 3, "bbox": [5, 5, 0, 4]},  # zero width
        {"id": 7, "image_id": 10, "category_id": 3, "bbox": [5, 5, -3, 4]},  # inverted
        {"id": 8, "image_id": 10, "category_id": 3, "bbox": [50, 5, 3, 4]},  # outside
        {"id": 9, "image_id": 42, "category_id": 3, "bbox": [1, 1, float("nan"), 4]},
    ]
    path = _coco(tmp_path, bad)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = read_coco(path)
    messages = [str(w.message) for w in record]
    assert any("dropped 4 box(es): annotation id 6 (image id 10): zero-area" in m for m in messages), messages
    assert any("clipped 1 box" in m and "annotation id 5" in m for m in messages), messages
    assert len(ds.report) == 2 and ds.num_boxes == 4
    torch.testing.assert_close(ds[0].boxes[-1], torch.tensor([35.0, 25, 40, 30]))
    with pytest.raises(ValueError, match=r"ann\.json: annotation id 5 \(image id 10\): box .* crosses the border"):
        read_coco(path, invalid_boxes="raise")


def test_images_without_boxes_are_kept_and_reported(tmp_path):
    with pytest.warns(UserWarning, match="1 image\\(s\\) without boxes kept as negatives"):
        ds = read_coco(_coco(tmp_path, GOOD[:2]))
    assert len(ds) == 2 and ds[1].boxes.shape == (0, 4) and ds[1].labels.shape == (0,)


def _voc(path: Path, filename: str, size: tuple[int, int], objects: list[tuple[str, list[int]]]) -> Path:
    body = "".join(f"<object><name>{n}</name><difficult>{int(n == 'hard')}</difficult><bndbox><xmin>{b[0]}</xmin>"
                   f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
                    f"<height>{size[1]}</height><depth>3</depth></size>{body}</annotation>")
    return path


def test_voc_reader_and_its_errors(tmp_path):
    _png(tmp_path / "x.png", 50, 40)
    _voc(tmp_path / "x.xml", "x.png", (50, 40), [("cat", [1, 2, 30, 20]), ("hard", [5, 5, 9, 9])])
    ds = read_voc(tmp_path)
    assert ds.class_names == ["cat", "hard"] and ds[0].labels.tolist() == [0, 1]
    assert ds[0].iscrowd.tolist() == [False, True]  # difficult objects are ignored like crowds
    torch.testing.assert_close(ds[0].boxes[0], torch.tensor([1.0, 2, 30, 20]))
    with pytest.raises(ValueError, match=r"x\.xml: object 0 has class 'cat', not one of \['dog'\]"):
        read_voc(tmp_path / "x.xml", class_names=["dog"])
    _voc(tmp_path / "x.xml", "x.png", (60, 40), [])
    with pytest.raises(ValueError, match=r"x\.xml says its image is 60x40 but .*x\.png' is 50x40"):
        read_voc(tmp_path)
    _voc(tmp_path / "x.xml", "gone.png", (50, 40), [])
    with pytest.raises(FileNotFoundError, match=r"x\.xml refers to image .*gone\.png', which does not exist"):
        read_voc(tmp_path)
    (tmp_path / "x.xml").write_text("<annotation><filename>")
    with pytest.raises(ValueError, match="cannot parse VOC annotation file"):
        read_voc(tmp_path)


def test_csv_reader_and_its_errors(tmp_path):
    _png(tmp_path / "a.png", 30, 30)
    _png(tmp_path / "b.png", 30, 30)
    (tmp_path / "boxes.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\na.png,1,2,10,12,Tree\n"
                                        "a.png,5,5,6,6,Dead\nb.png,0,0,0,0,Tree\n")
    with pytest.warns(UserWarning, match="1 image\\(s\\) without boxes"):
        ds = read_csv_boxes(tmp_path / "boxes.csv")
    assert ds.class_names == ["Dead", "Tree"] and ds[0].labels.tolist() == [1, 0] and ds[1].boxes.shape == (0, 4)
    (tmp_path / "bad.csv").write_text("image,xmin,ymin,xmax,ymax,label\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['image_path'\]"):
        read_csv_boxes(tmp_path / "bad.csv")
    (tmp_path / "bad.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\na.png,1,x,3,4,Tree\n")
    with pytest.raises(ValueError, match=r"bad\.csv: line 2 \(a\.png\) has non-numeric coordinates"):
        read_csv_boxes(tmp_path / "bad.csv")
    (tmp_path / "bad.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\nc.png,1,1,3,4,Tree\n")
    with pytest.raises(FileNotFoundError, match=r"bad\.csv line 2 \(c\.png\) refers to image"):
        read_csv_boxes(tmp_path / "bad.csv")


def test_deepforest_files_read_as_their_readme_counts(shared_data):
    folder = shared_data / "deepforest"
    if not (folder / "OSBS_029.xml").is_file():
        pytest.skip(DEEPFOREST_HINT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # clean data: nothing to report
        voc = read_voc(folder)
        csv = read_csv_boxes(folder / "testfile_multi.csv")
    counts = {im.path.name: im.boxes.shape[0] for im in voc.images}
    assert counts == {"2019_YELL_2_528000_4978000_image_crop2.png": 574, "2019_YELL_2_541000_4977000_image_crop.png": 279,
                      "OSBS_029.tif": 61, "SOAP_061.png": 37}
    assert voc.class_names == ["Alive", "Dead", "Tree"]
    soap = next(im for im in voc.images if im.path.name == "SOAP_061.png")
    torch.testing.assert_close(csv[0].boxes, soap.boxes)  # the README: testfile_multi.csv = SOAP_061.xml
    assert [csv.class_names[i] for i in csv[0].labels] == [voc.class_names[i] for i in soap.labels]
