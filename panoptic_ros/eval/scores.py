"""One accumulator for panoptic and semantic scores of (ground truth, prediction) pairs.

:class:`PanopticScores` feeds every image to the official-rules PQ evaluator
(:class:`~panoptic_ros.eval.pq.PanopticEvaluator`) and to the Cityscapes-rules confusion
for mIoU (:class:`~panoptic_ros.eval.miou.SemanticConfusion`). Training-time evaluation,
``panoptic-evaluate`` and the replay scoring all use it, so their numbers agree.
"""
from __future__ import annotations

import math

from panoptic_ros.eval.miou import SemanticConfusion
from panoptic_ros.eval.pq import PanopticEvaluator
from panoptic_ros.labels import LabelSpace
from panoptic_ros.types import PanopticResult

GROUPS = ("All", "Things", "Stuff")


class PanopticScores:
    """PQ statistics and the semantic confusion, accumulated image by image.

    Args:
        label_space: the evaluated categories (ground truth and predictions use them).
        keep_matches: keep every image's PQ matches, so that the scores of consecutive
            shards of a dataset merge, in order, into exactly the scores of one pass
            (see :meth:`PanopticEvaluator.merge`).
    """

    def __init__(self, label_space: LabelSpace, *, keep_matches: bool = False):
        self.label_space = label_space
        self.panoptic = PanopticEvaluator(label_space, keep_matches=keep_matches)
        self.semantic = SemanticConfusion(len(label_space))

    def __repr__(self) -> str:
        return f"PanopticScores({self.label_space.name!r}, {self.num_images} images)"

    @property
    def num_images(self) -> int:
        return self.panoptic.num_images

    def add(self, gt: PanopticResult, pred: PanopticResult) -> None:
        """Score one image.

        Args:
            gt: ground truth, (H, W) panoptic ids (a thing with instance 0 is crowd).
            pred: the prediction at the same (H, W).
        Raises:
            PanopticFormatError: the sizes differ, or the prediction holds a category
                that is not evaluated.
        """
        self.panoptic.add(gt, pred)
        self.semantic.add_results(gt, pred, self.label_space)

    def merge(self, other: "PanopticScores") -> "PanopticScores":
        """Add another accumulator over the same label space into this one; returns self."""
        if other.label_space.name != self.label_space.name:
            raise ValueError(f"cannot merge scores over label spaces {other.label_space.name!r} "
                             f"and {self.label_space.name!r}")
        self.panoptic.merge(other.panoptic)
        self.semantic.merge(other.semantic)
        return self

    def summary(self) -> dict:
        """The evaluator's dict (``All``/``Things``/``Stuff``: ``pq``, ``sq``, ``rq`` as
        fractions and ``n``; ``per_class`` keyed by category id) plus ``semantic`` (mIoU,
        pixel accuracy, per-class IoU keyed by category id), ``miou`` and ``images``.
        mIoU and IoUs are NaN where no class (that class) occurs."""
        result = self.panoptic.summarize()
        result["semantic"] = self.semantic.summarize(self.label_space)
        result["miou"] = result["semantic"]["miou"]
        result["images"] = self.num_images
        return result

    def per_class_rows(self) -> list[dict]:
        """One JSON-ready row per category in label-space order: ``id``, ``name``,
        ``is_thing``, ``pq``, ``sq``, ``rq``, ``tp``, ``fp``, ``fn`` and ``iou`` (None
        where the class occurs in neither ground truth nor prediction)."""
        ev = self.panoptic
        pq = ev.summarize()["per_class"]
        iou = self.semantic.per_class_iou()
        rows = []
        for i, category_id in enumerate(ev.category_ids):
            scores = pq[category_id]
            rows.append({"id": category_id, "name": ev.names[i], "is_thing": bool(ev.is_thing[i]),
                         "pq": float(scores["pq"]), "sq": float(scores["sq"]), "rq": float(scores["rq"]),
                         "tp": int(ev.tp[i]), "fp": int(ev.fp[i]), "fn": int(ev.fn[i]),
                         "iou": finite_or_none(iou[self.label_space.train_index(category_id)])})
        return rows


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, None for NaN (JSON has no NaN)."""
    value = float(value)
    return None if math.isnan(value) else value
