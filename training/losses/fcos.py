"""FCOS detection losses: sigmoid focal loss, center-ness BCE and IoU loss.

As in FCOS (Tian et al. 2019): the focal loss (alpha 0.25, gamma 2) is summed over all
locations and classes and divided by the number of positive locations; the center-ness
BCE is averaged over positives; the box loss is averaged over positives weighted by their
center-ness targets. Under ``torch.distributed`` these normalisers are averaged over the
ranks so every rank weighs its batch the same way; every rank runs those all-reduces,
whatever its data (a rank with no positive location included).

The box loss is the paper's IoU loss ``-log(IoU)`` (UnitBox, CIAE Eq. 15) by default, or
``1 - GIoU``. Positives are whatever the targets mark (for CIAE: locations inside a GT
thing mask, see ``training/targets.py``).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F

IoUKind = Literal["iou", "giou"]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all ranks (a copy; unchanged without torch.distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.detach().clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _rank_mean(value: torch.Tensor, minimum: float) -> torch.Tensor:
    """A normaliser averaged over ranks, at least ``minimum``."""
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return (all_reduce_sum(value.detach().float()) / world).clamp(min=minimum)


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss (Lin et al. 2017).

    Args:
        logits: (..., C) raw scores.
        targets: (..., C) {0, 1} float targets.
        alpha: weight of positives (1 - alpha for negatives).
        gamma: focusing exponent.
    Returns:
        (..., C) losses.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * ce


def iou_loss(pred: torch.Tensor, target: torch.Tensor, kind: IoUKind = "iou", eps: float = 1e-6) -> torch.Tensor:
    """IoU loss between boxes given as distances from the same point.

    Args:
        pred: (M, 4) predicted (l, t, r, b) >= 0.
        target: (M, 4) target (l, t, r, b) >= 0.
        kind: ``iou`` -> ``-log(IoU)``; ``giou`` -> ``1 - GIoU``.
    Returns:
        (M,) losses.
    """
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    lo = torch.minimum(pred, target)
    inter = (lo[:, 0] + lo[:, 2]) * (lo[:, 1] + lo[:, 3])
    union = pred_area + target_area - inter
    iou = inter / union.clamp(min=eps)
    if kind == "iou":
        return -torch.log(iou.clamp(min=eps))
    if kind == "giou":
        hi = torch.maximum(pred, target)
        enclosing = ((hi[:, 0] + hi[:, 2]) * (hi[:, 1] + hi[:, 3])).clamp(min=eps)
        return 1 - (iou - (enclosing - union) / enclosing)
    raise ValueError(f"iou_kind: expected 'iou' or 'giou', got {kind!r}")


def _stack(value: torch.Tensor | list[torch.Tensor], name: str, device: torch.device) -> torch.Tensor:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"targets[{name!r}]: empty list")
        value = torch.stack([torch.as_tensor(v) for v in value])
    return torch.as_tensor(value).to(device)


def fcos_losses(outputs: dict[str, torch.Tensor], targets: dict, *, focal_alpha: float = 0.25,
                focal_gamma: float = 2.0, iou_kind: IoUKind = "iou") -> dict[str, torch.Tensor]:
    """The three FCOS terms.

    Args:
        outputs: ``cls_logits`` (B, N, C), ``centerness_logits`` (B, N), ``box_reg``
            (B, N, 4) (l, t, r, b) input pixels.
        targets: ``fcos_labels`` (B, N) int64 class or -1, ``fcos_boxes`` (B, N, 4),
            ``fcos_centerness`` (B, N); tensors or per-image lists.
    Returns:
        ``fcos_cls``, ``fcos_ctr``, ``fcos_reg`` scalar losses.
    """
    logits = outputs["cls_logits"]
    device = logits.device
    labels = _stack(targets["fcos_labels"], "fcos_labels", device).long()
    boxes = _stack(targets["fcos_boxes"], "fcos_boxes", device).float()
    centerness = _stack(targets["fcos_centerness"], "fcos_centerness", device).float()
    if labels.shape != logits.shape[:2]:
        raise ValueError(f"targets['fcos_labels']: shape {tuple(labels.shape)} does not match the model's "
                         f"{tuple(logits.shape[:2])} locations (image size or level layout differs)")
    num_classes = logits.shape[-1]
    if labels.numel() and (labels.max() >= num_classes or labels.min() < -1):
        raise ValueError(f"targets['fcos_labels']: values must lie in -1..{num_classes - 1}")
    pos = labels >= 0
    onehot = torch.zeros_like(logits)
    onehot[pos] = F.one_hot(labels[pos], num_classes).to(logits.dtype)
    ctr_target = centerness[pos]
    # Both normalisers are all-reduced here, before any data-dependent branch: every rank
    # must run the same collectives in the same order, also a rank without positives
    # (a crop without things), or the ranks' all-reduces pair up wrongly and training hangs.
    num_pos = _rank_mean(pos.sum(), 1.0)
    ctr_norm = _rank_mean(ctr_target.sum(), 1e-6)
    cls_loss = sigmoid_focal_loss(logits, onehot, alpha=focal_alpha, gamma=focal_gamma).sum() / num_pos

    if ctr_target.numel() == 0:  # keep the graph connected so DDP sees every parameter used
        zero = outputs["centerness_logits"].sum() * 0 + outputs["box_reg"].sum() * 0
        return {"fcos_cls": cls_loss, "fcos_ctr": zero, "fcos_reg": zero.clone()}
    ctr_logits = outputs["centerness_logits"][pos]
    ctr_loss = F.binary_cross_entropy_with_logits(ctr_logits, ctr_target, reduction="sum") / num_pos
    reg = iou_loss(outputs["box_reg"][pos], boxes[pos], iou_kind)
    reg_loss = (reg * ctr_target).sum() / ctr_norm
    return {"fcos_cls": cls_loss, "fcos_ctr": ctr_loss, "fcos_reg": reg_loss}
