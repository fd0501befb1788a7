"""Cityscapes and COCO panoptic readers: round trips through the real converters, and
errors that name the offending file."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

from panoptic_ros.eval.coco_format import CocoFormatError, write_coco_panoptic
from panoptic_ros.labels import CITYSCAPES, COCO_PANOPTIC
from panoptic_ros.training.datasets.cityscapes import CityscapesPanoptic
from panoptic_ros.training.datasets.coco_panoptic import CocoPanoptic
from panoptic_ros.types import PanopticResult

CITY_IDS = ("aachen_000000_000019", "bad_city_x_000001_000002")   # a city name with underscores too


def instance_ids_image(seed: int) -> np.ndarray:
    """A Cityscapes ``instanceIds`` image (H, W) int32 with stuff, instances, crowd,
    an ignoreInEval instance (caravan) and unlabeled ego vehicle."""
    ids = np.full((20, 30), 7, np.int32)            # road
    ids[:5] = 23                                    # sky
    ids[6:12, 2 + seed:9] = 26000                   # car k=0
    ids[6:12, 10:16] = 26001                        # car k=1
    ids[13:18, 18:22] = 24000                       # person k=0
    ids[13:18, 23:27] = 24001
    ids[15:20, 0:4] = 26                            # car crowd
    ids[0:3, 25:30] = 29000                         # caravan: not evaluated -> VOID
    ids[19, 10:20] = 1                              # ego vehicle -> VOID
    return ids


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    for n, image_id in enumerate(CITY_IDS):
        city = image_id.rsplit("_", 2)[0]
        gt = root / "gtFine" / "val" / city
        gt.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(gt / f"{image_id}_gtFine_instanceIds.png"), instance_ids_image(n).astype(np.uint16))
        img_dir = root / "leftImg8bit" / "val" / city
        img_dir.mkdir(parents=True, exist_ok=True)
        image = np.random.default_rng(n).integers(0, 256, (20, 30, 3), dtype=np.uint8)
        assert cv2.imwrite(str(img_dir / f"{image_id}_leftImg8bit.png"), image[..., ::-1])
    convert2panoptic(str(root / "gtFine"), None, False, ["val"])
    convert2panoptic(str(root / "gtFine"), None, True, ["val"])
    return root


def test_cityscapes_reads_what_create_panoptic_imgs_writes(cityscapes_root):
    for use_train_id in (False, True):
        ds = CityscapesPanoptic(cityscapes_root, "val", use_train_id=use_train_id)
        assert len(ds) == 2
        for n, image_id in enumerate(CITY_IDS):
            sample = ds[n]
            assert sample.image_id == image_id
            expected = PanopticResult.from_cityscapes(instance_ids_image(n), CITYSCAPES)
            np.testing.assert_array_equal(sample.target.panoptic, expected.panoptic)
            assert sample.target.segments == expected.segments
            image = np.random.default_rng(n).integers(0, 256, (20, 30, 3), dtype=np.uint8)
            np.testing.assert_array_equal(sample.image, image)
    target = CityscapesPanoptic(cityscapes_root, "val")[0].target
    assert {s.id for s in target.segments} == {7000, 23000, 26001, 26002, 24001, 24002, 26000}
    assert target.segment(26000).iscrowd and not target.segment(26001).iscrowd
    assert target.panoptic[0, 27] == 0 and target.panoptic[19, 15] == 0   # caravan, ego vehicle


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_cityscapes_missing_json(tmp_path):
    with pytest.raises(CocoFormatError, match="cityscapes_panoptic_train.json"):
        CityscapesPanoptic(tmp_path, "train")


def test_cityscapes_malformed_json(cityscapes_root, tmp_path):
    root = copy_tree(cityscapes_root, tmp_path / "cs")
    json_path = root / "gtFine" / "cityscapes_panoptic_val.json"
    json_path.write_text('{"annotations": [')
    with pytest.raises(CocoFormatError, match=f"{json_path}.*malformed"):
        CityscapesPanoptic(root, "val")


def test_cityscapes_missing_png_and_image(cityscapes_root, tmp_path):
    root = copy_tree(cityscapes_root, tmp_path / "cs")
    png = root / "gtFine" / "cityscapes_panoptic_val" / f"{CITY_IDS[0]}_gtFine_panoptic.png"
    png.unlink()
    image = root / "leftImg8bit" / "val" / "bad_city_x" / f"{CITY_IDS[1]}_leftImg8bit.png"
    image.unlink()
    ds = CityscapesPanoptic(root, "val")
    with pytest.raises(CocoFormatError, match=f"{png}: file not found"):
        ds[0]
    with pytest.raises(CocoFormatError, match=f"{image}: file not found"):
        ds[1]


def test_cityscapes_size_mismatch_names_both_files(cityscapes_root, tmp_path):
    root = copy_tree(cityscapes_root, tmp_path / "cs")
    image = root / "leftImg8bit" / "val" / "aachen" / f"{CITY_IDS[0]}_leftImg8bit.png"
    cv2.imwrite(str(image), np.zeros((20, 31, 3), np.uint8))
    with pytest.raises(CocoFormatError, match=f"{image}: image size 31x20 differs.*_gtFine_panoptic.png"):
        CityscapesPanoptic(root, "val")[0]


def test_cityscapes_png_id_absent_from_json(cityscapes_root, tmp_path):
    root = copy_tree(cityscapes_root, tmp_path / "cs")
    json_path = root / "gtFine" / "cityscapes_panoptic_val.json"
    data = json.loads(json_path.read_text())
    data["annotations"][0]["segments_info"] = [s for s in data["annotations"][0]["segments_info"] if s["id"] != 26001]
    json_path.write_text(json.dumps(data))
    with pytest.raises(CocoFormatError, match=r"_gtFine_panoptic.png: PNG ids \[26001\] have no entry.*" + str(json_path)):
        CityscapesPanoptic(root, "val")[0]


def test_cityscapes_bad_train_id(cityscapes_root, tmp_path):
    root = copy_tree(cityscapes_root, tmp_path / "cs")
    json_path = root / "gtFine" / "cityscapes_panoptic_val_trainId.json"
    data = json.loads(json_path.read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 19
    json_path.write_text(json.dumps(data))
    with pytest.raises(CocoFormatError, match="train id 19"):
        CityscapesPanoptic(root, "val", use_train_id=True)[0]


def coco_result(seed: int) -> PanopticResult:
    rng = np.random.default_rng(seed)
    pan = np.full((16, 24), 149000, np.int32)       # road
    pan[:4] = 187000                                # sky-other-merged
    pan[5:10, 2:8] = 1001                           # person 1
    pan[5:10, 9:12] = 1002                          # person 2
    pan[11:16, 15:22] = 3001                        # car 1
    pan[12:16, 0:3] = 1000                          # person crowd
    pan[0, int(rng.integers(0, 24))] = 0
    return PanopticResult.from_panoptic_map(pan, COCO_PANOPTIC)


@pytest.fixture()
def coco_root(tmp_path) -> Path:
    root = tmp_path / "coco"
    names = {139: "000000000139.png", 285: "000000000285.png"}
    results = [(image_id, f"{Path(name).stem}.png", coco_result(n)) for n, (image_id, name) in enumerate(names.items())]
    write_coco_panoptic(root / "annotations" / "panoptic_val2017.json", root / "annotations" / "panoptic_val2017",
                        results, COCO_PANOPTIC, image_file_names=names)
    (root / "val2017").mkdir()
    for n, name in enumerate(names.values()):
        image = np.random.default_rng(10 + n).integers(0, 256, (16, 24, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "val2017" / name), image[..., ::-1])
    return root


def test_coco_round_trip(coco_root):
    ds = CocoPanoptic(coco_root, "val")
    assert len(ds) == 2
    for n in range(2):
        sample = ds[n]
        assert sample.image_id == ("139", "285")[n]
        np.testing.assert_array_equal(sample.target.panoptic, coco_result(n).panoptic)
        assert sample.target.segments == coco_result(n).segments
        assert sample.target.segment(1000).iscrowd
        np.testing.assert_array_equal(sample.image, np.random.default_rng(10 + n).integers(0, 256, (16, 24, 3),
                                                                                             dtype=np.uint8))


def test_coco_layout_is_configurable_and_jpg_default(tmp_path):
    ann, pngs, imgs = tmp_path / "a.json", tmp_path / "pngs", tmp_path / "imgs"
    write_coco_panoptic(ann, pngs, [(5, "five.png", coco_result(0))], COCO_PANOPTIC)   # images: five.jpg
    imgs.mkdir()
    cv2.imwrite(str(imgs / "five.jpg"), np.full((16, 24, 3), 90, np.uint8))
    sample = CocoPanoptic(tmp_path / "unused", "val", json_path=ann, panoptic_dir=pngs, image_dir=imgs)[0]
    assert sample.image.shape == (16, 24, 3) and sample.image_id == "5"


def test_coco_errors_name_files(coco_root):
    json_path = coco_root / "annotations" / "panoptic_val2017.json"
    with pytest.raises(CocoFormatError, match="panoptic_train2017.json: file not found"):
        CocoPanoptic(coco_root, "train")
    with pytest.raises(CocoFormatError, match="nowhere: panoptic PNG folder not found"):
        CocoPanoptic(coco_root, "val", panoptic_dir=coco_root / "nowhere")
    image = coco_root / "val2017" / "000000000285.png"
    image.unlink()
    with pytest.raises(CocoFormatError, match=f"{image}: file not found"):
        CocoPanoptic(coco_root, "val")[1]
    data = json.loads(json_path.read_text())
    data["annotations"][0]["segments_info"].append({"id": 999, "category_id": 1, "iscrowd": 0})
    json_path.write_text(json.dumps(data))
    with pytest.raises(CocoFormatError, match=r"000000000139.png: segments_info ids \[999\] do not occur"):
        CocoPanoptic(coco_root, "val")[0]
    json_path.write_text("[]")
    with pytest.raises(CocoFormatError, match=f"{json_path}: expected a JSON object"):
        CocoPanoptic(coco_root, "val")


def synth_scenes():
    """The first small SynthStreet scene with a crowd region, and a mirrored one (twins)."""
    from panoptic_ros.synthstreet.scene import generate_scene

    with_crowd = next(s for s in (generate_scene(7, i, height=128, width=256) for i in range(40))
                      if any(seg.iscrowd for seg in s.target.segments))
    return [with_crowd, generate_scene(7, 1, height=128, width=256, mirror=True)]


def test_synthstreet_cityscapes_layout_round_trip(tmp_path):
    """Generator -> Cityscapes writer -> createPanopticImgs -> our reader == generator, pixel for pixel."""
    from panoptic_ros.synthstreet.writers import write_cityscapes

    scenes = synth_scenes()
    stems = write_cityscapes(tmp_path, scenes, split="val", city="synth")
    convert2panoptic(str(tmp_path / "gtFine"), None, False, ["val"])
    ds = CityscapesPanoptic(tmp_path, "val")
    assert [ds[i].image_id for i in range(len(ds))] == stems
    for scene, read in zip(scenes, (ds[i] for i in range(len(ds)))):
        np.testing.assert_array_equal(read.target.panoptic, scene.target.panoptic)
        assert read.target.segments == scene.target.segments
        np.testing.assert_array_equal(read.image, scene.image)


def test_synthstreet_coco_layout_round_trip(tmp_path):
    from panoptic_ros.training.datasets.coco_panoptic import PanopticFolderDataset
    from panoptic_ros.synthstreet.writers import coco_paths, write_coco

    scenes = synth_scenes()
    write_coco(tmp_path, scenes, split="val")
    json_path, png_dir, image_dir = coco_paths(tmp_path, "val")
    ds = PanopticFolderDataset(json_path=json_path, panoptic_dir=png_dir, image_dir=image_dir, label_space=CITYSCAPES)
    for scene, read in zip(scenes, (ds[i] for i in range(len(ds)))):
        assert read.image_id == scene.image_id
        np.testing.assert_array_equal(read.target.panoptic, scene.target.panoptic)
        np.testing.assert_array_equal(read.image, scene.image)
