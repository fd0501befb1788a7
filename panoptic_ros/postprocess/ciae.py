"""CIAE post-processing: proposals -> query embeddings -> one matmul -> panoptic map.

From the eval-mode outputs of :class:`panoptic_ros.models.ciae.CIAE` (torch or ONNX):

1. Proposals (FCOS): score = sqrt(class probability * center-ness) (FCOS's final score);
   candidates above ``score_threshold``, the ``pre_nms_top_k`` best (location, class)
   pairs, class-wise NMS, at most ``max_instances``.
2. Embeddings: P = L2norm(upsample4x(P' + P'')) cropped to the input size (the paper's
   order: upsample, then normalise). With ``resolution="quarter"`` the assignment runs on
   the normalised 1/4-scale map instead and the label map is upsampled (nearest): 16x less
   work for CPUs, coarser boundaries.
3. Queries V: the stuff memory embeddings, then P at the location (x, y) that produced each
   kept proposal (Sec. IV-C).
4. S = P V^T, one matmul (split into row bands only when Q x H x W exceeds
   ``max_similarity_elements``, to bound memory on CPUs); box filtering with the predicted
   boxes; argmax per pixel. Outside its box an instance's similarity is ``-inf`` rather than
   the training loss's 0, so an instance never claims pixels outside its own box (with 0 it
   would whenever every stuff similarity of a pixel is negative).
5. Thing classes come from the box classifier; instances of a class are numbered 1, 2, ...
   by descending score; stuff segments smaller than ``stuff_min_area`` (at the
   ``area_reference`` image size, scaled by pixel count) become VOID.

Scores: a thing segment carries its proposal score; a stuff segment the mean of its pixels'
winning similarity (cosine to the stuff memory embedding), clipped to [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from panoptic_ros.config import Range, check_ranges, setting
from panoptic_ros.labels import LabelSpace
from panoptic_ros.models.ciae import EMBED_STRIDE
from panoptic_ros.postprocess.nms import batched_nms
from panoptic_ros.types import LABEL_DIVISOR, PanopticResult


@dataclass(frozen=True)
class CIAEPostprocessConfig:
    """Runtime-tunable CIAE inference settings (each field describes itself)."""

    score_threshold: float = setting(0.3, range=Range(0, 1),
                                     description="minimum sqrt(cls * centerness) of a proposal")
    pre_nms_top_k: int = setting(1000, range=Range(1), description="candidates kept before NMS")
    nms_threshold: float = setting(0.6, range=Range(0, 1), description="class-wise NMS IoU threshold")
    max_instances: int = setting(100, range=Range(0), description="proposals kept after NMS (0: no instances, "
                                                                  "stuff only)")
    stuff_min_area: int = setting(4096, range=Range(0), description="stuff segments below this many pixels (at "
                                                                    "area_reference) become VOID")
    area_reference: tuple[int, int] = setting((800, 1333), range=Range(1), description="(H, W) at which "
                                              "stuff_min_area holds (COCO's 800 x 1333)")
    max_similarity_elements: int = setting(1 << 25, range=Range(1),
                                           description="largest similarity block computed at once")
    resolution: Literal["input", "quarter"] = setting(
        "input", description="input (the paper: assign every input pixel) or quarter (assign the 1/4-scale "
                             "cells, then upsample the labels; faster on CPU)")

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.resolution not in ("input", "quarter"):
            raise ValueError(f"resolution: expected 'input' or 'quarter', got {self.resolution!r}")


@dataclass
class Proposals:
    """Kept detections of one image, by descending score (K rows)."""

    boxes: torch.Tensor  # (K, 4) x0, y0, x1, y1 input pixels
    scores: torch.Tensor  # (K,)
    classes: torch.Tensor  # (K,) thing class index 0..C_th-1
    locations: torch.Tensor  # (K, 2) (x, y) input pixels


def inside_boxes(boxes: torch.Tensor, x: torch.Tensor, y: torch.Tensor, expand: float = 1.0) -> torch.Tensor:
    """Which points lie inside which boxes (edges included).

    Args:
        boxes: (K, 4) x0, y0, x1, y1.
        x: point x coordinates, any shape broadcastable with ``y``.
        y: point y coordinates.
        expand: scale each box about its centre by this factor first.
    Returns:
        (*broadcast(x, y).shape, K) bool: the box index last, so a (pixels, K) block is
        contiguous next to (pixels, Q) similarities.
    """
    if expand != 1.0:
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        half = (boxes[:, 2:] - boxes[:, :2]) * (expand / 2)
        boxes = torch.cat([centre - half, centre + half], dim=1)
    x, y = x[..., None], y[..., None]
    # x and y tests first: for a separable grid (x (1, W), y (H, 1)) only the last & is (H, W, K)
    return ((boxes[:, 0] <= x) & (x <= boxes[:, 2])) & ((boxes[:, 1] <= y) & (y <= boxes[:, 3]))


def select_proposals(outputs: dict[str, torch.Tensor], config: CIAEPostprocessConfig) -> Proposals:
    """Threshold, top-k and class-wise NMS of the dense FCOS outputs of image 0."""
    cls = outputs["cls_scores"][0]
    scores = torch.sqrt(cls * outputs["centerness"][0][:, None]).flatten()
    candidates = torch.nonzero(scores > config.score_threshold).flatten()
    if len(candidates) > config.pre_nms_top_k:
        candidates = candidates[scores[candidates].topk(config.pre_nms_top_k).indices]
    location, classes = candidates // cls.shape[1], candidates % cls.shape[1]
    boxes = outputs["boxes"][0][location]
    keep = batched_nms(boxes, scores[candidates], classes, config.nms_threshold, max_output=config.max_instances)
    return Proposals(boxes[keep], scores[candidates][keep], classes[keep], outputs["locations"][0][location[keep]])


def pixel_embeddings(embeddings: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """P: (1, E, h, w) unnormalised 1/4-scale map -> (H, W, E) L2-normalised at input size.

    Pixel-major (channels last), so the similarity matmul and the argmax over queries read
    contiguous rows.
    """
    up = F.interpolate(embeddings[:1].float(), scale_factor=4.0, mode="bilinear", align_corners=False)
    return F.normalize(up[0, :, : image_size[0], : image_size[1]].permute(1, 2, 0).contiguous(), dim=-1)


def similarity(pixels: torch.Tensor, queries: torch.Tensor, boxes: torch.Tensor, rows: tuple[int, int],
               stride: int = 1) -> torch.Tensor:
    """Box-filtered similarities of the map rows ``rows[0]:rows[1]``.

    Args:
        pixels: (h, w, E) normalised pixel embeddings; cell (i, j) stands for input pixel
            (stride*j + stride//2, stride*i + stride//2).
        queries: (Q, E) normalised queries; the last K are instances.
        boxes: (K, 4) instance boxes in input pixels.
        rows: first and end row.
        stride: input pixels per map cell.
    Returns:
        (n, Q) cosine similarities, n = rows x w; ``-inf`` for instances outside their box.
    """
    width, dim = pixels.shape[1:]
    sim = pixels[rows[0]: rows[1]].reshape(-1, dim) @ queries.t()
    k = boxes.shape[0]
    if k:
        # centre of the sampled input pixel: column c covers [c, c + 1) in box coordinates
        offset = stride // 2 + 0.5
        xs = torch.arange(width, device=pixels.device, dtype=boxes.dtype)[None, :] * stride + offset
        ys = torch.arange(rows[0], rows[1], device=pixels.device, dtype=boxes.dtype)[:, None] * stride + offset
        inside = inside_boxes(boxes, xs, ys).reshape(-1, k)
        sim[:, -k:].masked_fill_(~inside, float("-inf"))
    return sim


def assign_pixels(pixels: torch.Tensor, queries: torch.Tensor, boxes: torch.Tensor,
                  max_elements: int, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax of the similarities, in row bands of at most ``max_elements`` similarities.

    Args: as :func:`similarity`.
    Returns:
        labels (h, w) int64 query index and best (h, w) winning similarity.
    """
    height, width = pixels.shape[:2]
    band = max(1, max_elements // max(1, width * queries.shape[0]))
    best, labels = [], []
    for r0 in range(0, height, band):
        value, index = similarity(pixels, queries, boxes, (r0, min(height, r0 + band)), stride).max(dim=1)
        best.append(value)
        labels.append(index)
    return torch.cat(labels).view(height, width), torch.cat(best).view(height, width)


def postprocess_ciae(outputs: dict[str, torch.Tensor], *, config: CIAEPostprocessConfig,
                     label_space: LabelSpace) -> PanopticResult:
    """The panoptic segmentation of image 0 of a batch of eval-mode CIAE outputs.

    Args:
        outputs: ``CIAE.OUTPUT_NAMES`` tensors (batch dim first; torch, any device).
        config: thresholds.
        label_space: the model's label space.
    Returns:
        the result at the model input resolution.
    """
    stuff = outputs["stuff_memory"][0].float()
    if stuff.shape[0] != len(label_space.stuff_train_indices):
        raise ValueError(f"outputs['stuff_memory']: {stuff.shape[0]} stuff classes, but label space "
                         f"{label_space.name!r} has {len(label_space.stuff_train_indices)}")
    height, width = (int(v) for v in outputs["image_size"][0])
    proposals = select_proposals(outputs, config)
    stride = 1 if config.resolution == "input" else EMBED_STRIDE
    if stride == 1:
        pixels = pixel_embeddings(outputs["embeddings"], (height, width))
    else:
        pixels = F.normalize(outputs["embeddings"][0].float().permute(1, 2, 0).contiguous(), dim=-1)
    loc = proposals.locations.long() // stride
    xs, ys = loc[:, 0].clamp(0, pixels.shape[1] - 1), loc[:, 1].clamp(0, pixels.shape[0] - 1)
    queries = torch.cat([F.normalize(stuff, dim=1), pixels[ys, xs]])
    labels, best = assign_pixels(pixels, queries, proposals.boxes.float(), config.max_similarity_elements, stride)
    if stride > 1:
        labels, best = (t.repeat_interleave(stride, 0).repeat_interleave(stride, 1)[:height, :width]
                        for t in (labels, best))
    return panoptic_from_assignment(labels, best, proposals, label_space=label_space, config=config)


def panoptic_from_assignment(labels: torch.Tensor, best: torch.Tensor, proposals: Proposals, *,
                             label_space: LabelSpace, config: CIAEPostprocessConfig) -> PanopticResult:
    """Query indices per pixel -> PanopticResult (stuff queries first, then proposals).

    Per-query areas and score sums are scatter-added on the labels' device and read back
    with the proposals' classes and scores in one small copy; the query -> panoptic id
    table goes back to the device, where the (H, W) map is looked up as int32 and copied
    to the host once.

    Args:
        labels: (H, W) int64 query index per pixel; best: (H, W) its similarity (-inf:
            no query may claim the pixel).
    """
    num_stuff = len(label_space.stuff_train_indices)
    num_queries = num_stuff + proposals.scores.shape[0]
    height, width = labels.shape
    index = torch.where(torch.isfinite(best), labels, num_queries).flatten()     # num_queries: VOID
    stats = torch.zeros((2, num_queries + 1), dtype=torch.float64, device=labels.device)
    stats[0].index_add_(0, index, torch.ones_like(index, dtype=torch.float64))
    stats[1].index_add_(0, index, best.flatten().double().nan_to_num(neginf=0.0))
    small = torch.cat([stats[:, :num_queries].flatten(), proposals.classes.double(),
                       proposals.scores.double()]).cpu().numpy()
    areas, sums = small[:num_queries], small[num_queries:2 * num_queries]
    classes, proposal_scores = small[2 * num_queries:].reshape(2, -1)
    lut, scores = _query_ids(areas, sums, classes.astype(np.int64), proposal_scores, (height, width),
                             label_space=label_space, config=config)
    table = torch.from_numpy(lut).to(labels.device, non_blocking=True)
    panoptic = table[index].view(height, width).cpu().numpy()
    return PanopticResult.from_panoptic_map(panoptic, label_space, scores)


def _query_ids(areas: np.ndarray, sums: np.ndarray, classes: np.ndarray, proposal_scores: np.ndarray,
               size: tuple[int, int], *, label_space: LabelSpace, config: CIAEPostprocessConfig
               ) -> tuple[np.ndarray, dict[int, float]]:
    """(Q + 1,) int32 panoptic id of every query (last entry: VOID) and the segment scores.

    Args:
        areas, sums: (Q,) pixels and summed similarity per query (stuff queries first).
        classes, proposal_scores: (K,) thing class and score of each proposal.
        size: (H, W) of the map.
    """
    num_stuff = len(label_space.stuff_train_indices)
    ids = np.array(label_space.ids, dtype=np.int64)
    lut = np.zeros(len(areas) + 1, dtype=np.int32)
    scores: dict[int, float] = {}
    min_area = config.stuff_min_area * size[0] * size[1] / (config.area_reference[0] * config.area_reference[1])
    for q, train_index in enumerate(label_space.stuff_train_indices):
        if areas[q] > 0 and areas[q] >= min_area:
            lut[q] = ids[train_index] * LABEL_DIVISOR
            scores[int(lut[q])] = float(np.clip(sums[q] / areas[q], 0.0, 1.0))
    counters: dict[int, int] = {}
    thing_ids = ids[list(label_space.thing_train_indices)]
    for k, (c, s) in enumerate(zip(classes.tolist(), proposal_scores.tolist())):
        category = int(thing_ids[c])
        counters[category] = counters.get(category, 0) + 1
        if counters[category] >= LABEL_DIVISOR:
            continue  # more instances than the id encoding holds: leave them VOID
        lut[num_stuff + k] = category * LABEL_DIVISOR + counters[category]
        scores[int(lut[num_stuff + k])] = float(s)
    return lut, scores
