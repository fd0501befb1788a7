"""CIAE training loss (Gao et al., Eq. 3-15) and the category memory update.

``ciae_losses`` returns the four terms of Eq. 15, already weighted, with the CIAE part
split into its two halves: ``fcos_cls``, ``fcos_ctr``, ``fcos_reg``, ``ciae_cae``
(``L_CAE``) and ``ciae_iae`` (``alpha * L_IAE``); their sum is the paper's total loss.

Embedding loss (Eq. 5-9), for normalised pixel embeddings p_i and queries m_k:
``d = 1 - cos``; ``l'_ik = max(d_pos_i - d_ik + margin, 0)``; ``l_ik = -log(1 - l'_ik /
(2 + margin))``; per pixel the ``top_k`` largest l_ik over the queries are summed, and the
sum is divided by the number of valid pixels N. Eq. 6 sets ``d_neg = 0`` for the positive
query, which would add a term ``d_pos + margin`` that never vanishes; here the positive
query contributes nothing, so the loss is zero exactly when every pixel is nearer its own
query than every other query by more than the margin.

- CAE (Eq. 10): queries = the category memory (C_st stuff classes + one merged "thing"
  class); positive = the pixel's merged category.
- IAE (Eq. 11): queries = the C_st stuff memory embeddings + one mean embedding per thing
  segment of the image (Eq. 4: mean of the *unnormalised* embeddings, then L2-normalised;
  gradients flow through it); positive = the pixel's segment; thing pixels weigh
  ``thing_weight`` (5). Box filtering (Sec. IV-B): the similarity of a pixel to thing
  segment k is 0 (d = 1) outside k's box expanded ``box_expand`` (1.5) times about its
  centre. A pixel's own segment is never filtered (its box contains it by construction;
  this guards against rounding at the 1/4 scale).
- Memory (Eq. 13-14): the loss uses M_{t-1}; then the batch means of every category present
  (summed over ranks under torch.distributed, so every rank computes the same update)
  move the memory with momentum ``lambda_t = 1 - rate * (1 - t/T)^3`` and are re-normalised.

Everything is computed at the 1/4 scale of the embedding output and targets; cell
(u, v) of that grid stands for input pixel (4u + 2, 4v + 2), the centre pixel the
targets sample, whose centre (4u + 2.5, 4v + 2.5) is tested against the boxes (continuous
coordinates: pixel column c covers [c, c + 1), so a box's x1 is exclusive). One loop per image; no loop per pixel or query.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from panoptic_ros.labels import IGNORE_INDEX
from panoptic_ros.models.ciae import EMBED_STRIDE
from panoptic_ros.postprocess.ciae import inside_boxes
from panoptic_ros.training.losses.fcos import IoUKind, all_reduce_sum, fcos_losses


@dataclass(frozen=True)
class CIAELossConfig:
    """CIAE loss settings (paper values as defaults).

    Attributes:
        margin: triplet margin (0.15).
        top_k: losses kept per pixel (5).
        alpha: weight of L_IAE in L_CIAE (2).
        thing_weight: weight of thing pixels in L_IAE (5).
        box_filter: apply box-based filtering in L_IAE.
        box_expand: GT box expansion factor for filtering (1.5).
        memory_rate: the 0.0001 of Eq. 13.
        focal_alpha: focal loss alpha (0.25).
        focal_gamma: focal loss gamma (2).
        iou_kind: FCOS box loss, ``iou`` (-log IoU, the paper) or ``giou``.
    """

    margin: float = 0.15
    top_k: int = 5
    alpha: float = 2.0
    thing_weight: float = 5.0
    box_filter: bool = True
    box_expand: float = 1.5
    memory_rate: float = 1e-4
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    iou_kind: IoUKind = "iou"

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 2:
            raise ValueError(f"margin: must lie in [0, 2), got {self.margin}")
        if self.top_k < 1:
            raise ValueError(f"top_k: must be >= 1, got {self.top_k}")
        if self.alpha < 0 or self.thing_weight < 0:
            raise ValueError("alpha and thing_weight: must be >= 0")
        if self.box_expand < 1:
            raise ValueError(f"box_expand: must be >= 1, got {self.box_expand}")
        if not 0 <= self.memory_rate <= 1:
            raise ValueError(f"memory_rate: must lie in [0, 1], got {self.memory_rate}")


def memory_momentum(progress: float, rate: float = 1e-4) -> float:
    """Eq. 13: ``lambda_t = 1 - rate * (1 - t/T)^3`` with ``progress = t/T`` in [0, 1]."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress: expected step / total_steps in [0, 1], got {progress}")
    return 1.0 - rate * (1.0 - progress) ** 3


