"""Pictures of results: palettes, panoptic overlays, embedding PCA images.

Colours come from the label space (the dataset's official category colours); thing
instances get a deterministic shade of their category colour so neighbouring instances
of one class stay apart and a given id always has the same colour across frames.
Everything works on whole images through lookup tables, fast enough for the node's
``~/overlay`` topic at 2048x1024.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable

import cv2
import numpy as np

from panoptic_ros.labels import IGNORE_INDEX, LabelSpace
from panoptic_ros.types import LABEL_DIVISOR, PanopticResult

# Per-channel multipliers that spread instance numbers over distinct shades.
_SHADE_STEPS = np.array([37, 73, 109], dtype=np.int64)
_SHADE_RANGE = 61  # shades span +-30 around the category colour


def instance_colors(ids: np.ndarray, label_space: LabelSpace) -> np.ndarray:
    """Display colour of each panoptic id.

    Args:
        ids: (K,) panoptic ids (``category_id * 1000 + instance``), none VOID.
        label_space: categories that give the base colours.
    Returns:
        (K, 3) uint8 RGB: the category colour for stuff and crowd regions, a shade of it
        (deterministic in the id) for numbered thing instances.
    """
    ids = np.asarray(ids, dtype=np.int64)
    category = ids // LABEL_DIVISOR
    base = np.array([label_space.category(int(c)).color for c in category], dtype=np.int64).reshape(-1, 3)
    return _shaded(base, ids % LABEL_DIVISOR)


def _shaded(base: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """(K, 3) uint8: the (K, 3) int64 ``base`` colours shaded for the (K,) instance numbers
    (instance 0, stuff and crowd, keeps its base colour)."""
    shade = (instance[:, None] * _SHADE_STEPS) % _SHADE_RANGE - _SHADE_RANGE // 2
    shade[instance == 0] = 0
    return np.clip(base + shade, 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def panoptic_palette(label_space: LabelSpace) -> np.ndarray:
    """The display colour of every panoptic id of ``label_space``, as a lookup table.

    Built once per label space (every category times instances 0..999; COCO's 200
    categories make 0.8 MB), so colouring a frame is one gather of its id map: no per-frame
    table of its segments.

    Returns:
        (max_category_id * 1000 + 1000,) uint32: entry ``id`` holds :func:`instance_colors`
        of ``id`` packed as ``R | G << 8 | B << 16`` (the bytes R, G, B, 0 in memory on a
        little-endian machine); 0 (black) for VOID and for ids of no category. Read-only.
    """
    top = max(c.id for c in label_space.categories)
    table = np.zeros((top + 1) * LABEL_DIVISOR, dtype=np.uint32)
    instances = np.arange(LABEL_DIVISOR)
    for category in label_space.categories:
        base = np.broadcast_to(np.asarray(category.color, dtype=np.int64), (LABEL_DIVISOR, 3))
        rgb = _shaded(base, instances).astype(np.uint32)
        table[category.id * LABEL_DIVISOR:(category.id + 1) * LABEL_DIVISOR] = \
            rgb[:, 0] | (rgb[:, 1] << 8) | (rgb[:, 2] << 16)
    table.flags.writeable = False
    return table


def colorize_panoptic(result: PanopticResult, label_space: LabelSpace) -> np.ndarray:
    """(H, W, 3) uint8 RGB picture of a panoptic map; VOID is black.

    One gather of the id map from :func:`panoptic_palette` (uint32 entries: one 4-byte
    gather is much faster than gathering three channels).

    Raises:
        KeyError: a segment of a category outside ``label_space``.
    """
    for segment in result.segments:
        if segment.category_id not in label_space:
            label_space.category(segment.category_id)  # raises KeyError naming the id
    packed = np.take(panoptic_palette(label_space), result.panoptic)
    rgba = packed.view(np.uint8).reshape(*packed.shape, 4)
    if np.little_endian:
        return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
    return np.ascontiguousarray(rgba[..., 3:0:-1])


def colorize_semantic(semantic: np.ndarray, label_space: LabelSpace) -> np.ndarray:
    """(H, W) uint8 train indices (255 = void) -> (H, W, 3) uint8 RGB; void is black."""
    palette = label_space.palette.copy()
    palette[IGNORE_INDEX] = 0
    return palette[semantic]


def segment_boundaries(panoptic: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour has another id."""
    edges = np.zeros(panoptic.shape, dtype=bool)
    np.not_equal(panoptic[:, 1:], panoptic[:, :-1], out=edges[:, :-1])
    edges[:-1] |= panoptic[1:] != panoptic[:-1]
    return edges


