"""Score a replay's output bag against the ground truth of its input bag.

Predictions (``~/panoptic`` of the output bag) and ground truth (the input bag's 32SC1
topic) are paired by header stamp in one streaming pass over both bags, merged by log
time; only frames that have an output are kept waiting for their partner, so memory does
not grow with the bag. Scores use the project's accumulator
(:class:`~panoptic_ros.eval.scores.PanopticScores`: official PQ rules, Cityscapes mIoU),
the one training-time evaluation uses, and both sides are exported in COCO
panoptic format so ``panoptic-eval`` or the official scripts can re-score them.

The same pass collects a few *sample frames* (input image, prediction, ground truth) for
the report.
"""
from __future__ import annotations

import heapq
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from panoptic_ros.eval.coco_format import write_coco_panoptic
from panoptic_ros.eval.scores import GROUPS, PanopticScores, finite_or_none
from panoptic_ros.labels import LabelSpace
from panoptic_ros.replay.bag import BagError, BagSource, ReplayTopics, cdr_stamp, stamp_text
from panoptic_ros.replay.messages import decode_camera, decode_panoptic
from panoptic_ros.types import PanopticFormatError, PanopticResult


@dataclass
class SampleFrame:
    """One frame for the report: any of its pictures may be missing."""

    stamp_ns: int
    rgb: np.ndarray | None = None        # (H, W, 3) uint8
    pred: PanopticResult | None = None
    gt: PanopticResult | None = None


class _CocoSink:
    """Feeds :func:`write_coco_panoptic` from a queue in its own thread, so results can be
    pushed one at a time while the function writes PNGs and, at the end, the JSON."""

    def __init__(self, json_path: Path, folder: Path, label_space: LabelSpace):
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(json_path, folder, label_space), daemon=True)
        self._thread.start()

    def _run(self, json_path, folder, label_space) -> None:
        try:
            write_coco_panoptic(json_path, folder, iter(self._queue.get, None), label_space)
        except BaseException as exc:  # handed to the caller in close()
            self._error = exc
            while self._queue.get() is not None:  # let put() go on until close()
                pass

    def put(self, image_id: str, result: PanopticResult) -> None:
        self._queue.put((image_id, f"{image_id}.png", result))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def coco_image_id(stamp_ns: int) -> str:
    """The COCO ``image_id`` of a frame: its header stamp as ``<sec>_<nanosec>``."""
    return stamp_text(stamp_ns).replace(".", "_")


def replay_summary(scores: PanopticScores) -> dict:
    """The replay report's JSON-ready scores: ``pq`` (PQ/SQ/RQ, ``n`` of All/Things/Stuff),
    ``per_class`` rows (with TP/FP/FN, IoU and the category's colour), ``miou``,
    ``pixel_accuracy`` (None instead of NaN) and ``frames_evaluated``."""
    summary = scores.summary()
    groups = {group: {k: float(v) if k != "n" else int(v) for k, v in summary[group].items()} for group in GROUPS}
    per_class = [{**row, "color": list(scores.label_space.category(row["id"]).color)}
                 for row in scores.per_class_rows()]
    return {"pq": groups, "per_class": per_class, "miou": finite_or_none(summary["semantic"]["miou"]),
            "pixel_accuracy": finite_or_none(summary["semantic"]["pixel_accuracy"]),
            "frames_evaluated": scores.num_images}


def _tagged(messages: Iterator, tags: dict[str, str]) -> Iterator[tuple[int, str, int, bytes]]:
    """(log time, tag of the topic, stamp, data) per message."""
    for m in messages:
        yield m.log_ns, tags[m.topic], cdr_stamp(m.data), m.data


