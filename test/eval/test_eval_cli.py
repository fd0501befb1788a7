"""The installed ``panoptic-eval`` against the official evaluation, and its bad-input errors."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pq_cases import assert_same_results, random_case, run_official, write_case

from panoptic_ros.eval.cli import main
from panoptic_ros.eval.coco_format import read_panoptic_png, write_panoptic_png

PANOPTIC_EVAL = Path(sys.executable).parent / "panoptic-eval"


def _run(paths: dict, *extra: str) -> subprocess.CompletedProcess:
    args = [str(PANOPTIC_EVAL), "--gt-json", str(paths["gt_json"]), "--gt-folder", str(paths["gt_folder"]),
            "--pred-json", str(paths["pred_json"]), "--pred-folder", str(paths["pred_folder"]), *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """40 random cases as one dataset, and the official results for it."""
    root = tmp_path_factory.mktemp("cli_dataset")
    pairs = [pair for seed in range(1000, 1040) for pair in random_case(seed)]
    paths = write_case(root, pairs)
    with pytest.MonkeyPatch.context() as monkeypatch:
        official, _ = run_official(paths, monkeypatch)
    return paths, official, (root / "official.json").read_text()


def test_cli_output_equals_the_official_results_file(dataset, tmp_path):
    paths, official, official_text = dataset
    out = tmp_path / "sub" / "ours.json"
    proc = _run(paths, "--json-out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == official_text
    lines = proc.stdout.splitlines()
    header = lines[0].split()
    assert header == ["PQ", "SQ", "RQ", "N"]
    all_row = lines[1].split()
    assert all_row[0] == "All" and float(all_row[1]) == pytest.approx(100 * official["All"]["pq"], abs=0.006)
    assert int(all_row[4]) == official["All"]["n"]
    assert [line.split()[0] for line in lines[2:4]] == ["Things", "Stuff"]
    assert any(line.startswith("absent-stuff (21)") for line in lines)


def test_two_workers_give_the_same_results(dataset, tmp_path):
    paths, official, _ = dataset
    out = tmp_path / "ours.json"
    proc = _run(paths, "--json-out", str(out), "--workers", "2", "--label-space", "auto")
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(out.read_text())
    assert_same_results(ours, json.loads(json.dumps(official)))   # JSON keys are strings


def _small(root: Path) -> dict:
    return write_case(root, random_case(5, num_images=2))


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _pred_png(paths) -> Path:
    return paths["pred_folder"] / "img001.png"


def _pred_ann(data: dict) -> dict:
    return next(a for a in data["annotations"] if a["file_name"] == "img001.png")


def _wrong_size(paths):
    write_panoptic_png(_pred_png(paths), read_panoptic_png(_pred_png(paths))[:, :-3])
    return _pred_png(paths), "differs from the ground truth's"


def _listed_not_in_png(paths):
    _edit_json(paths["pred_json"], lambda d: _pred_ann(d)["segments_info"].append({"id": 123, "category_id": 1}))
    return _pred_png(paths), r"segments_info ids [123] do not occur in the PNG"


def _png_id_not_listed(paths):
    _edit_json(paths["pred_json"], lambda d: _pred_ann(d)["segments_info"].pop())
    return _pred_png(paths), "are not listed in segments_info"


def _unknown_category(paths):
    _edit_json(paths["pred_json"], lambda d: _pred_ann(d)["segments_info"][0].update(category_id=99))
    return _pred_png(paths), "categories [99] that are not evaluated"


def _missing_png(paths):
    _pred_png(paths).unlink()
    return _pred_png(paths), "file not found"


def _missing_json(paths):
    paths["gt_json"].unlink()
    return paths["gt_json"], "file not found"


def _malformed_json(paths):
    paths["pred_json"].write_text('{"annotations": [')
    return paths["pred_json"], "malformed JSON"


def _no_prediction(paths):
    _edit_json(paths["pred_json"], lambda d: d["annotations"].remove(_pred_ann(d)))
    return paths["pred_json"], "no prediction for image 'img001'"


def _missing_folder(paths):
    paths["pred_folder"] = paths["pred_folder"].with_name("nowhere")
    return paths["pred_folder"], "folder not found"


def _png_not_readable(paths):
    _pred_png(paths).write_bytes(b"\x89PNG broken")
    return _pred_png(paths), "not a readable PNG"


def _sixteen_bit_png(paths):
    # the same ids in the high bytes, noise in the low bytes: narrowing would score it as the 8-bit file
    rgb = np.stack([(read_panoptic_png(_pred_png(paths)) >> s) & 255 for s in (0, 8, 16)], -1).astype(np.uint16)
    noise = np.random.default_rng(3).integers(0, 256, rgb.shape, dtype=np.uint16)
    assert cv2.imwrite(str(_pred_png(paths)), np.ascontiguousarray(((rgb << 8) | noise)[..., ::-1]))
    return _pred_png(paths), "16-bit PNG"


def _one_bit_png(paths):
    grey = np.zeros(read_panoptic_png(_pred_png(paths)).shape, np.uint8)
    assert cv2.imwrite(str(_pred_png(paths)), grey, [cv2.IMWRITE_PNG_BILEVEL, 1])
    return _pred_png(paths), "1-bit PNG"


@pytest.mark.parametrize("corrupt", [
    _sixteen_bit_png, _one_bit_png, _wrong_size, _listed_not_in_png, _png_id_not_listed, _unknown_category, _missing_png, _missing_json,
    _malformed_json, _no_prediction, _missing_folder, _png_not_readable])
def test_bad_input_gives_one_line_naming_the_file_and_exit_code_2(corrupt, tmp_path):
    paths = _small(tmp_path)
    assert main([f"--{k.replace('_', '-')}={v}" for k, v in paths.items()]) == 0   # valid before
    culprit, message = corrupt(paths)
    proc = _run(paths)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert str(culprit) in proc.stderr and message in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_label_space_check_names_the_gt_json(tmp_path):
    paths = _small(tmp_path)
    proc = _run(paths, "--label-space", "cityscapes")
    assert proc.returncode == 2
    assert f"{paths['gt_json']}: category 1 (thing) is not a thing category of label space 'cityscapes'" in proc.stderr


def test_prediction_json_without_categories_is_accepted(tmp_path):
    paths = _small(tmp_path)
    _edit_json(paths["pred_json"], lambda d: d.pop("categories"))
    proc = _run(paths)
    assert proc.returncode == 0, proc.stderr
    assert "2 images evaluated" in proc.stdout


def test_help_and_bad_workers():
    assert "usage" in subprocess.run([str(PANOPTIC_EVAL), "--help"], capture_output=True, text=True).stdout
    proc = subprocess.run([str(PANOPTIC_EVAL), "--gt-json", "a", "--gt-folder", "b", "--pred-json", "c",
                           "--pred-folder", "d", "--workers", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--workers must be at least 1" in proc.stderr


def test_png_ids_are_read_exactly(tmp_path):
    ids = np.random.default_rng(0).integers(0, 1 << 24, (16, 32)).astype(np.int32)
    write_panoptic_png(tmp_path / "a.png", ids)
    back = read_panoptic_png(tmp_path / "a.png")
    assert back.dtype == np.int32 and np.array_equal(back, ids)