def panoptic_overlay(
    rgb: np.ndarray,
    result: PanopticResult,
    label_space: LabelSpace,
    *,
    alpha: float = 0.5,
    boundaries: bool = True,
    colors: np.ndarray | None = None,
    void: np.ndarray | None = None,
    edges: np.ndarray | None = None,
) -> np.ndarray:
    """Blend segment colours over the image.

    Args:
        rgb: (H, W, 3) uint8 image the result belongs to (same size).
        result: the segmentation.
        label_space: categories for the colours.
        alpha: weight of the segment colours in [0, 1].
        boundaries: draw segment outlines in white.
        colors: (H, W, 3) uint8 :func:`colorize_panoptic` of ``result`` if already made.
        void: (H, W) uint8 mask of the VOID pixels (nonzero) if already made.
        edges: (H, W) uint8 mask (nonzero) of :func:`segment_boundaries` if already made.
    Returns:
        (H, W, 3) uint8 RGB; VOID pixels keep the image.
    """
    if rgb.shape[:2] != result.panoptic.shape or rgb.ndim != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image {rgb.shape} {rgb.dtype} does not fit a "
                         f"{result.height}x{result.width} result (need (H, W, 3) uint8)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    image = np.ascontiguousarray(rgb)
    colors = colorize_panoptic(result, label_space) if colors is None else colors
    out = cv2.addWeighted(image, 1.0 - alpha, colors, alpha, 0.0)
    # OpenCV masked copies: boolean-mask indexing in numpy is several times slower.
    void = (result.panoptic == 0).view(np.uint8) if void is None else void
    cv2.copyTo(image, void, out)
    if boundaries:
        edges = segment_boundaries(result.panoptic).view(np.uint8) if edges is None else edges
        cv2.bitwise_or(out, (255, 255, 255, 0), dst=out, mask=edges)  # white outlines
    return out


def embedding_pca_image(embedding: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Show a pixel embedding as colours: its first three principal components.

    Args:
        embedding: (E, H, W) float embedding (numpy or anything ``np.asarray`` takes,
            e.g. a CPU tensor).
        mask: optional (H, W) bool; the components and colour ranges are fitted on these
            pixels only (e.g. thing pixels); others are drawn black.
    Returns:
        (H, W, 3) uint8 RGB; each channel spans the 1st..99th percentile of its component.
        Component signs are fixed (largest loading positive), so the colours do not flip
        with the SVD's arbitrary signs.
    """
    emb = np.asarray(embedding, dtype=np.float64)
    if emb.ndim != 3 or emb.shape[0] < 1:
        raise ValueError(f"embedding must be (E, H, W), got shape {emb.shape}")
    dims, height, width = emb.shape
    flat = emb.reshape(dims, -1).T
    if mask is not None and np.shape(mask) != (height, width):
        raise ValueError(f"mask shape {np.shape(mask)} does not match the embedding's {height}x{width}")
    keep = np.ones(height * width, bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    image = np.zeros((height * width, 3), dtype=np.uint8)
    if not keep.any():
        return image.reshape(height, width, 3)
    fit = flat[keep]
    centred = fit - fit.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:3]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    projected = centred @ (components * signs[:, None]).T
    low, high = np.percentile(projected, [1, 99], axis=0)
    scaled = (projected - low) / np.maximum(high - low, 1e-12)
    channels = np.zeros((len(fit), 3))
    channels[:, : scaled.shape[1]] = np.clip(scaled, 0.0, 1.0)
    image[keep] = np.round(channels * 255).astype(np.uint8)
    return image.reshape(height, width, 3)


def legend(label_space: LabelSpace, category_ids: Iterable[int] | None = None) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, colour) pairs for a legend, in label-space order."""
    wanted = None if category_ids is None else set(int(c) for c in category_ids)
    return [(c.name, tuple(c.color)) for c in label_space.categories if wanted is None or c.id in wanted]
