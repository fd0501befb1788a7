"""Non-maximum suppression in plain torch (no torchvision CPU build exists here).

The IoU matrix of all candidates is computed in one tensor expression on the candidates'
device; suppression across classes is masked out with a same-class matrix (exact, unlike
shifting boxes by a class offset, which loses float precision on large coordinates). The
greedy pass (:func:`greedy_keep`) then runs on the same device as a fixed-point iteration
of matrix-vector products, reading back one small tensor every few iterations; above
``_DEVICE_GREEDY_MAX`` candidates it walks the matrix on the CPU instead (one row OR per
*kept* box), where the (N, N) float matrix would cost more than the loop.

Semantics (torchvision's): boxes are x0, y0, x1, y1 with area (x1 - x0) * (y1 - y0); a box
is suppressed by a higher-scoring kept box of the same class whose IoU with it is strictly
greater than the threshold; equal scores keep the lower index first.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_DEVICE_GREEDY_MAX = 4096
"""Most candidates whose greedy pass runs as matrix products (a (N, N) float32 matrix)."""


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
    limit = n if max_output is None else max_output
    if n <= _DEVICE_GREEDY_MAX:
        kept, _ = greedy_keep(suppress)
        return order[kept[:limit]]
    return order[_greedy_on_host(suppress, limit)]


def greedy_keep(suppress: Tensor, candidates: Tensor | None = None, *, extra_flags: Tensor | None = None,
                check_every: int = 4) -> tuple[Tensor, list[bool]]:
    """Greedy suppression of an ordered list on its device, without a host loop.

    Entry j is kept iff it is a candidate and no kept entry i < j suppresses it. That
    recursion has one solution (the greedy one), so it is the fixed point of
    ``keep <- candidates & (keep @ suppress == 0)`` iterated from all candidates; after t
    iterations the first t entries are final, and usually a few iterations settle all.
    Convergence is read back every ``check_every`` iterations.

    Args:
        suppress: (K, K) bool; ``suppress[i, j]`` (i < j): i, if kept, removes j. Entries
            on and below the diagonal are ignored.
        candidates: (K,) bool, the entries that may be kept (default: all).
        extra_flags: (F,) bool read back in the same host read (saves one).
    Returns:
        (k,) int64 indices of the kept entries, ascending, and the F flags as bools.
    """
    if candidates is None:
        candidates = torch.ones(suppress.shape[0], dtype=torch.bool, device=suppress.device)
    extra = (extra_flags if extra_flags is not None else candidates[:0]).to(torch.float32)
    # Row j of ``weight``: the entries that suppress j; ``blocked`` is 1 where j may not be
    # kept. 0/1 products summed in float32 are exact (K < 2**24), also under TF32.
    weight = suppress.triu(1).t().to(torch.float32)
    keep = candidates.to(torch.float32)
    blocked = 1.0 - keep
    while True:
        for _ in range(check_every):
            previous = keep
            keep = torch.pow(0.0, torch.addmv(blocked, weight, keep))   # 0 ** 0 = 1 (kept), 0 ** n = 0 (n > 0)
        # One read: the kept count, how many entries changed, the caller's flags.
        info = torch.cat([keep.sum(0, True), (keep - previous).abs().sum(0, True), extra]).tolist()
        if not info[1]:
            break
    # Kept entries first, in order (a stable sort needs no host read for their count).
    kept = torch.argsort(keep, descending=True, stable=True)[:round(info[0])]
    return kept, [bool(f) for f in info[2:]]


def _greedy_on_host(suppress: Tensor, limit: int) -> Tensor:
    """Greedy pass on the CPU: (k,) int64 kept positions (at most ``limit``)."""
    n, device = len(suppress), suppress.device
    suppress = np.triu(suppress.cpu().numpy(), k=1)  # row j suppresses later columns only
    removed = np.zeros(n, dtype=bool)
    kept = []
    for i in range(n):
        if removed[i]:
            continue
        kept.append(i)
        if len(kept) >= limit:
            break
        removed |= suppress[i]
    return torch.as_tensor(kept, dtype=torch.int64, device=device)
