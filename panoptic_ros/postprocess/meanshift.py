"""Flat-kernel mean-shift in torch (CPU and CUDA), batched over seeds.

Same algorithm and results as scikit-learn's ``MeanShift(bandwidth, bin_seeding=True)``:

1. Seeds: the points are binned on a grid of ``bandwidth``-sized cells
   (``round(x / bandwidth)``); every cell with at least ``min_bin_freq`` points seeds
   a window at the cell centre. If every point falls in its own cell the points
   themselves are the seeds (scikit-learn's ``get_bin_seeds`` fallback).
2. Each seed moves to the mean of the points within ``bandwidth`` (distance <=
   bandwidth) until it moves by at most ``1e-3 * bandwidth`` or ``max_iter`` is reached;
   a seed with an empty window is dropped. Its *intensity* is the number of points in
   its last window.
3. Modes sorted by decreasing intensity (ties: decreasing coordinates) are kept
   greedily; a kept mode suppresses the later ones within ``bandwidth``.
4. Every point is labelled with its nearest kept mode.

Where scikit-learn raises (no seed has any point in its window), we seed from the
points instead, which always yields at least one mode.

Why not scikit-learn: it runs one seed at a time through a ball tree in Python, which
is 50-200x slower than this on 12-d pixel embeddings, and it cannot use a GPU. Speed
here comes from (a) all live seeds advancing together as dense matrix products over
point chunks, (b) seeds leaving the active set as they converge, and (c) while more
than ``_MIN_COLLAPSE`` seeds are live, seeds that land on the same position (to 1e-4
bandwidth; they then share every later step) continuing as one.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from panoptic_ros.postprocess.grouped_meanshift import full_fp32

_CHUNK_ELEMENTS = 1 << 20
"""Largest (seeds x points) block held at once (4 MiB of float32): the window test, its
compare and the product that reads it stay in cache (1.5-2x faster at 100k points than
16 MiB blocks on a 2-core AMD EPYC, bench/meanshift.py)."""
_DEDUP_RESOLUTION = 1e-4
"""Seeds whose positions agree on this grid (times the bandwidth) continue as one."""
_HASH_SEED = 0x5EED
_MIN_COLLAPSE = 64
"""Fewer live seeds than this are not merged: the merge costs more than it saves."""


def _check(points: Tensor, bandwidth: float, min_bin_freq: int, max_iter: int) -> None:
    if not isinstance(points, Tensor) or points.dim() != 2 or not points.is_floating_point():
        raise ValueError(f"points: expected a float tensor (N, D), got "
                         f"{getattr(points, 'dtype', type(points).__name__)} {tuple(getattr(points, 'shape', ()))}")
    if not bandwidth > 0:
        raise ValueError(f"bandwidth: must be > 0, got {bandwidth}")
    if min_bin_freq < 1:
        raise ValueError(f"min_bin_freq: must be >= 1, got {min_bin_freq}")
    if max_iter < 0:
        raise ValueError(f"max_iter: must be >= 0, got {max_iter}")


def unique_rows(keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Distinct rows of an integer matrix.

    Rows are packed into one int64 code (mixed radix over each column's range) when the
    ranges allow it, which turns the row sort into a fast 1-d sort; otherwise
    ``torch.unique(dim=0)``.

    Args:
        keys: (N, D) int64.
    Returns:
        rows (U, D), inverse (N,) index of each row's distinct row, counts (U,).
    """
    lo = keys.min(0).values
    spans = (keys.max(0).values - lo + 1).tolist()
    if float(np.prod(np.asarray(spans, dtype=np.float64))) >= 2.0 ** 62:
        return torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    shifted = keys - lo
    code = torch.zeros(len(keys), dtype=torch.int64, device=keys.device)
    for d, span in enumerate(spans):
        code = code * span + shifted[:, d]
    codes, inverse, counts = torch.unique(code, return_inverse=True, return_counts=True)
    first = torch.full((len(codes),), len(keys), dtype=torch.int64, device=keys.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(keys), device=keys.device), "amin")
    return keys[first], inverse, counts


def bin_seeds(points: Tensor, bin_size: float, min_bin_freq: int = 1) -> Tensor:
    """Seeds from a grid of ``bin_size`` cells (scikit-learn ``get_bin_seeds`` semantics).

    Args:
        points: (N, D) float.
        bin_size: cell size (the bandwidth).
        min_bin_freq: minimum points in a cell for it to seed.
    Returns:
        (M, D) cell centres, or ``points`` itself when every point has its own cell.
    """
    cells, _, counts = unique_rows(torch.round(points / bin_size).to(torch.int64))
    seeds = cells[counts >= min_bin_freq]
    if len(seeds) == len(points):
        return points
    return seeds.to(points.dtype) * bin_size


