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

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from panoptic_ros.config import Range, check_ranges, setting
from panoptic_ros.labels import LabelSpace
from panoptic_ros.models.icnet import OUTPUT_STRIDE, guidance_size
from panoptic_ros.postprocess.grouped_meanshift import assign_grouped, grouped_mean_shift
from panoptic_ros.types import LABEL_DIVISOR, PanopticResult

@dataclass(frozen=True)
class PanoNetPostprocessConfig:
    """Runtime-tunable PanoNet inference settings (each field describes itself)."""

    bandwidths: dict[str, float] = setting(
        default_factory=dict, range=Range(0, low_open=True),
        description="mean-shift bandwidth per thing class name (e.g. car: 0.6)")
    default_bandwidth: float = setting(0.5, range=Range(0, low_open=True),
                                       description="bandwidth of thing classes missing from bandwidths")
    cluster_stride: int = setting(2, range=Range(1), description="cluster every n-th 1/4-scale cell in each "
                                                                 "direction (1 = all; slower)")
    min_bin_freq: int = setting(1, range=Range(1), description="minimum points in a seeding cell of the "
                                                               "mean-shift grid")
    min_area: int = setting(64, range=Range(0), description="thing instances with fewer input pixels become VOID")
    min_stuff_area: int = setting(0, range=Range(0),
                                  description="stuff segments with fewer input pixels become VOID")

    def __post_init__(self) -> None:
        check_ranges(self)


def _check_outputs(outputs: Mapping[str, Tensor], label_space: LabelSpace) -> tuple[Tensor, Tensor, Tensor]:
    """The three outputs without batch dim, checked against each other."""
    missing = [k for k in ("semantic", "semantic_logits", "embedding") if k not in outputs]
    if missing:
        raise ValueError(f"PanoNet outputs lack {missing} (have {sorted(outputs)})")
    semantic, logits, embedding = outputs["semantic"], outputs["semantic_logits"], outputs["embedding"]
    shapes = [tuple(t.shape) for t in (semantic, logits, embedding)]   # read once: each read is a torch call
    if [len(s) for s in shapes] != [3, 4, 4] or {s[0] for s in shapes} != {1}:
        raise ValueError(f"expected semantic (1, H, W), semantic_logits (1, C, h, w), embedding (1, E, h, w); "
                         f"got {shapes[0]}, {shapes[1]}, {shapes[2]}")
    size = guidance_size(shapes[0][1], shapes[0][2], OUTPUT_STRIDE)
    if shapes[1][2:] != size or shapes[2][2:] != size:
        raise ValueError(f"semantic_logits {shapes[1]} and embedding {shapes[2]} must be "
                         f"(1, *, {size[0]}, {size[1]}) for a {shapes[0][1:]} semantic map")
    if shapes[1][1] != label_space.num_classes:
        raise ValueError(f"semantic_logits has {shapes[1][1]} classes, label space "
                         f"{label_space.name!r} has {label_space.num_classes}")
    return semantic[0], logits[0], embedding[0]


def _bandwidths(config: PanoNetPostprocessConfig, label_space: LabelSpace) -> dict[int, float]:
    """Train index -> bandwidth for every thing class."""
    names = {label_space.categories[i].name: i for i in label_space.thing_train_indices}
    unknown = sorted(set(config.bandwidths) - set(names))
    if unknown:
        raise ValueError(f"bandwidths: {unknown} are not thing classes of {label_space.name!r} "
                         f"(known: {', '.join(sorted(names))})")
    return {i: config.bandwidths.get(name, config.default_bandwidth) for name, i in names.items()}


