"""Semantic mean IoU from a confusion matrix, with the Cityscapes pixel-level rules.

The rules of cityscapesscripts' ``evalPixelLevelSemanticLabeling``, on train indices:
pixels whose ground truth is ignored (255) do not count; a prediction of 255 on a
labelled pixel is a miss (a FN of the GT class, a FP of no class); per class
``IoU = TP / (TP + FP + FN)``; a class with no GT and no prediction pixel has IoU NaN
and is left out of the mean (the mean of no class is NaN).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from panoptic_ros.labels import IGNORE_INDEX, LabelSpace
from panoptic_ros.types import PanopticResult

_VALUES = 256   # train-index maps are 8-bit: 0..C-1 classes, 255 ignore


class SemanticConfusion:
    """Accumulates a (C, C + 1) confusion matrix of train-index maps.

    Rows are GT classes, columns predicted classes, the last column predictions of 255.

    Args:
        num_classes: C, at most 255.
    """

    def __init__(self, num_classes: int):
        if not 0 < num_classes < IGNORE_INDEX:
            raise ValueError(f"num_classes must lie in [1, {IGNORE_INDEX - 1}], got {num_classes}")
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes + 1), np.int64)

    def __repr__(self) -> str:
        return f"SemanticConfusion({self.num_classes} classes, {int(self.matrix.sum())} pixels)"

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Count one image.

        Args:
            gt: (H, W) integer train indices, 255 = ignore.
            pred: (H, W) integer predicted train indices, 255 = no class.
        Raises:
            ValueError: shapes differ, or a value is neither a class nor 255.
        """
        gt, pred = np.asarray(gt), np.asarray(pred)
        if gt.shape != pred.shape:
            raise ValueError(f"ground truth shape {gt.shape} and prediction shape {pred.shape} differ")
        for name, values in (("ground truth", gt), ("prediction", pred)):
            if not np.issubdtype(values.dtype, np.integer):
                raise ValueError(f"{name} must hold integer train indices, got {values.dtype}")
            if values.size and (values.min() < 0 or values.max() >= _VALUES):
                bad = values.min() if values.min() < 0 else values.max()
                raise ValueError(f"{name} holds {bad}, not a train index of {self.num_classes} classes nor 255")
        # One bincount over all 256 x 256 (gt, pred) value pairs, no masks.
        pairs = np.multiply(gt.ravel(), _VALUES, dtype=np.intp)
        pairs += pred.ravel()
        counts = np.bincount(pairs, minlength=_VALUES * _VALUES).reshape(_VALUES, _VALUES)
        self._check_values(counts)
        c = self.num_classes
        self.matrix[:, :c] += counts[:c, :c]
        self.matrix[:, c] += counts[:c, IGNORE_INDEX]

    def _check_values(self, counts: np.ndarray) -> None:
        c = self.num_classes
        bad_gt = np.flatnonzero(counts[c:IGNORE_INDEX].sum(axis=1))
        if len(bad_gt):
            raise ValueError(f"ground truth holds {c + int(bad_gt[0])}, not a train index of {c} classes nor 255")
        bad_pred = np.flatnonzero(counts[:, c:IGNORE_INDEX].sum(axis=0))
        if len(bad_pred):
            raise ValueError(f"prediction holds {c + int(bad_pred[0])}, not a train index of {c} classes nor 255")

    def add_results(self, gt: PanopticResult, pred: PanopticResult, label_space: LabelSpace) -> None:
        """Count one image given as panoptic results (VOID -> 255)."""
        if len(label_space) != self.num_classes:
            raise ValueError(f"label space {label_space.name!r} has {len(label_space)} classes, "
                             f"this confusion {self.num_classes}")
        self.add(gt.semantic_map(label_space), pred.semantic_map(label_space))

    def merge(self, other: "SemanticConfusion") -> "SemanticConfusion":
        """Add another confusion (same class count) into this one; returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge confusions of {other.num_classes} and {self.num_classes} classes")
        self.matrix += other.matrix
        return self

    def per_class_iou(self) -> np.ndarray:
        """(C,) float64 IoU per class, NaN where a class has no GT and no prediction."""
        c = self.num_classes
        tp = np.diag(self.matrix[:, :c]).astype(np.float64)
        fn = self.matrix.sum(axis=1) - tp
        fp = self.matrix[:, :c].sum(axis=0) - tp
        denominator = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, tp / denominator, np.nan)

    def miou(self) -> float:
        """Mean IoU over the classes that occur (NaN if none does)."""
        iou = self.per_class_iou()
        valid = ~np.isnan(iou)
        return float(iou[valid].mean()) if valid.any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Correct pixels over labelled pixels (NaN if none is labelled)."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix[:, : self.num_classes]) / total) if total else float("nan")

    def summarize(self, label_space: LabelSpace | None = None) -> dict:
        """``miou``, ``pixel_accuracy`` and ``per_class`` IoU keyed by category id (with a
        label space) or by train index."""
        keys = label_space.ids if label_space is not None else range(self.num_classes)
        per_class = {int(k): float(v) for k, v in zip(keys, self.per_class_iou())}
        return {"miou": self.miou(), "pixel_accuracy": self.pixel_accuracy(), "per_class": per_class}


def miou_of_results(pairs: Iterable[tuple[PanopticResult, PanopticResult]], label_space: LabelSpace) -> dict:
    """:meth:`SemanticConfusion.summarize` over (gt, prediction) result pairs."""
    confusion = SemanticConfusion(len(label_space))
    for gt, pred in pairs:
        confusion.add_results(gt, pred, label_space)
    return confusion.summarize(label_space)