class _Blocks:
    """The points sorted into blocks: every block is a connected component of grid cells,
    two cells linked when some of their points could lie within ``2 * bandwidth`` of each
    other. A window (all its points lie within 2 bandwidth of each other) then almost
    always meets one block, and a window centre is only tested against the blocks whose
    bounding ball it reaches, which is exact for any blocking.

    Attributes:
        points: (N, D) points in block order; points1: the same with a column of ones;
            sq_norms: (N,) their squared norms.
        bounds: list of (start, end) rows per block.
        centres: (B, D) block centroids; radii: (B,) max distance of a member to it.
    """

    def __init__(self, points: Tensor, bandwidth: float, *, blocked: bool):
        block = torch.zeros(len(points), dtype=torch.int64, device=points.device)
        if blocked and len(points) > _MIN_BLOCKED_POINTS:
            block = _cell_components(points, bandwidth)
        order = torch.argsort(block, stable=True)
        self.points = points[order]
        self.points1 = torch.cat([self.points, self.points.new_ones((len(points), 1))], 1)
        block = block[order]
        self.sq_norms = (self.points * self.points).sum(1)
        sizes = torch.bincount(block)
        ends = torch.cumsum(sizes, 0).tolist()
        self.bounds = [(end - size, end) for end, size in zip(ends, sizes.tolist()) if size]
        self.centres, self.radii = _centroids_and_radii(self.points, block)


_DENSE_PAIRS = 1 << 17
"""Fewer (centre, point) pairs than this: one dense product beats a loop over blocks."""
_MIN_BLOCKED_POINTS = 2048
"""Below this many points one dense block is cheaper than finding blocks."""
_MAX_CELLS = 2048
"""Cells used to find blocks; coarser grids are used until there are at most this many."""


def _centroids_and_radii(points: Tensor, group: Tensor) -> tuple[Tensor, Tensor]:
    """Per group (ids 0..G-1, all present): centroid (G, D) and max member distance (G,)."""
    count = torch.bincount(group).to(points.dtype)
    centres = torch.zeros(len(count), points.shape[1], dtype=points.dtype, device=points.device)
    centres = centres.index_add(0, group, points) / count.unsqueeze(1)
    spread = torch.linalg.vector_norm(points - centres[group], dim=1)
    radii = torch.zeros_like(count).scatter_reduce(0, group, spread, "amax", include_self=False)
    return centres, radii


def _cell_components(points: Tensor, bandwidth: float) -> Tensor:
    """(N,) block id of each point: connected components of linked grid cells."""
    cell_size = 2 * bandwidth  # coarse cells: few of them, and still separate clusters
    while True:
        cells, cell_of, _ = unique_rows(torch.round(points / cell_size).to(torch.int64))
        if len(cells) <= _MAX_CELLS:
            break
        cell_size *= 2
    centres, radii = _centroids_and_radii(points, cell_of)
    # Cells g, h can hold points within 2 bandwidth of each other only if
    # |c_g - c_h| <= 2 bandwidth + r_g + r_h.
    linked = torch.cdist(centres, centres) <= 2 * bandwidth + radii.unsqueeze(1) + radii.unsqueeze(0)
    label = torch.arange(len(cells), device=points.device)
    while True:  # min-label propagation with pointer jumping; labels only decrease
        new = torch.where(linked, label.unsqueeze(0), len(cells)).amin(1)
        new = torch.minimum(new, label)
        new = new[new]
        if torch.equal(new, label):
            break
        label = new
    return torch.unique(label, return_inverse=True)[1][cell_of]


