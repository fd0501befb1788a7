"""Multi-camera replay: every camera topic of a bag through one model, scored per camera
and overall.

A bag with several camera topics (and no ``--image-topic``) is replayed whole. Each
camera is named after its namespace (``/front/image_raw`` -> ``front``) and paired with
the 32SC1 ground-truth topic in that namespace (``/front/panoptic_gt``), if any. Offline,
the frames run through the node's Predictor in batches (one frame per camera, as the
multi-camera node batches them); live, through one started node with a ``cameras``
parameter listing the bag's topics. Each camera's outputs go to
``<node>/<camera>/<output>`` in the output bag; it is scored on its own ground truth, and
all pairs together give the overall scores. Pure (the live runner is imported lazily).
"""
from __future__ import annotations

import datetime
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from panoptic_ros.eval.scores import PanopticScores
from panoptic_ros.replay.bag import (GT_ENCODING, BagError, BagSource, RawMessage, ReplayTopics, TopicInfo,
                                    camera_topics)
from panoptic_ros.replay.evaluate import replay_summary, score_outputs
from panoptic_ros.replay.messages import RECORDED_OUTPUTS
from panoptic_ros.replay.metrics import RunLog, summarize
from panoptic_ros.replay.outbag import OutputBag
from panoptic_ros.outputs import LABEL_INFO_TYPE, OUTPUT_TYPES
from panoptic_ros.serialized.image import COMPRESSED_TYPE, IMAGE_TYPE


@dataclass(frozen=True)
class ReplayCamera:
    """One camera of a multi-camera replay: its name and its topics."""

    name: str
    topics: ReplayTopics


def camera_namespace(topic: str) -> str:
    """``/front/image_raw`` and ``/front/image_raw/compressed`` -> ``/front``."""
    base = topic[:-len("/compressed")] if topic.endswith("/compressed") else topic
    return base.rsplit("/", 1)[0]