@lru_cache(maxsize=16)
def _class_tables(inverse_bandwidth: tuple[float, ...], base: tuple[int, ...], device: torch.device
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Per train index (C,): 1 / bandwidth (float32, 0 for stuff), category id * 1000, and
    the same for stuff classes only (0 for things). Cached: the same every frame."""
    inverse = torch.tensor(inverse_bandwidth, dtype=torch.float32, device=device)
    base_ids = torch.tensor(base, dtype=torch.int64, device=device)
    return inverse, base_ids, torch.where(inverse > 0, 0, base_ids)


def _tables(config: PanoNetPostprocessConfig, label_space: LabelSpace, device: torch.device
            ) -> tuple[Tensor, Tensor, Tensor]:
    bandwidths = _bandwidths(config, label_space)
    inverse = tuple(1.0 / bandwidths[i] if i in bandwidths else 0.0 for i in range(label_space.num_classes))
    base = tuple(int(c) * LABEL_DIVISOR for c in label_space.category_id_of_train_index[:label_space.num_classes])
    return _class_tables(inverse, base, device)


@lru_cache(maxsize=8)
def _pixel_keys(height: int, width: int, num_classes: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(H*W,) int64 ``num_classes`` x the 1/4 cell of every pixel, and (H*W,) int32 ones
    (the histogram increments). Cached: they depend on the size only."""
    w = guidance_size(height, width, OUTPUT_STRIDE)[1]
    rows = torch.arange(height, device=device) // OUTPUT_STRIDE
    cols = torch.arange(width, device=device) // OUTPUT_STRIDE
    cells = (rows.unsqueeze(1) * w + cols.unsqueeze(0)).reshape(-1)
    return cells * num_classes, torch.ones(1, dtype=torch.int32, device=device).expand(height * width)


@lru_cache(maxsize=8)
def _grid_tables(h: int, w: int, stride: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(h*w,) int64 2 for the cells on the stride grid, else 0; (16,) the pool level of each
    pattern of levels present; (4,) each level's bit. Cached: depends on the size only."""
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    on_grid = ((rows.unsqueeze(1) % stride == 0) & (cols.unsqueeze(0) % stride == 0)).reshape(-1)
    # Pattern bit 2**level: level 1 = held at least half, 2 = on the grid, 3 = both.
    patterns = torch.arange(16, device=device)
    level = torch.where(patterns & 8 > 0, 3, torch.where(patterns & 2 > 0, 1, torch.where(patterns & 4 > 0, 2, 0)))
    return on_grid.long() * 2, level, 2 ** torch.arange(4, device=device)


def _pool(cell: Tensor, cls: Tensor, counts: Tensor, cell_area: Tensor, grid: tuple[Tensor, Tensor],
          num_classes: int) -> Tensor:
    """(M,) indices of the (cell, class) pairs that a class clusters.

    Per class: the cells it holds at least half of (all its cells if none), then every
    ``stride``-th cell in both directions (unless that leaves none). Decided per class
    with one scatter, so the one host read is the final ``nonzero``.

    Args:
        cell, cls, counts: (P,) each pair's cell, class and pixel count.
        cell_area: (h*w,) input pixels per cell.
        grid: from :func:`_grid_tables`.
    """
    on_grid, level_of, level_bits = grid
    # Pair level: bit 0 = holds at least half its cell, bit 1 = on the stride grid.
    level = (2 * counts >= cell_area[cell]).long() + on_grid[cell]
    # Per class, which levels occur (bit 2**level); the pool is the best level present:
    # 3 (half-held, on grid), else 1 (half-held) if any, else 2 (on grid), else 0 (any).
    seen = cls.new_zeros(num_classes * 4).index_fill_(0, cls * 4 + level, 1).view(num_classes, 4)
    best = level_of[(seen * level_bits).sum(1)][cls]
    return ((level & best) == best).nonzero(as_tuple=True)[0]


def _number_instances(area: Tensor, groups: Tensor, min_area: int) -> Tensor:
    """(K,) instance number per mode (modes sorted by class, densest first): 1, 2, ...
    within each class for modes of at least ``min_area`` pixels (at most the 999 largest
    of a class), 0 (VOID) for the rest."""
    keep = area >= max(min_area, 1)
    if groups.shape[0] >= LABEL_DIVISOR:    # only then can a class reach 999 instances
        order = torch.argsort(area, descending=True, stable=True)
        order = order[torch.argsort(groups[order], stable=True)]
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.shape[0], device=order.device)
        keep &= rank - torch.searchsorted(groups, groups) < LABEL_DIVISOR - 1
    keep = keep.long()
    running = torch.cumsum(keep, 0)
    return (running - (running - keep)[torch.searchsorted(groups, groups)]) * keep


def _cluster_things(hist: Tensor, embedding: Tensor, probs: Tensor, tables: tuple[Tensor, Tensor, Tensor],
                    grid_width: int, config: PanoNetPostprocessConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Instances of all thing classes by one grouped mean-shift.

    Args:
        hist: (h*w, C) pixels per (cell, class); embedding: (E, h*w); probs: (C, h*w).
        tables: from :func:`_class_tables`.
    Returns:
        (P,) flat (cell * C + class) index of every thing pair, (P,) int32 panoptic id of
        each pair, and (2, K) float64 panoptic ids (0: VOID) and scores of the K modes.
    """
    inverse_bandwidth, base, _ = tables
    num_classes = hist.shape[1]
    flat = ((hist > 0) & (inverse_bandwidth > 0)).view(-1).nonzero().squeeze(1)
    if flat.shape[0] == 0:
        return flat, flat.to(torch.int32), probs.new_zeros((2, 0), dtype=torch.float64)
    cell, cls = flat // num_classes, flat % num_classes
    counts = hist.view(-1)[flat]
    h_cells = hist.shape[0] // grid_width
    pool = _pool(cell, cls, counts, hist.sum(1), _grid_tables(h_cells, grid_width, config.cluster_stride, hist.device),
                 num_classes)
    # Scaled to unit bandwidth per class, around the mean of all pooled cells (small norms
    # keep the |x|^2 - 2 x.c distance exact); the seeding grid stays that of the raw
    # embedding through ``origins``.
    scale = inverse_bandwidth[cls].unsqueeze(1)
    x = embedding.t()[cell]
    centre = x[pool].mean(0)
    x = (x - centre) * scale
    found = grouped_mean_shift(x[pool], cls[pool], num_classes, min_bin_freq=config.min_bin_freq,
                               origins=inverse_bandwidth.unsqueeze(1) * centre)
    mode = assign_grouped(x, cls, found)
    weight = counts.double()
    area = probs.new_zeros(found.groups.shape[0], dtype=torch.float64).index_add_(0, mode, weight)
    score = torch.zeros_like(area).index_add_(0, mode, weight * probs[cls, cell]) / area.clamp(min=1)
    number = _number_instances(area, found.groups, config.min_area)
    ids = torch.where(number > 0, base[found.groups] + number, 0)
    return flat, ids[mode].to(torch.int32), torch.stack([ids.double(), score])


_PINNED: dict[int, Tensor] = {}
"""Reused pinned host buffer for the one device-to-host copy, by element count."""


def _to_host(packed: Tensor) -> np.ndarray:
    """(N,) int32 device tensor -> a numpy array of its own (one copy through a reused
    pinned buffer on CUDA; on the CPU, the tensor's own memory)."""
    if packed.device.type == "cpu":
        return packed.numpy()
    buffer = _PINNED.get(packed.shape[0])
    if buffer is None:
        _PINNED.clear()   # one frame size at a time
        buffer = _PINNED[packed.shape[0]] = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
    buffer.copy_(packed, non_blocking=True)
    torch.cuda.current_stream(packed.device).synchronize()
    return buffer.numpy().copy()


def postprocess_panonet(
    outputs: Mapping[str, Tensor],
    *,
    config: PanoNetPostprocessConfig,
    label_space: LabelSpace,
) -> PanopticResult:
    """Panoptic segmentation of one image from PanoNet outputs.

    All pixels of one class in one 1/4 cell share that cell's instance, so the work is
    done on a (cell, class) histogram and the id map is one gather at the end. Only the
    thing pairs have a data-dependent size; host reads: two ``nonzero``, those of
    :func:`grouped_mean_shift` and one copy of the map with the segment scores.

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
    height, width, num_classes = *semantic.shape, label_space.num_classes
    h, w = guidance_size(height, width, OUTPUT_STRIDE)
    device = semantic.device
    tables = _tables(config, label_space, device)
    cells, ones = _pixel_keys(height, width, num_classes, device)
    key = cells + semantic.reshape(-1)                                                   # (H*W,)
    hist = torch.zeros(h * w * num_classes, dtype=torch.int32, device=device).index_add_(0, key, ones)
    hist = hist.view(h * w, num_classes)
    probs = torch.softmax(logits.reshape(num_classes, h * w), 0, dtype=torch.float32)
    area = hist.sum(0)
    stuff_ids = torch.where(area >= max(config.min_stuff_area, 1), tables[2], 0)
    stuff_scores = (hist * probs.t()).sum(0).double() / area.clamp(min=1)
    flat, thing_ids, things = _cluster_things(hist, embedding.reshape(-1, h * w).float(), probs, tables, w, config)
    table = stuff_ids.to(torch.int32).repeat(h * w).index_copy_(0, flat, thing_ids)
    scored = torch.cat([torch.stack([stuff_ids.double(), stuff_scores]), things], 1)
    # One copy to the host: the map, then the (id, score) pairs as int32 words.
    host = _to_host(torch.cat([table[key], scored.view(-1).view(torch.int32)]))
    pairs = host[height * width:].view(np.float64).reshape(2, -1)
    scores = {int(i): float(s) for i, s in zip(pairs[0], pairs[1]) if i > 0}
    return PanopticResult.from_panoptic_map(host[:height * width].reshape(height, width), label_space, scores)
