"""Offline replay of a bag with ground truth: outputs per frame, scores equal to panoptic-eval
on the exported files, an output bag that rosbags and the mcap readers read, the report."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from replay_helpers import read_bag, read_mcap

from panoptic_ros.eval.cli import evaluate_coco_panoptic
from panoptic_ros.eval.miou import SemanticConfusion
from panoptic_ros.eval.pq import PanopticEvaluator
from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.replay import cli
from panoptic_ros.replay.run import ReplayOptions, replay
from panoptic_ros.synthstreet.bag import DEFAULT_START_NS, GT_TOPIC, IMAGE_TOPIC
from panoptic_ros.types import PanopticResult

OUTPUTS = ("panoptic", "semantic", "overlay", "detections")
STAMPS = [DEFAULT_START_NS + k * 100_000_000 for k in range(6)]


@pytest.fixture(scope="module")
def offline(tmp_path_factory, scored_bag, tiny):
    out = tmp_path_factory.mktemp("offline") / "run"
    report = replay(ReplayOptions(bag=scored_bag, mode="offline", model="ciae", weights=tiny["ciae"], out=out,
                                  device="cpu", progress=False))
    return report, out


def test_every_frame_has_each_output_with_its_stamp_and_log_time(offline):
    report, out = offline
    f = report["figures"]
    assert (f["frames_in"], f["frames_sent"], f["frames_out"], f["dropped"]) == (6, 6, 6, 0)
    assert report["errors"] == [] and not report["interrupted"]
    assert report["image_topic"] == IMAGE_TOPIC and report["gt_topic"] == GT_TOPIC
    topics = read_bag(out / "bag")
    assert sorted(topics) == sorted([f"/panoptic_node/{n}" for n in OUTPUTS] + ["/panoptic_node/label_info"])
    for name in OUTPUTS:
        messages = topics[f"/panoptic_node/{name}"]
        assert [stamp for _, stamp, _ in messages] == STAMPS, name
        assert [log for log, _, _ in messages] == STAMPS, name  # logged at the input's log time
        assert {m.header.frame_id for _, _, m in messages} == {"camera"}
    names = [c.class_name for c in topics["/panoptic_node/label_info"][0][2].class_map]
    assert names == [c.name for c in CITYSCAPES.categories] + ["void"]
    lat = f["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert f["throughput_fps"] > 0 and sum(f["latency_histogram"]["counts"]) == 6
    assert report["figures"]["model_ms"]["p50"] > 0


def test_outputs_are_the_predictors_results(offline, scored_bag, tiny):
    _, out = offline
    frames = read_bag(scored_bag)[IMAGE_TOPIC]
    predicted = read_bag(out / "bag")["/panoptic_node/panoptic"]
    predictor = Predictor.from_checkpoint(tiny["ciae"], device="cpu")
    for (_, _, image), (_, _, panoptic) in zip(frames, predicted):
        expected = predictor.predict(image.data.reshape(image.height, image.width, 3)).panoptic
        assert panoptic.encoding == "32SC1"
        np.testing.assert_array_equal(panoptic.data.view("<i4").reshape(panoptic.height, panoptic.width), expected)


def test_scores_equal_panoptic_eval_on_the_exported_files_and_a_direct_computation(offline, scored_bag):
    report, out = offline
    ev = report["evaluation"]
    coco = report["coco"]
    official = evaluate_coco_panoptic(coco["gt_json"], coco["gt_folder"], coco["pred_json"],
                                      coco["pred_folder"]).summarize()
    for group in ("All", "Things", "Stuff"):
        assert ev["pq"][group] == pytest.approx(official[group], abs=1e-12)
    for row in ev["per_class"]:
        assert row["pq"] == pytest.approx(official["per_class"][row["id"]]["pq"], abs=1e-12)
    assert 0.0 < ev["pq"]["All"]["pq"] < 1.0 and ev["frames_evaluated"] == 6
    # the same pairs scored directly
    gt = [m for _, _, m in read_bag(scored_bag)[GT_TOPIC]]
    pred = [m for _, _, m in read_bag(out / "bag")["/panoptic_node/panoptic"]]
    evaluator, confusion = PanopticEvaluator(CITYSCAPES), SemanticConfusion(len(CITYSCAPES))
    for g, p in zip(gt, pred):
        pair = [PanopticResult.from_panoptic_map(m.data.view("<i4").reshape(m.height, m.width), CITYSCAPES)
                for m in (g, p)]
        evaluator.add(*pair)
        confusion.add_results(*pair, CITYSCAPES)
    assert ev["pq"]["All"]["pq"] == evaluator.summarize()["All"]["pq"]
    assert ev["miou"] == pytest.approx(confusion.miou(), abs=1e-12)


def test_the_output_bag_reads_with_the_mcap_readers(offline):
    _, out = offline
    topics = read_mcap(out / "bag")
    assert {t: len(m) for t, m in topics.items()} == {**{f"/panoptic_node/{n}": 6 for n in OUTPUTS},
                                                       "/panoptic_node/label_info": 1}
    assert all(d.id and d.results[0].hypothesis.class_id for m in topics["/panoptic_node/detections"]
               for d in m.detections)
    assert {(m.encoding, m.height, m.width) for m in topics["/panoptic_node/overlay"]} == {("rgb8", 64, 128)}


def test_report_files_are_self_contained(offline):
    report, out = offline
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", html), "external reference in report.html"
    assert html.count("<svg") == 3 and "data:image/jpeg;base64," in html and "PQ per class" in html
    data = json.loads((out / "report.json").read_text())
    assert data["figures"]["frames_out"] == 6 and data["evaluation"]["pq"]["All"]["n"] > 0
    assert len(data["sample_files"]) == 4 and all((out / "samples").glob("*_overlay.png"))


def test_cli_prints_the_summary_and_refuses_to_overwrite(tmp_path, scored_bag, tiny, capsys):
    args = [str(scored_bag), "--offline", "--model", "ciae", "--weights", str(tiny["ciae"]), "--out",
            str(tmp_path / "r"), "--device", "cpu", "--max-frames", "2", "--no-gt", "--samples", "1"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    # the backend and precision that ran (--backend auto, the default, chose it on the CPU)
    assert "ciae offline (onnxruntime fp32, auto): 2 frames sent, 2 outputs, 0 dropped" in printed
    assert "ground truth ignored" in printed
    assert cli.main(args) == cli.EXIT_ERROR
    assert "already holds bag" in capsys.readouterr().err
    assert cli.main(args + ["--force"]) == 0


@pytest.mark.parametrize("change, message", [
    ({"bag": "missing_bag"}, "missing_bag: no such bag"),
    ({"weights": "nowhere/model"}, "nowhere/model.safetensors: checkpoint file not found"),
    ({"--image-topic": "/camera/panoptic_gt"}, "is not a camera topic"),
    ({"--gt-topic": "/camera/image_raw"}, "must be a 32SC1"),
])
def test_cli_errors_name_the_culprit(tmp_path, scored_bag, tiny, capsys, change, message):
    bag = str(tmp_path / change["bag"]) if "bag" in change else str(scored_bag)
    args = [bag, "--offline", "--model", "ciae", "--weights", change.get("weights", str(tiny["ciae"])),
            "--out", str(tmp_path / "r")]
    args += [x for k, v in change.items() if k.startswith("--") for x in (k, v)]
    assert cli.main(args) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
