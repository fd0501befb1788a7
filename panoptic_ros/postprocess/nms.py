"""Non-maximum suppression in plain torch (no torchvision CPU build exists here).

The IoU matrix of all candidates is computed in one tensor expression on the candidates'
device; suppression across classes is masked out with a same-class matrix (exact, unlike
shifting boxes by a class offset, which loses float precision on large coordinates). The
greedy pass then walks the score-sorted boolean matrix once on the CPU: one cheap row OR
per *kept* box, so its cost is bounded and independent of how suppressions chain.

Semantics (torchvision's): boxes are x0, y0, x1, y1 with area (x1 - x0) * (y1 - y0); a box
is suppressed by a higher-scoring kept box of the same class whose IoU with it is strictly
greater than the threshold; equal scores keep the lower index first.
"""
from __future__ import annotations

import numpy as np
import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) x0, y0, x1, y1 -> (N,) areas (0 for degenerate boxes)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU.

    Args:
        a: (N, 4) x0, y0, x1, y1.
        b: (M, 4) x0, y0, x1, y1.
    Returns:
        (N, M) IoU; 0 where the union is empty.
    """
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (hi - lo).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor | None, iou_threshold: float,
                max_output: int | None = None) -> torch.Tensor:
    """Class-wise greedy NMS.

    Args:
        boxes: (N, 4) x0, y0, x1, y1.
        scores: (N,) scores.
        classes: (N,) int class of each box; None = one class.
        iou_threshold: suppress when IoU > this.
        max_output: stop after this many kept boxes (None = all; 0 = none).
    Returns:
        (K,) int64 indices into ``boxes`` of the kept boxes, by descending score.
    """
    n = boxes.shape[0]
    if boxes.dim() != 2 or boxes.shape[1] != 4 or scores.shape != (n,):
        raise ValueError(f"batched_nms: boxes must be (N, 4) and scores (N,), got {tuple(boxes.shape)} "
                         f"and {tuple(scores.shape)}")
    if max_output is not None and max_output < 0:
        raise ValueError(f"batched_nms: max_output must be >= 0 or None, got {max_output}")
    if n == 0 or max_output == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    suppress = box_iou(sorted_boxes, sorted_boxes) > iou_threshold
    if classes is not None:
        sorted_classes = classes[order]
        suppress &= sorted_classes[:, None] == sorted_classes[None, :]
    suppress = np.triu(suppress.cpu().numpy(), k=1)  # row j suppresses later columns only
    removed = np.zeros(n, dtype=bool)
    kept = []
    limit = n if max_output is None else max_output
    for i in range(n):
        if removed[i]:
            continue
        kept.append(i)
        if len(kept) >= limit:
            break
        removed |= suppress[i]
    return order[torch.as_tensor(kept, dtype=torch.int64, device=boxes.device)]