def embedding_loss(pixels: torch.Tensor, queries: torch.Tensor, positive: torch.Tensor, *, margin: float,
                   top_k: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel triplet loss to queries (Eq. 5-9 without the 1/N).

    Args:
        pixels: (P, E) L2-normalised pixel embeddings.
        queries: (Q, E) L2-normalised query embeddings.
        positive: (P,) int64 index of each pixel's query.
        margin: triplet margin.
        top_k: largest losses kept per pixel.
        keep: optional (P, Q) bool; False sets the similarity to 0 (box filtering).
    Returns:
        (P,) sum of each pixel's top-k losses.
    """
    sim = pixels @ queries.t()
    d_pos = 1 - sim.gather(1, positive[:, None])
    if keep is not None:
        sim = torch.where(keep, sim, torch.zeros_like(sim))
    hinge = F.relu(d_pos - (1 - sim) + margin)
    hinge = hinge.scatter(1, positive[:, None], 0.0)
    loss = -torch.log((1 - hinge / (2 + margin)).clamp(min=1e-6))
    return loss.topk(min(top_k, loss.shape[1]), dim=1).values.sum(1)


def ciae_losses(outputs: dict[str, torch.Tensor], targets: dict, *, config: CIAELossConfig,
                progress: float) -> dict[str, torch.Tensor]:
    """All CIAE training terms; updates the category memory in place.

    Args:
        outputs: train-mode model outputs (see :class:`panoptic_ros.models.ciae.CIAE`):
            ``cls_logits``, ``centerness_logits``, ``box_reg``, ``embeddings`` (B, E, h, w)
            unnormalised, ``category_memory`` (C_st + 1, E), the model's buffer.
        targets: the collated CIAE targets (``training/targets.py``): ``fcos_*`` and, at
            1/4 scale, ``category_map`` (B, h, w), ``segment_map`` (B, h, w); per image
            lists ``segment_category`` (K,), ``segment_is_thing`` (K,), ``segment_boxes``
            (K, 4) x0, y0, x1, y1 input pixels.
        config: loss settings.
        progress: ``step / total_steps`` in [0, 1] (memory momentum).
    Returns:
        ``fcos_cls``, ``fcos_ctr``, ``fcos_reg``, ``ciae_cae``, ``ciae_iae``.
    """
    lam = memory_momentum(progress, config.memory_rate)
    losses = fcos_losses(outputs, targets, focal_alpha=config.focal_alpha, focal_gamma=config.focal_gamma,
                         iou_kind=config.iou_kind)
    raw = outputs["embeddings"].float()
    memory = outputs["category_memory"]
    snapshot = F.normalize(memory.detach().float().clone(), dim=1)  # M_{t-1}, constant in the loss
    category_map, segment_map = _dense_targets(targets, raw)
    num_stuff = memory.shape[0] - 1
    cae_sum = iae_sum = raw.sum() * 0
    cae_count = iae_count = 0
    sums = torch.zeros_like(snapshot)
    counts = torch.zeros(snapshot.shape[0], device=raw.device)
    for b in range(raw.shape[0]):
        emb = raw[b].flatten(1).t()  # (h*w, E)
        cats = category_map[b].flatten()
        valid = cats != IGNORE_INDEX
        if cats[valid].numel() and (cats[valid].min() < 0 or cats[valid].max() > num_stuff):
            raise ValueError(f"targets['category_map'][{b}]: values must lie in 0..{num_stuff} or {IGNORE_INDEX}")
        pixels = F.normalize(emb[valid], dim=1)
        cae_sum = cae_sum + embedding_loss(pixels, snapshot, cats[valid], margin=config.margin,
                                           top_k=config.top_k).sum()
        cae_count += int(valid.sum())
        sums.index_add_(0, cats[valid], emb[valid].detach())
        counts.index_add_(0, cats[valid], torch.ones_like(cats[valid], dtype=counts.dtype))
        part, n = _instance_loss(emb, segment_map[b], targets, b, snapshot[:num_stuff], config, raw.shape[-1])
        iae_sum, iae_count = iae_sum + part, iae_count + n
    losses["ciae_cae"] = cae_sum / max(cae_count, 1)
    losses["ciae_iae"] = config.alpha * iae_sum / max(iae_count, 1)
    update_memory(memory, sums, counts, lam)
    return losses


def update_memory(memory: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, momentum: float) -> None:
    """Eq. 14 in place for the categories present in the batch (on any rank).

    Under torch.distributed every rank must call this once per step, whatever its batch
    holds (it all-reduces ``sums`` and ``counts``); ``ciae_losses`` always does.

    Args:
        memory: (C, E) memory buffer, modified in place.
        sums: (C, E) sums of unnormalised embeddings per category on this rank.
        counts: (C,) pixel counts per category on this rank.
        momentum: lambda_t.
    """
    with torch.no_grad():
        sums, counts = all_reduce_sum(sums), all_reduce_sum(counts)
        present = counts > 0
        batch_means = F.normalize(sums, dim=1)
        moved = F.normalize(momentum * memory.float() + (1 - momentum) * batch_means, dim=1)
        memory.copy_(torch.where(present[:, None], moved, memory.float()).to(memory.dtype))


def _dense_targets(targets: dict, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    maps = []
    for name in ("category_map", "segment_map"):
        value = targets[name]
        if isinstance(value, (list, tuple)):
            value = torch.stack([torch.as_tensor(v) for v in value])
        value = torch.as_tensor(value).to(raw.device).long()
        if value.shape != (raw.shape[0], *raw.shape[-2:]):
            raise ValueError(f"targets[{name!r}]: shape {tuple(value.shape)} does not match the 1/4-scale "
                             f"embeddings {(raw.shape[0], *raw.shape[-2:])}")
        maps.append(value)
    return maps[0], maps[1]


def _instance_loss(emb: torch.Tensor, segments: torch.Tensor, targets: dict, b: int, stuff_memory: torch.Tensor,
                   config: CIAELossConfig, width: int) -> tuple[torch.Tensor, int]:
    """L_IAE numerator and pixel count of one image.

    Args:
        emb: (h*w, E) unnormalised embeddings of the image.
        segments: (h, w) segment index, -1 = ignore.
        stuff_memory: (C_st, E) normalised stuff memory (M_{t-1}).
        width: w of the 1/4-scale grid.
    """
    device = emb.device
    seg_cat = torch.as_tensor(targets["segment_category"][b], device=device).long()
    is_thing = torch.as_tensor(targets["segment_is_thing"][b], device=device).bool()
    boxes = torch.as_tensor(targets["segment_boxes"][b], device=device).float()
    num_stuff = stuff_memory.shape[0]
    seg = segments.flatten()
    valid = seg >= 0
    if valid.sum() == 0:
        return emb.sum() * 0, 0
    if seg.max() >= len(seg_cat) or len(is_thing) != len(seg_cat) or len(boxes) != len(seg_cat):
        raise ValueError(f"targets: image {b} has segment_map ids up to {int(seg.max())} but "
                         f"{len(seg_cat)} segment_category, {len(is_thing)} segment_is_thing, "
                         f"{len(boxes)} segment_boxes entries")
    seg, pix = seg[valid], emb[valid]
    seg_sums = torch.zeros(len(seg_cat), emb.shape[1], device=device, dtype=emb.dtype).index_add(0, seg, pix)
    seg_counts = torch.bincount(seg, minlength=len(seg_cat))
    things = torch.nonzero(is_thing & (seg_counts > 0)).flatten()  # segments with pixels at 1/4
    queries = torch.cat([stuff_memory, F.normalize(seg_sums[things], dim=1)])
    lut = seg_cat.clone()  # stuff segment -> its stuff query; thing segment -> C_st + rank
    lut[things] = num_stuff + torch.arange(len(things), device=device)
    if (~is_thing).any() and seg_cat[~is_thing].max() >= num_stuff:
        raise ValueError(f"targets['segment_category'][{b}]: a stuff segment has category >= {num_stuff}")
    keep = None
    if config.box_filter and len(things):
        index = torch.nonzero(valid).flatten()
        # centre of the input pixel each cell samples: (4u + 2) + 0.5 in continuous coordinates
        xs = ((index % width) * EMBED_STRIDE + EMBED_STRIDE // 2).float() + 0.5
        ys = ((index // width) * EMBED_STRIDE + EMBED_STRIDE // 2).float() + 0.5
        inside = inside_boxes(boxes[things], xs, ys, expand=config.box_expand)
        keep = torch.cat([torch.ones(len(xs), num_stuff, dtype=torch.bool, device=device), inside], dim=1)
    per_pixel = embedding_loss(F.normalize(pix, dim=1), queries, lut[seg], margin=config.margin,
                               top_k=config.top_k, keep=keep)
    weight = torch.where(is_thing[seg], config.thing_weight, 1.0)
    return (per_pixel * weight).sum(), int(valid.sum())
