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


def _expected_ids(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return (r + 256 * g + 65536 * b).astype(np.int32)


def test_grey_and_palette_pngs_are_read_through_libspng(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_panoptic_png(tmp_path / "grey.png"), _expected_ids(np.stack([grey] * 3, -1)))
    colours = np.array([[10, 200, 3], [0, 0, 0], [255, 1, 128], [7, 7, 250]], np.uint8)
    index = rng.integers(0, 4, (6, 5), dtype=np.uint8)
    for entries, depth in ((4, 2), (256, 8)):  # palette entries are 8-bit RGB whatever the index width
        palette = Image.fromarray(index, "P")
        palette.putpalette(np.resize(colours, (entries, 3)).ravel().tolist())
        palette.save(tmp_path / f"palette{depth}.png")
        assert (tmp_path / f"palette{depth}.png").read_bytes()[24:26] == bytes([depth, 3])
        ids = read_panoptic_png(tmp_path / f"palette{depth}.png")
        assert ids.dtype == np.int32
        np.testing.assert_array_equal(ids, _expected_ids(colours[index]))


def test_16_bit_and_damaged_pngs_are_refused_naming_the_file(tmp_path):
    import cv2
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), np.full((4, 4, 3), 300, np.uint16))
    with pytest.raises(CocoFormatError) as refused:
        read_panoptic_png(path)
    assert str(refused.value) == (f"{path}: 16-bit PNG; panoptic PNGs must have 8-bit samples "
                                  "(R + 256 G + 256^2 B ids)")
    from PIL import Image
    Image.fromarray(np.zeros((4, 4), np.uint8), "L").save(tmp_path / "grey.png")
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes((tmp_path / "grey.png").read_bytes()[:40])
    with pytest.raises(CocoFormatError) as refused:
        read_panoptic_png(damaged)
    assert str(refused.value) == f"{damaged}: not a readable PNG"


def test_images_give_sizes_and_source_names_and_pngs_go_into_new_folders(tmp_path):
    results = [(i, f"img{i}.png", _result(i)) for i in range(2)]
    png_folder = tmp_path / "new" / "nested"
    data = write_coco_panoptic(tmp_path / "pan.json", png_folder, results, CITYSCAPES,
                               image_file_names={1: "frame_1.ppm"})
    assert data["images"] == [{"id": 0, "file_name": "img0.jpg", "height": 12, "width": 20},
                              {"id": 1, "file_name": "frame_1.ppm", "height": 12, "width": 20}]
    assert [e.image_file_name for e in iter_coco_images(tmp_path / "pan.json")] == ["img0.jpg", "frame_1.ppm"]
    del data["images"][1]
    (tmp_path / "partial.json").write_text(json.dumps(data))  # image 1 not listed
    entries = list(iter_coco_images(tmp_path / "partial.json"))
    assert (entries[1].height, entries[1].width, entries[1].image_file_name) == (None, None, None)
    del data["images"]
    (tmp_path / "no_images.json").write_text(json.dumps(data))
    assert [e.height for e in iter_coco_images(tmp_path / "no_images.json")] == [None, None]
    wrong = iter_coco_images(tmp_path / "pan.json").__next__()
    wrong = type(wrong)(0, "img0.png", wrong.segments_info, 13, 21)
    with pytest.raises(CocoFormatError) as refused:
        load_result(wrong, png_folder, CITYSCAPES)
    assert str(refused.value) == f"{png_folder / 'img0.png'}: size 20x12 differs from the JSON's 21x13"


def test_json_refusals_are_exact(tmp_path):
    path = tmp_path / "pan.json"
    cases = [([], "expected a JSON object at the top level"),
             ({"annotations": []}, "missing or invalid 'categories' list"),
             ({"annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": [{"id": 1}]}],
               "categories": []}, "a segment of a.png lacks id or category_id"),
             ({"annotations": [{"image_id": 1, "file_name": "b.png", "segments_info": [{"category_id": 1}]}],
               "categories": []}, "a segment of b.png lacks id or category_id")]
    for content, message in cases:
        path.write_text(json.dumps(content))
        with pytest.raises(CocoFormatError) as refused:
            read_panoptic_json(path)
        assert str(refused.value) == f"{path}: {message}"
    path.write_text(json.dumps({"categories": []}))
    with pytest.raises(CocoFormatError) as refused:
        read_panoptic_json(path, require_categories=False)
    assert str(refused.value) == f"{path}: missing or invalid 'annotations' list"
    path.write_text(json.dumps({"annotations": []}))
    assert read_panoptic_json(path, require_categories=False) == {"annotations": []}
