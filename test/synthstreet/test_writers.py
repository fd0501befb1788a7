"""SynthStreet writers: Cityscapes layout through the official converter, COCO panoptic
through the official evaluator, byte-identical output, and the CLI."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic
from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.synthstreet import cli as synth_cli
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.synthstreet.writers import WriterError, coco_paths, write_cityscapes, write_coco
from panoptic_ros.training.datasets.cityscapes import CityscapesPanoptic
from panoptic_ros.training.datasets.coco_panoptic import PanopticFolderDataset

# seed, index, (H, W), mirror: several streams, sizes and aspect ratios
SCENES = [(11, 0, (128, 256), False), (11, 1, (96, 320), False), (4242, 7, (160, 256), True),
          (90210, 3, (128, 256), False)]


def _first_crowd_scene(seed: int, size=(128, 256)):
    for index in range(60):
        sample = generate_scene(seed, index, height=size[0], width=size[1])
        if any(s.iscrowd for s in sample.target.segments):
            return sample
    raise AssertionError(f"no crowd region in 60 scenes of seed {seed}")


def _samples():
    return [generate_scene(s, i, height=h, width=w, mirror=m) for s, i, (h, w), m in SCENES] + \
        [_first_crowd_scene(11)]


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_cityscapes_layout_round_trips_through_create_panoptic_imgs(tmp_path, capsys):
    samples = _samples()
    stems = write_cityscapes(tmp_path, samples, split="val", city="synth", seq=11)
    assert stems[0] == "synth_000011_000000"
    assert (tmp_path / "leftImg8bit/val/synth/synth_000011_000000_leftImg8bit.png").is_file()
    convert2panoptic(str(tmp_path / "gtFine"), str(tmp_path / "gtFine"), setNames=["val"])
    capsys.readouterr()
    data = CityscapesPanoptic(tmp_path, "val")
    assert len(data) == len(samples)
    by_id = {data.entries[k].image_id: k for k in range(len(data))}
    crowds = 0
    for stem, sample in zip(stems, samples):
        back = data[by_id[stem]]
        assert np.array_equal(back.image, sample.image)
        assert np.array_equal(back.target.panoptic, sample.target.panoptic), stem
        crowd = {s.id for s in sample.target.segments if s.iscrowd}
        assert crowd == {s.id for s in back.target.segments if s.iscrowd}
        crowds += len(crowd)
    assert crowds >= 1


def test_coco_ground_truth_against_itself_is_pq_100(tmp_path, capsys):
    samples = _samples()
    content = write_coco(tmp_path, samples, split="val")
    json_path, png_dir, image_dir = coco_paths(tmp_path, "val")
    assert [a["image_id"] for a in content["annotations"]] == [s.image_id for s in samples]
    seg = content["annotations"][0]["segments_info"][0]
    assert {"id", "category_id", "iscrowd", "area", "bbox"} <= set(seg)
    results = evaluatePanoptic(str(json_path), str(png_dir), str(json_path), str(png_dir),
                               str(tmp_path / "pq.json"))
    capsys.readouterr()
    assert results["All"]["pq"] == pytest.approx(1.0)
    assert results["All"]["n"] >= 10
    data = PanopticFolderDataset(json_path=json_path, panoptic_dir=png_dir, image_dir=image_dir,
                                 label_space=CITYSCAPES)
    for k, sample in enumerate(samples):
        back = data[k]
        assert back.image_id == sample.image_id
        assert np.array_equal(back.image, sample.image)
        assert np.array_equal(back.target.panoptic, sample.target.panoptic)


def test_same_seed_writes_byte_identical_files(tmp_path):
    for run in ("a", "b"):
        write_cityscapes(tmp_path / run / "cs", [generate_scene(5, i, height=64, width=128) for i in range(2)])
        write_coco(tmp_path / run / "coco", [generate_scene(5, i, height=64, width=128) for i in range(2)])
    a, b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert a == b and len(a) == 2 * 3 + 2 * 2 + 1
    write_cityscapes(tmp_path / "c" / "cs", [generate_scene(6, i, height=64, width=128) for i in range(2)])
    c = _tree_digest(tmp_path / "c")
    assert all(c[k] != a[k] for k in c)


def test_bad_names_are_rejected(tmp_path):
    with pytest.raises(WriterError, match="city"):
        write_cityscapes(tmp_path, [], city="my_city")
    with pytest.raises(WriterError, match="split"):
        write_coco(tmp_path, [], split="../x")


def test_cli_writes_cityscapes_and_coco_same_with_workers(tmp_path, capsys):
    common = ["--count", "3", "--seed", "8", "--size", "64x128"]
    assert synth_cli.main(["--out", str(tmp_path / "one"), "--format", "cityscapes"] + common) == 0
    assert synth_cli.main(["--out", str(tmp_path / "two"), "--format", "cityscapes", "--workers", "2"] + common) == 0
    out = capsys.readouterr().out
    assert "3 SynthStreet scenes 64x128" in out and "synth_000008_000002" in out
    assert _tree_digest(tmp_path / "one") == _tree_digest(tmp_path / "two")
    assert synth_cli.main(["--out", str(tmp_path / "coco"), "--format", "coco", "--mirror"] + common) == 0
    json_path, png_dir, image_dir = coco_paths(tmp_path / "coco", "train")
    data = PanopticFolderDataset(json_path=json_path, panoptic_dir=png_dir, image_dir=image_dir,
                                 label_space=CITYSCAPES)
    assert [data.entries[k].image_id for k in range(3)] == [f"synth_8_{i}_mirror" for i in range(3)]
    ref = generate_scene(8, 1, height=64, width=128, mirror=True)
    assert np.array_equal(data[1].target.panoptic, ref.target.panoptic)


@pytest.mark.parametrize("argv, message", [
    (["--size", "64-128"], "HEIGHTxWIDTH"),
    (["--size", "32x64"], "at least 64x128"),
    (["--count", "0"], "positive integer"),
    (["--rate", "-1"], "positive number"),
    (["--format", "png"], "invalid choice"),
])
def test_cli_rejects_bad_arguments(tmp_path, capsys, argv, message):
    base = {"--out": str(tmp_path / "x"), "--format": "coco", "--count": "1"}
    for k in range(0, len(argv), 2):
        base[argv[k]] = argv[k + 1]
    with pytest.raises(SystemExit) as exc:
        synth_cli.main([t for kv in base.items() for t in kv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_user_errors_exit_2_without_traceback(tmp_path, capsys):
    (tmp_path / "bag").mkdir()
    with pytest.raises(SystemExit) as exc:
        synth_cli.main(["--out", str(tmp_path / "bag"), "--format", "bag", "--count", "1"])
    assert exc.value.code == 2 and "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        synth_cli.main(["--out", str(tmp_path / "cs"), "--format", "cityscapes", "--count", "1",
                        "--size", "64x128", "--city", "a_b"])
    assert exc.value.code == 2 and "--city 'a_b'" in capsys.readouterr().err