def _dense_window_sums(points1: Tensor, sq_norms: Tensor, centres: Tensor, bandwidth: float) -> Tensor:
    """Sums and counts of the points within ``bandwidth`` of each centre.

    Args:
        points1: (N, D + 1) points with a column of ones appended (the GEMM that sums
            the points then also counts them); sq_norms: (N,) squared norms.
        centres: (M, D).
    Returns:
        (M, D + 1): per centre the sum of its window's points, then their count.
    """
    points = points1[:, :-1]
    step = max(1, _CHUNK_ELEMENTS // max(1, len(points1)))
    if len(centres) <= step:   # one block (the common case): no output buffer to fill
        return _masked_sums(points, points1, sq_norms, centres, bandwidth)
    out = torch.empty(len(centres), points1.shape[1], dtype=points1.dtype, device=points1.device)
    for start in range(0, len(centres), step):
        out[start:start + step] = _masked_sums(points, points1, sq_norms, centres[start:start + step], bandwidth)
    return out


def _masked_sums(points: Tensor, points1: Tensor, sq_norms: Tensor, centres: Tensor, bandwidth: float) -> Tensor:
    """(M, D + 1) window sums and counts of ``centres`` (M, D) over ``points`` (N, D)."""
    # |x - c|^2 <= r^2  <=>  |x|^2 - 2 c.x <= r^2 - |c|^2: one GEMM and one in-place
    # compare that leaves a 0/1 float mask, then one GEMM for sums and counts.
    mask = torch.addmm(sq_norms.unsqueeze(0), centres, points.t(), alpha=-2.0)             # (M, N)
    mask.le_((bandwidth ** 2 - (centres * centres).sum(1)).unsqueeze(1))
    # The same product as mask @ points1, laid out as (D + 1, N) @ (N, M): BLAS runs a
    # narrow (N, D + 1) right operand several times slower (4x at 155 x 3545 on a CPU).
    return torch.mm(points1.t(), mask.t()).t()


def _window_means(blocks: _Blocks, centres: Tensor, bandwidth: float) -> tuple[Tensor, Tensor]:
    """Mean and count of the points within ``bandwidth`` of each centre.

    Args:
        blocks: the points; centres: (M, D).
    Returns:
        means (M, D) (a centre with an empty window keeps its position), counts (M,).
    """
    if len(blocks.bounds) == 1 or len(centres) * len(blocks.points) <= _DENSE_PAIRS:
        acc = _dense_window_sums(blocks.points1, blocks.sq_norms, centres, bandwidth)
    else:
        acc = centres.new_zeros((len(centres), centres.shape[1] + 1))
        reach = torch.cdist(centres, blocks.centres) <= bandwidth + blocks.radii.unsqueeze(0)   # (M, B)
        block, row = reach.t().nonzero(as_tuple=True)           # (block, centre) pairs by block
        per_block = torch.bincount(block, minlength=len(blocks.bounds)).tolist()
        for (start, end), rows, n in zip(blocks.bounds, torch.split(row, per_block), per_block):
            if n == len(centres):
                acc += _dense_window_sums(blocks.points1[start:end], blocks.sq_norms[start:end], centres, bandwidth)
            elif n:
                acc.index_add_(0, rows, _dense_window_sums(blocks.points1[start:end], blocks.sq_norms[start:end],
                                                           centres[rows], bandwidth))
    sums, counts = acc[:, :-1], acc[:, -1]
    means = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp(min=1).unsqueeze(1), centres)
    return means, counts


def _collapse(positions: Tensor, bandwidth: float) -> Tensor:
    """Positions with near-coincident rows (on a 1e-4 bandwidth grid) kept once."""
    if len(positions) < 2:
        return positions
    grid = torch.round(positions.double() / (bandwidth * _DEDUP_RESOLUTION))
    weights = torch.rand(positions.shape[1], generator=torch.Generator().manual_seed(_HASH_SEED),
                         dtype=torch.float64).to(positions.device) + 0.5
    code = (grid * weights).sum(1)
    _, inverse = torch.unique(code, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(code), dtype=torch.int64, device=code.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(code), device=code.device), "amin")
    if not torch.equal(grid[first][inverse], grid):  # a hash collision: keep every seed
        return positions
    return positions[first]


def _climb(points: Tensor, seeds: Tensor, bandwidth: float, max_iter: int) -> tuple[Tensor, Tensor]:
    """Move every seed to its mode.

    Returns:
        modes (K, D) and intensities (K,) of the seeds whose last window was non-empty.
    """
    stop = 1e-3 * bandwidth
    # On a GPU one dense block is fastest (and avoids a host sync per block).
    blocks = _Blocks(points, bandwidth, blocked=points.device.type == "cpu")
    position = seeds.to(points.dtype)
    modes, intensity = [], []
    for iteration in range(max_iter + 1):
        new, counts = _window_means(blocks, position, bandwidth)
        empty = counts == 0
        done = empty | (torch.linalg.vector_norm(new - position, dim=1) <= stop)
        if iteration == max_iter:
            done = torch.ones_like(done)
        finished = done & ~empty
        modes.append(new[finished])
        intensity.append(counts[finished])
        position = new[~done]
        if len(position) > _MIN_COLLAPSE:
            position = _collapse(position, bandwidth)
        if len(position) == 0:
            break
    return torch.cat(modes), torch.cat(intensity)