def _camera_name(namespace: str, index: int, taken: set[str]) -> str:
    """The last part of the namespace as a camera name (letters, digits, _), unique."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", namespace.rsplit("/", 1)[-1])
    if not name or not name[0].isalpha():
        name = f"camera{index}" if not name else f"camera_{name}"
    return name if name not in taken else f"{name}_{index}"


def replay_cameras(source: BagSource, *, use_gt: bool = True) -> list[ReplayCamera]:
    """Every camera topic of the bag, named and paired with its ground truth.

    Raises:
        BagError: fewer than two camera topics (a one-camera bag replays as before).
    """
    cameras = sorted(camera_topics(source.topics), key=lambda t: t.name)
    if len(cameras) < 2:
        raise BagError(f"{source.file}: a multi-camera replay needs several camera topics, found "
                       f"{len(cameras)}")
    truths = [t for t in source.topics.values() if t.msgtype == IMAGE_TYPE and t.encoding == GT_ENCODING]
    found, taken = [], set()
    for index, image in enumerate(cameras):
        namespace = camera_namespace(image.name)
        name = _camera_name(namespace, index, taken)
        taken.add(name)
        found.append(ReplayCamera(name, ReplayTopics(image, _ground_truth(namespace, truths) if use_gt else None)))
    return found


def _ground_truth(namespace: str, truths: list[TopicInfo]) -> TopicInfo | None:
    """The 32SC1 topic in ``namespace`` (several: the one named ``*gt*``), or None."""
    mine = [t for t in truths if camera_namespace(t.name) == namespace]
    if len(mine) > 1:
        mine = [t for t in mine if "gt" in t.name.rsplit("/", 1)[-1].lower().split("_")] or mine
    return mine[0] if len(mine) == 1 else None


def time_steps(frames: Iterable[RawMessage], inputs: Mapping[str, tuple[str, str]]
               ) -> Iterator[list[tuple[RawMessage, str, str]]]:
    """Messages in log order gathered into time steps until a camera repeats (one frame
    per camera of a synchronised rig), each frame as (message, message type, camera).

    Args:
        frames: camera messages in log order.
        inputs: topic -> (camera name, message type).
    """
    step: dict[str, tuple[RawMessage, str, str]] = {}
    for message in frames:
        camera, msgtype = inputs[message.topic]
        if camera in step:
            yield list(step.values())
            step = {}
        step[camera] = (message, msgtype, camera)
    if step:
        yield list(step.values())


def output_topics(node_topic: str, cameras: list[ReplayCamera]) -> dict[str, str]:
    """The recorded topics (``<node>/<camera>/<output>``) -> type, and ``<node>/label_info``."""
    topics = {f"{node_topic}/{c.name}/{name}": OUTPUT_TYPES[name] for c in cameras for name in RECORDED_OUTPUTS}
    return {**topics, f"{node_topic}/label_info": LABEL_INFO_TYPE}


def live_inputs(cameras: list[ReplayCamera]) -> dict[str, tuple[str, str]]:
    """camera -> (topic, type) a live replay publishes it on: ``/panoptic_replay/<camera>/image``
    (``.../image/compressed`` for a CompressedImage camera, which is how the node's
    ``cameras`` parameter tells the types apart, whatever the bag's topic names)."""
    return {c.name: (f"/panoptic_replay/{c.name}/image"
                     + ("/compressed" if c.topics.image.msgtype == COMPRESSED_TYPE else ""), c.topics.image.msgtype)
            for c in cameras}


def node_cameras(cameras: list[ReplayCamera]) -> list[str]:
    """The started node's ``cameras`` parameter: ``name:topic`` per camera (:func:`live_inputs`)."""
    return [f"{name}:{topic}" for name, (topic, _) in live_inputs(cameras).items()]


def run_cameras(runner, source: BagSource, cameras: list[ReplayCamera], out: Path, *, max_frames: int | None,
                progress) -> tuple[dict[str, RunLog], bool]:
    """Replay the cameras' frames through ``runner`` (started) into ``out/bag``.

    Returns:
        camera name -> its log, and whether Ctrl-C interrupted the run.
    """
    logs = {c.name: RunLog() for c in cameras}
    inputs = {c.topics.image.name: (c.name, c.topics.image.msgtype) for c in cameras}
    bag = OutputBag(out / "bag", output_topics(runner.node_topic, cameras),
                    latched=(f"{runner.node_topic}/label_info",))
    frames = source.messages(list(inputs))
    if max_frames is not None:
        frames = itertools.islice(frames, max_frames * len(cameras))
    interrupted = False
    try:
        runner.run_cameras(frames, inputs, bag, logs, progress)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bag.close()
    return logs, interrupted


def score_cameras(source: BagSource, cameras: list[ReplayCamera], logs: dict[str, RunLog], out: Path, *,
                  node_topic: str, label_space) -> tuple[dict[str, dict | None], dict | None]:
    """Score each camera on its own ground truth (COCO exports in ``out/coco/<camera>``);
    returns camera -> scores (None without ground truth) and the overall scores."""
    overall = PanopticScores(label_space)
    per_camera = {}
    with BagSource(out / "bag") as outputs:
        for camera in cameras:
            per_camera[camera.name], _ = score_outputs(
                source, camera.topics, outputs, f"{node_topic}/{camera.name}/panoptic", label_space,
                processed=logs[camera.name].processed_stamps(), coco_dir=out / "coco" / camera.name,
                overall=overall)
    scored = any(s is not None for s in per_camera.values())
    return per_camera, replay_summary(overall) if scored else None


def camera_report(*, bag: str, out: Path, run_info: dict, cameras: list[ReplayCamera], logs: dict[str, RunLog],
                  scores: dict[str, dict | None], overall: dict | None, wall_s: float, interrupted: bool,
                  errors: list[str]) -> dict:
    """The multi-camera report (``report.json``): per camera its topics, figures and
    scores; overall the frames and throughput of all cameras and the scores of all pairs."""
    per_camera = {}
    for camera in cameras:
        figures = summarize(logs[camera.name], wall_s=wall_s)
        figures.pop("timeline")
        per_camera[camera.name] = {"image_topic": camera.topics.image.name,
                                   "gt_topic": camera.topics.gt.name if camera.topics.gt else None,
                                   "figures": figures, "evaluation": scores.get(camera.name)}
    frames_out = sum(c["figures"]["frames_out"] for c in per_camera.values())
    report = {
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "bag": bag,
        "out": str(out), "run": run_info, "interrupted": interrupted, "errors": errors,
        "cameras": per_camera,
        "overall": {"frames_sent": sum(c["figures"]["frames_sent"] for c in per_camera.values()),
                    "frames_out": frames_out, "throughput_fps": frames_out / wall_s if wall_s > 0 else None,
                    "wall_s": wall_s, "evaluation": overall},
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def camera_summary_lines(report: dict) -> list[str]:
    """One line per camera and one overall (frames, throughput, PQ)."""
    def pq(evaluation: dict | None) -> str:
        if evaluation is None:
            return "no ground truth: no scores"
        p = evaluation["pq"]
        return (f"PQ {100 * p['All']['pq']:.1f} (things {100 * p['Things']['pq']:.1f}, stuff "
                f"{100 * p['Stuff']['pq']:.1f}) over {evaluation['frames_evaluated']} frames")

    run = report["run"]
    lines = [f"{run.get('model') or '?'} {run['mode']}, {len(report['cameras'])} cameras in one "
             f"{'node' if run['mode'] == 'live' else 'predictor'}:"]
    for name, camera in report["cameras"].items():
        f = camera["figures"]
        fps = "-" if f["throughput_fps"] is None else f"{f['throughput_fps']:.2f} fps"
        p50 = f["latency_ms"]["p50"]
        lines.append(f"  {name} ({camera['image_topic']}): {f['frames_sent']} sent, {f['frames_out']} outputs, "
                     f"{f['dropped']} dropped, latency p50 {'-' if p50 is None else f'{p50:.0f} ms'}, {fps}; "
                     f"{pq(camera['evaluation'])}")
    o = report["overall"]
    fps = "-" if o["throughput_fps"] is None else f"{o['throughput_fps']:.2f} fps"
    lines.append(f"  overall: {o['frames_sent']} sent, {o['frames_out']} outputs, {fps}; {pq(o['evaluation'])}")
    lines += [f"  warning: {e}" for e in report["errors"]]
    lines.append(f"  report: {Path(report['out']) / 'report.json'}")
    return lines
