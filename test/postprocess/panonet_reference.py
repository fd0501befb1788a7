"""The PanoNet post-processing as it was before the batched mean-shift (issue 20), kept as
the oracle the batched version is compared with: one ``mean_shift`` per thing class,
host reads everywhere. Copied from panoptic_ros/postprocess/panonet.py at commit 703307f.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from panoptic_ros.labels import LabelSpace
from panoptic_ros.models.icnet import OUTPUT_STRIDE
from panoptic_ros.postprocess.meanshift import assign_to_modes, mean_shift
from panoptic_ros.postprocess.panonet import PanoNetPostprocessConfig, _bandwidths, _check_outputs
from panoptic_ros.types import LABEL_DIVISOR, PanopticResult


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


def reference_postprocess(
    outputs: Mapping[str, Tensor],
    *,
    config: PanoNetPostprocessConfig,
    label_space: LabelSpace,
) -> PanopticResult:
    """The old post-processing (same arguments and result as ``postprocess_panonet``)."""
    semantic, logits, embedding = _check_outputs(outputs, label_space)
    semantic, logits, embedding = semantic.long(), logits.float(), embedding.float()
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