_DENSE_MERGE = 4096
"""Up to this many modes the merge uses one (K, K) neighbour matrix."""


def _merge_modes(modes: Tensor, intensity: Tensor, bandwidth: float) -> Tensor:
    """Greedy suppression: sort by (intensity, coordinates) descending, keep a mode unless
    a kept one lies within ``bandwidth``. Runs on the CPU in float64 (K is small)."""
    m = modes.detach().to("cpu", torch.float64).numpy()
    keys = [m[:, d] for d in reversed(range(m.shape[1]))] + [intensity.detach().cpu().numpy()]
    order = np.lexsort(keys)[::-1]                        # descending intensity, then coords
    m = m[order]
    if len(m) <= _DENSE_MERGE:
        t = torch.from_numpy(m)
        sq = (t * t).sum(1)
        near = (torch.addmm(sq.unsqueeze(0), t, t.t(), alpha=-2.0) <= bandwidth ** 2 - sq.unsqueeze(1)).numpy()

        def neighbours(i: int) -> np.ndarray:
            return near[i]
    else:
        def neighbours(i: int) -> np.ndarray:
            return ((m - m[i]) ** 2).sum(1) <= bandwidth ** 2
    suppressed = np.zeros(len(m), dtype=bool)
    kept = []
    for i in range(len(m)):
        if not suppressed[i]:
            kept.append(i)
            suppressed |= neighbours(i)
    index = torch.as_tensor(order[kept].copy(), device=modes.device)
    return modes[index]


def assign_to_modes(points: Tensor, modes: Tensor) -> Tensor:
    """(N,) int64 index of each point's nearest mode (modes (K, D), K >= 1)."""
    labels = torch.empty(len(points), dtype=torch.int64, device=points.device)
    sq = (modes * modes).sum(1)
    step = max(1, _CHUNK_ELEMENTS // max(1, len(modes)))
    for start in range(0, len(points), step):
        # argmin |x - m|^2 = argmin (|m|^2 - 2 x.m)
        score = torch.addmm(sq.unsqueeze(0), points[start:start + step], modes.t(), alpha=-2.0)
        labels[start:start + step] = score.argmin(1)
    return labels


def mean_shift(
    points: Tensor,
    bandwidth: float,
    *,
    bin_seeding: bool = True,
    min_bin_freq: int = 1,
    max_iter: int = 300,
) -> tuple[Tensor, Tensor]:
    """Cluster ``points`` with flat-kernel mean-shift.

    Args:
        points: (N, D) float tensor on any device.
        bandwidth: window radius (and seeding cell size).
        bin_seeding: seed from grid cells (else from every point).
        min_bin_freq: minimum points in a cell for it to seed.
        max_iter: maximum mean updates per seed beyond the first.
    Returns:
        labels (N,) int64 in ``[0, K)``, and modes (K, D) on the device of ``points``,
        ordered by decreasing intensity (label 0 = the densest mode).
    Raises:
        ValueError: bad arguments (message names the argument).
    """
    _check(points, bandwidth, min_bin_freq, max_iter)
    if len(points) == 0:
        return (torch.empty(0, dtype=torch.int64, device=points.device),
                points.new_empty((0, points.shape[1])))
    seeds = bin_seeds(points, bandwidth, min_bin_freq) if bin_seeding else points
    # Centred, the |x|^2 - 2 c.x window test stays far from cancellation; matmuls in full
    # fp32 (TF32's 1e-3 error would move points across window borders).
    # The centre is a node of the bandwidth grid: bin cells stay aligned and points that
    # are exact multiples of the bandwidth stay exact (window edges decide alike).
    centre = torch.round(points.mean(0) / bandwidth) * bandwidth
    points, seeds = points - centre, seeds - centre
    with full_fp32():
        modes, intensity = _climb(points, seeds, bandwidth, max_iter)
        if len(modes) == 0:  # scikit-learn raises here; seeding from the points always works
            modes, intensity = _climb(points, points, bandwidth, max_iter)
        modes = _merge_modes(modes, intensity, bandwidth)   # order and distances: shift-invariant
        return assign_to_modes(points, modes), modes + centre
