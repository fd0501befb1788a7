"""Weighted softmax cross-entropy for semantic segmentation (ICNet-style guidance terms)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from panoptic_ros.labels import IGNORE_INDEX


def semantic_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    class_weights: Sequence[float] | Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    check_labels: bool = True,
) -> Tensor:
    """Mean (optionally class-weighted) softmax cross-entropy over labelled pixels.

    Same normalisation as ``F.cross_entropy(reduction="mean")`` (divide by the summed
    weights of the labelled pixels), except that a target with no labelled pixel gives
    an exact zero that still depends on ``logits`` (a valid graph, no NaN).

    Args:
        logits: (B, C, h, w) unnormalised scores.
        target: (B, h, w) int64 train indices, ``ignore_index`` = unlabelled.
        class_weights: optional (C,) weight per class.
        ignore_index: label excluded from the loss.
        check_labels: raise on a label that is neither a class nor ``ignore_index``.
            The check reads the device on the host; the training loss skips it, as
            ``training/targets.py`` builds labels in range (and ``F.cross_entropy``
            still rejects an out-of-range label, on the GPU by a device-side assert).
    Returns:
        Scalar tensor.
    Raises:
        ValueError: shapes disagree, or a label is neither a class nor ``ignore_index``.
    """
    if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match "
                         "(expected (B, C, h, w) and (B, h, w))")
    logits = logits.float()  # a sum over ~1e5 pixels overflows float16; bf16 rounds it coarsely
    num_classes = logits.shape[1]
    labelled = target != ignore_index
    if check_labels and bool((((target < 0) | (target >= num_classes)) & labelled).any()):
        raise ValueError(f"target holds labels outside [0, {num_classes}) other than {ignore_index}")
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        if weight.shape != (num_classes,):
            raise ValueError(f"class_weights: expected {num_classes} values, got {tuple(weight.shape)}")
    # No host read below: an image without labelled pixels sums to 0 (with a zero gradient).
    total = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="sum")
    if weight is None:
        norm = labelled.sum().to(logits.dtype)
    else:
        norm = torch.where(labelled, weight[target.clamp(0, num_classes - 1)], 0).sum()
    # No labelled pixel, or all-zero class weights, give 0 / 0; the clamp turns that into 0.
    return total / norm.clamp(min=torch.finfo(logits.dtype).tiny)
