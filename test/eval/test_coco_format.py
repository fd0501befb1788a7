import json

import numpy as np
import pytest

from panoptic_ros.eval.coco_format import (
    CocoFormatError, iter_coco_images, load_result, read_panoptic_json, read_panoptic_png,
    write_coco_panoptic)
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.types import PanopticResult


def _result(seed: int) -> PanopticResult:
    rng = np.random.default_rng(seed)
    pan = np.full((12, 20), 7000, np.int32)
    pan[:3] = 23000
    for k in range(1, 4):
        y, x = rng.integers(3, 9), rng.integers(0, 16)
        pan[y:y + 3, x:x + 4] = 26000 + k
    pan[11, :5] = 0
    return PanopticResult.from_panoptic_map(pan, CITYSCAPES)


def test_write_then_read_back(tmp_path):
    results = [(i, f"img{i}.png", _result(i)) for i in range(3)]
    write_coco_panoptic(tmp_path / "pan.json", tmp_path / "pan", results, CITYSCAPES)
    entries = list(iter_coco_images(tmp_path / "pan.json"))
    assert [e.image_id for e in entries] == [0, 1, 2] and entries[0].height == 12
    for (_, _, original), entry in zip(results, entries):
        back = load_result(entry, tmp_path / "pan", CITYSCAPES)
        assert np.array_equal(back.panoptic, original.panoptic)
    data = json.loads((tmp_path / "pan.json").read_text())
    assert len(data["categories"]) == 19


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CocoFormatError, match=f"{bad}: malformed JSON"):
        read_panoptic_json(bad)
    bad.write_text(json.dumps({"annotations": [{"image_id": 1}], "categories": []}))
    with pytest.raises(CocoFormatError, match=r"annotations\[0\] lacks"):
        read_panoptic_json(bad)
    with pytest.raises(CocoFormatError, match="missing.png: file not found"):
        read_panoptic_png(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(CocoFormatError, match="junk.png: not a readable PNG"):
        read_panoptic_png(tmp_path / "junk.png")
