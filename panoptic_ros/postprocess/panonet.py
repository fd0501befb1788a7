"""PanoNet post-processing: semantic argmax + class-wise mean-shift -> panoptic map.

From the eval-mode outputs of :class:`panoptic_ros.models.panonet.PanoNet` (torch or ONNX;
batch 1; any device):

1. ``semantic`` (1, H, W) gives every input pixel its class (argmax of the bilinearly
   upsampled 1/4 logits, computed in the network).
2. Stuff: every stuff class present becomes one segment (instance 0); segments smaller
   than ``min_stuff_area`` pixels become VOID.
3. Things, per class c: the 1/4 cells (4 x 4 input pixels each) in which c holds at
   least half the pixels are clustered by their ``embedding`` (E dims) with mean-shift
   (bin seeding, bandwidth ``bandwidths[name]`` or ``default_bandwidth``); with
   ``cluster_stride`` s > 1 only every s-th cell in both directions is clustered (s^2
   fewer points). Every pixel of class c then takes the nearest mode of its cell's
   embedding, so labels cover all pixels while clustering sees few points. Instances
   are numbered 1, 2, ... in mode order (densest first).
4. Instances smaller than ``min_area`` pixels become VOID rather than being merged into
   a neighbour: they are mostly spurious splits or mislabelled specks (paper, Fig. 4),
   and a VOID pixel costs nothing in PQ while a wrong merge lowers the IoU of a true
   instance.

Scores: the mean over a segment's pixels of the softmax probability of its class (from
the 1/4 logits of the pixel's cell).

Default bandwidth: ``2 * delta_v`` = 0.5. With the discriminative loss trained to zero,
every pixel lies within delta_v of its instance mean, so a window of radius 2 delta_v
around any pixel covers its whole instance while means stay 2 delta_d = 2 apart; the
paper starts from delta_v and tunes per class on training data
(``panoptic-bandwidth-search``), which writes ``bandwidths``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from panoptic_ros.labels import LabelSpace
from panoptic_ros.models.icnet import OUTPUT_STRIDE, guidance_size
from panoptic_ros.postprocess.meanshift import assign_to_modes, mean_shift
from panoptic_ros.types import LABEL_DIVISOR, PanopticResult

@dataclass(frozen=True)
class PanoNetPostprocessConfig:
    """Runtime-tunable PanoNet inference settings.

    Attributes:
        bandwidths: mean-shift bandwidth per thing class name (e.g. ``car: 0.6``).
        default_bandwidth: bandwidth of thing classes missing from ``bandwidths``.
        cluster_stride: cluster every n-th 1/4-scale cell in each direction (1 = all).
        min_bin_freq: minimum points in a seeding cell of the mean-shift grid.
        min_area: thing instances with fewer input pixels become VOID.
        min_stuff_area: stuff segments with fewer input pixels become VOID.
    """

    bandwidths: dict[str, float] = field(default_factory=dict)
    default_bandwidth: float = 0.5
    cluster_stride: int = 2
    min_bin_freq: int = 1
    min_area: int = 64
    min_stuff_area: int = 0

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.bandwidths.items() if not v > 0}
        if bad or not self.default_bandwidth > 0:
            raise ValueError(f"bandwidths / default_bandwidth: must be > 0, got "
                             f"{bad or self.default_bandwidth}")
        if self.cluster_stride < 1 or self.min_bin_freq < 1:
            raise ValueError("cluster_stride and min_bin_freq: must be >= 1")
        if self.min_area < 0 or self.min_stuff_area < 0:
            raise ValueError("min_area and min_stuff_area: must be >= 0")


def _check_outputs(outputs: Mapping[str, Tensor], label_space: LabelSpace) -> tuple[Tensor, Tensor, Tensor]:
    """The three outputs without batch dim, checked against each other."""
    missing = [k for k in ("semantic", "semantic_logits", "embedding") if k not in outputs]
    if missing:
        raise ValueError(f"PanoNet outputs lack {missing} (have {sorted(outputs)})")
    semantic, logits, embedding = outputs["semantic"], outputs["semantic_logits"], outputs["embedding"]
    if semantic.dim() != 3 or logits.dim() != 4 or embedding.dim() != 4 or \
            not semantic.shape[0] == logits.shape[0] == embedding.shape[0] == 1:
        raise ValueError(f"expected semantic (1, H, W), semantic_logits (1, C, h, w), embedding (1, E, h, w); "
                         f"got {tuple(semantic.shape)}, {tuple(logits.shape)}, {tuple(embedding.shape)}")
    size = guidance_size(semantic.shape[1], semantic.shape[2], OUTPUT_STRIDE)
    if tuple(logits.shape[2:]) != size or tuple(embedding.shape[2:]) != size:
        raise ValueError(f"semantic_logits {tuple(logits.shape)} and embedding {tuple(embedding.shape)} must be "
                         f"(1, *, {size[0]}, {size[1]}) for a {tuple(semantic.shape[1:])} semantic map")
    if logits.shape[1] != label_space.num_classes:
        raise ValueError(f"semantic_logits has {logits.shape[1]} classes, label space "
                         f"{label_space.name!r} has {label_space.num_classes}")
    return semantic[0].long(), logits[0].float(), embedding[0].float()


def _bandwidths(config: PanoNetPostprocessConfig, label_space: LabelSpace) -> dict[int, float]:
    """Train index -> bandwidth for every thing class."""
    names = {label_space.categories[i].name: i for i in label_space.thing_train_indices}
    unknown = sorted(set(config.bandwidths) - set(names))
    if unknown:
        raise ValueError(f"bandwidths: {unknown} are not thing classes of {label_space.name!r} "
                         f"(known: {', '.join(sorted(names))})")
    return {i: config.bandwidths.get(name, config.default_bandwidth) for name, i in names.items()}


def _cluster_class(counts: Tensor, embedding: Tensor, cell_area: Tensor, grid_width: int,
                   bandwidth: float, config: PanoNetPostprocessConfig) -> tuple[Tensor, Tensor]:
    """Mean-shift of one thing class over its 1/4 cells.

    Args:
        counts: (h*w,) pixels of the class in each cell.
        embedding: (h*w, E) cell embeddings.
        cell_area: (h*w,) input pixels per cell (16 but at the right/bottom border).
        grid_width: w.
        bandwidth: mean-shift bandwidth.
        config: stride and seeding settings.
    Returns:
        cells (N,) holding the class and their mode index (N,) int64 (0 = densest mode).
    """
    present = counts.nonzero().squeeze(1)
    pool = present[2 * counts[present] >= cell_area[present]]       # cells mostly of this class
    if len(pool) == 0:
        pool = present
    s = config.cluster_stride
    if s > 1:
        strided = pool[((pool // grid_width) % s == 0) & ((pool % grid_width) % s == 0)]
        pool = strided if len(strided) else pool
    _, modes = mean_shift(embedding[pool], bandwidth, bin_seeding=True, min_bin_freq=config.min_bin_freq)
    return present, assign_to_modes(embedding[present], modes)


def _number_instances(area: Tensor, min_area: int) -> Tensor:
    """(K,) instance number per mode: 1, 2, ... in mode order for modes with at least
    ``min_area`` pixels (at most 999, the largest), 0 (VOID) for the rest."""
    keep = area >= max(min_area, 1)
    if int(keep.sum()) >= LABEL_DIVISOR:
        largest = torch.zeros_like(keep)
        largest[torch.argsort(area, descending=True, stable=True)[:LABEL_DIVISOR - 1]] = True
        keep &= largest
    return torch.cumsum(keep, 0) * keep


def _thing_ids(counts: Tensor, prob: Tensor, base: int, cluster: tuple[Tensor, Tensor],
               min_area: int) -> tuple[Tensor, dict[int, float]]:
    """Panoptic id per cell for one thing class, and the score of each kept instance.

    Args:
        counts: (h*w,) pixels of the class per cell; prob: (h*w,) its softmax probability.
        base: category id * 1000.
        cluster: cells holding the class and their mode index (from ``_cluster_class``).
        min_area: smaller instances become VOID.
    """
    cells, mode = cluster
    weight = counts[cells].double()
    area = torch.bincount(mode, weights=weight)
    number = _number_instances(area, min_area)
    score = torch.bincount(mode, weights=weight * prob[cells].double()) / area.clamp(min=1)
    ids = torch.zeros(len(counts), dtype=torch.int32, device=counts.device)
    ids[cells] = torch.where(number[mode] > 0, base + number[mode], 0).to(torch.int32)
    return ids, {base + k: s for k, s in zip(number.tolist(), score.tolist()) if k}


def postprocess_panonet(
    outputs: Mapping[str, Tensor],
    *,
    config: PanoNetPostprocessConfig,
    label_space: LabelSpace,
) -> PanopticResult:
    """Panoptic segmentation of one image from PanoNet outputs.

    All pixels of one class in one 1/4 cell share that cell's instance, so the work is
    done on a (cell, class) histogram and the id map is one gather at the end.

    Args:
        outputs: ``semantic`` (1, H, W) integer train indices, ``semantic_logits``
            (1, C, h, w) and ``embedding`` (1, E, h, w) with (h, w) = ceil((H, W) / 4).
        config: post-processing settings.
        label_space: the model's label space.
    Returns:
        The result at (H, W), the model input resolution.
    Raises:
        ValueError: missing or inconsistent outputs, unknown class names in ``bandwidths``.
    """
    semantic, logits, embedding = _check_outputs(outputs, label_space)
    bandwidths = _bandwidths(config, label_space)
    device = semantic.device
    height, width = semantic.shape
    h, w = logits.shape[1:]
    flat = semantic.reshape(-1)
    present = torch.bincount(flat, minlength=label_space.num_classes).nonzero().squeeze(1)  # (P,) classes
    compact = torch.full((label_space.num_classes,), -1, dtype=torch.int64, device=device)
    compact[present] = torch.arange(len(present), device=device)
    rows = torch.arange(height, device=device) // OUTPUT_STRIDE
    cols = torch.arange(width, device=device) // OUTPUT_STRIDE
    cell_class = ((rows.unsqueeze(1) * w + cols.unsqueeze(0)).reshape(-1) * len(present)
                  + compact[flat])                                                        # (H*W,)
    hist = torch.bincount(cell_class, minlength=h * w * len(present)).view(h * w, len(present))
    cell_area = hist.sum(1)
    probs = torch.softmax(logits, 0).reshape(len(logits), h * w)
    cells_embedding = embedding.permute(1, 2, 0).reshape(h * w, -1)
    ids = torch.zeros(h * w, len(present), dtype=torch.int32, device=device)
    scores: dict[int, float] = {}
    for j, c in enumerate(present.tolist()):
        counts = hist[:, j]
        base = int(label_space.category_id_of_train_index[c]) * LABEL_DIVISOR
        if c in bandwidths:  # a thing class
            cluster = _cluster_class(counts, cells_embedding, cell_area, w, bandwidths[c], config)
            ids[:, j], found = _thing_ids(counts, probs[c], base, cluster, config.min_area)
            scores.update(found)
            continue
        area = int(counts.sum())
        if area >= config.min_stuff_area:
            ids[:, j] = base
            scores[base] = float((counts * probs[c]).sum()) / area
    panoptic = ids.reshape(-1)[cell_class].reshape(height, width)
    return PanopticResult.from_panoptic_map(panoptic.to("cpu").numpy(), label_space, scores)