def score_outputs(source: BagSource, topics: ReplayTopics, outputs: BagSource, panoptic_topic: str,
                  label_space: LabelSpace, *, processed: set[int], coco_dir: Path | None = None,
                  sample_stamps: set[int] = frozenset(), overall: PanopticScores | None = None
                  ) -> tuple[dict | None, dict[int, SampleFrame]]:
    """Pair predictions with ground truth by stamp and score them; collect sample frames.

    Args:
        source: the input bag.
        topics: its camera and ground-truth topics (``gt`` None: no scores).
        outputs: the output bag; ``panoptic_topic`` holds the predictions.
        label_space: the model's categories (the ground truth must use them).
        processed: stamps that have an output (ground truth of other frames is skipped).
        coco_dir: where to export ``pred.json``/``pred/`` and, with ground truth,
            ``gt.json``/``gt/`` (image ids: :func:`coco_image_id`); None: no export.
        sample_stamps: frames whose pictures to return.
        overall: also add every scored pair here (the scores of several cameras together).
    Returns:
        scores (None without ground truth) and stamp -> :class:`SampleFrame`.
    Raises:
        BagError: ground truth that does not decode, does not fit the label space, or
            differs in size from the prediction (the message names topic and stamp).
    """
    tags = {topics.image.name: "image", panoptic_topic: "pred"}
    if topics.gt is not None:
        tags[topics.gt.name] = "gt"
    inputs = [t for t, tag in tags.items() if tag == "gt" or (tag == "image" and sample_stamps)]
    streams = [_tagged(outputs.messages([panoptic_topic]), tags), _tagged(source.messages(inputs), tags)]
    pairing = _Pairing(topics, panoptic_topic, label_space, processed, coco_dir, sample_stamps, overall)
    try:
        for _, tag, stamp, data in heapq.merge(*streams, key=lambda item: item[0]):
            pairing.add(tag, stamp, data)
    finally:
        pairing.close()
    return pairing.summary(), pairing.samples


class _Pairing:
    """Matches predictions and ground truth by stamp as messages stream in; exports both
    in COCO format (predictions even without ground truth)."""

    def __init__(self, topics: ReplayTopics, panoptic_topic: str, label_space: LabelSpace, processed: set[int],
                 coco_dir: Path | None, sample_stamps: set[int], overall: PanopticScores | None = None):
        self.topics = {"image": topics.image.name, "pred": panoptic_topic,
                       "gt": topics.gt.name if topics.gt is not None else None}
        self.image_type = topics.image.msgtype
        self.label_space = label_space
        self.processed = processed
        self.samples = {s: SampleFrame(s) for s in sample_stamps}
        self.scores = PanopticScores(label_space) if topics.gt is not None else None
        self.overall = overall
        self.sinks: dict[str, _CocoSink] = {}
        if coco_dir is not None:
            for tag in ("pred", "gt") if self.scores is not None else ("pred",):
                self.sinks[tag] = _CocoSink(coco_dir / f"{tag}.json", coco_dir / tag, label_space)
        self.pending: dict[str, dict[int, PanopticResult]] = {"pred": {}, "gt": {}}

    def add(self, tag: str, stamp: int, data: bytes) -> None:
        sample = self.samples.get(stamp)
        if tag == "image":
            if sample is not None:
                sample.rgb = decode_camera(data, self.image_type)[0]
            return
        if stamp not in self.processed:  # ground truth of a dropped frame
            return
        result = self._result(data, tag, stamp)
        if sample is not None:
            setattr(sample, tag, result)
        if tag in self.sinks:
            self.sinks[tag].put(coco_image_id(stamp), result)
        if self.scores is None:
            return
        other = "gt" if tag == "pred" else "pred"
        if stamp in self.pending[other]:
            pair = {tag: result, other: self.pending[other].pop(stamp)}
            try:
                self.scores.add(pair["gt"], pair["pred"])
                if self.overall is not None:
                    self.overall.add(pair["gt"], pair["pred"])
            except PanopticFormatError as exc:
                raise BagError(f"{self.topics['pred']} and {self.topics['gt']} at stamp {stamp_text(stamp)}: "
                               f"{exc}") from None
        else:
            self.pending[tag][stamp] = result

    def _result(self, data: bytes, tag: str, stamp: int) -> PanopticResult:
        topic = self.topics[tag]
        try:
            return PanopticResult.from_panoptic_map(decode_panoptic(data, topic), self.label_space)
        except (ValueError, PanopticFormatError) as exc:
            raise BagError(f"{topic} at stamp {stamp_text(stamp)}: {exc}") from None

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()

    def summary(self) -> dict | None:
        if self.scores is None:
            return None
        return {**replay_summary(self.scores), "frames_without_gt": len(self.pending["pred"])}
