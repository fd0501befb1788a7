"""Mean-shift of several independent point groups at once, with few host reads.

The PanoNet post-processing clusters every thing class separately. One
:func:`~panoptic_ros.postprocess.meanshift.mean_shift` per class costs dozens of host
synchronisations per class on a GPU (every data-dependent size, every converged-seed
removal). Here all groups go through one climb:

- The caller scales every group to unit bandwidth (and centres it, which keeps the
  ``|x|^2 - 2 c.x`` distance expansion free of cancellation), so one window radius serves
  all groups. Groups are kept apart by a few extra coordinates: twice the bits of the
  group index. Two groups differ in at least one bit, so their points are at least
  2 > 1 apart, and within a group the extra coordinates are equal and cancel exactly.
  Values stay small (unlike one large offset per group, which would cost precision).
- Seeds are the cells of a unit grid per group (scikit-learn ``bin_seeding``), found by
  one ``unique`` of packed cell codes. A group whose points each have a cell of their own
  seeds from its points (scikit-learn's ``get_bin_seeds`` fallback).
- Iterations have fixed shapes: all live seeds move together (five torch calls per
  iteration). Only at checks (after ``first_check`` iterations, then every
  ``check_every``) is the state read back: seeds that moved by at most ``1e-3``
  (scikit-learn's tolerance) since the previous iteration leave, keeping the point count
  of their last window as intensity; a seed whose window emptied is dropped. Between
  checks a converged seed keeps iterating, which moves it by less than the tolerance.
- Modes are merged by greedy suppression on the device (:func:`greedy_keep`).

Host reads of one call: the ``unique``, one per check, and usually one for merging.
Matmuls run in full fp32 (:func:`full_fp32`).
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator, NamedTuple

import torch
from torch import Tensor

from panoptic_ros.postprocess.nms import greedy_keep

STOP = 1e-3
"""A seed that moves by at most this (in bandwidths) has converged (scikit-learn's tol)."""
_SEPARATION = 2.0
"""Extra-coordinate value of a set bit of the group index: > 1, so groups never share a
window, and an integer, so the seeding grid keeps it exactly."""


@contextmanager
def full_fp32() -> Iterator[None]:
    """fp32 matmuls at full precision inside, whatever the global setting: TF32 (about
    1e-3 relative error) would move points across window borders."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


class GroupedModes(NamedTuple):
    """The kept modes of all groups.

    Attributes:
        modes: (K, D) positions, by group, then decreasing intensity, then decreasing
            coordinates (the order of scikit-learn's ``cluster_centers_``).
        groups: (K,) group of each mode.
    """

    modes: Tensor
    groups: Tensor


@lru_cache(maxsize=16)
def _bit_table(num_groups: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(num_groups, B) twice the B bits of each group index (cached: fixed per label space)."""
    weights = 2 ** torch.arange(max(1, (num_groups - 1).bit_length()), device=device)
    return ((torch.arange(num_groups, device=device).unsqueeze(1) & weights) > 0).to(dtype) * _SEPARATION


def _unique_rows(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct rows of (N, D) int64 ``keys`` by one 1-d ``unique`` of mixed-radix codes.

    Returns:
        member (U,): one row index per distinct row; counts (U,). When the radix product
        overflows int64 (codes could collide) ``counts`` is all 0.
    """
    low = keys.amin(0)
    span = keys.amax(0) - low + 1
    place = torch.cumprod(span.flip(0), 0).flip(0) // span     # prod(span[d + 1:]); see the overflow test
    _, inverse, counts = torch.unique(((keys - low) * place).sum(1), return_inverse=True, return_counts=True)
    member = torch.empty_like(counts).scatter_(0, inverse, torch.arange(keys.shape[0], device=keys.device))
    return member, counts * (torch.log2(span.double()).sum() < 62)


def grid_seeds(points: Tensor, groups: Tensor, origins: Tensor, num_groups: int,
               min_bin_freq: int) -> tuple[Tensor, Tensor]:
    """Unit-grid seeds of each group (scikit-learn ``get_bin_seeds`` per group).

    Args:
        points: (N, D) points; groups: (N,) int64 in ``[0, num_groups)``.
        origins: (num_groups, D): group g's cells are ``round(points + origins[g])`` (a
            group centred by subtracting c seeds like the uncentred one with origin c).
        min_bin_freq: cells with fewer points do not seed.
    Returns:
        seeds (S, D) (NaN rows: cells with fewer than ``min_bin_freq`` points, or all
        of them if the cell codes overflowed) and their groups (S,).
    """
    shift = origins[groups]
    keys = torch.cat([groups.unsqueeze(1), torch.round(points + shift).long()], 1)
    member, counts = _unique_rows(keys)
    seed_groups = groups[member]
    seeds = keys[member, 1:].to(points.dtype) - shift[member]
    if min_bin_freq > 1:   # then a group cannot have as many seeds as points
        return torch.where((counts >= min_bin_freq).unsqueeze(1), seeds, float("nan")), seed_groups
    # As many seeds as points (every cell holds one point): the points are the seeds.
    fullest = counts.new_zeros(num_groups).scatter_reduce_(0, seed_groups, counts, "amax")
    alone = (fullest[seed_groups] == 1).unsqueeze(1)
    return torch.where(alone, points[member], torch.where(counts.unsqueeze(1) > 0, seeds, float("nan"))), seed_groups


def check_schedule(first: int, every: int, limit: int) -> set[int]:
    """Iterations after which the climb reads its state back: ``first``, then every
    ``every`` for two more checks, then at doubling intervals (so a rare long climb costs
    few reads), and ``limit``."""
    checks, step, at = [], every, first
    while at < limit:
        checks.append(at)
        if len(checks) >= 3:
            step *= 2
        at += step
    return {*checks, limit}


def climb(points: Tensor, seeds: Tensor, max_iter: int, first_check: int, check_every: int) -> tuple[Tensor, Tensor]:
    """Move every seed to its mode (unit bandwidth).

    Args:
        points: (N, D); seeds: (S, D) (rows of NaN: unusable seeds).
        max_iter: mean updates beyond the first; first_check, check_every: iterations
            before the first read of the state and between later ones.
    Returns:
        modes (S, D) and intensities (S,) (0: dropped seed).
    """
    dims = points.shape[1]
    points1 = torch.cat([points, points.new_ones((points.shape[0], 1))], 1)
    modes, intensity, live, position = seeds, seeds, None, seeds
    checks = check_schedule(first_check, check_every, max_iter + 1)
    for iteration in range(1, max_iter + 2):
        previous = position
        sums, counts = torch.mm(torch.cdist(position, points).le_(1.0), points1).split([dims, 1], 1)
        position = sums / counts                      # NaN for an empty window
        last = iteration == max_iter + 1
        if iteration not in checks:
            continue
        if live is None:
            modes, intensity = position, counts
        else:
            modes.index_copy_(0, live, position)
            intensity.index_copy_(0, live, counts)
        moving, = (torch.linalg.vector_norm(position - previous, dim=1) > STOP).nonzero(as_tuple=True)  # NaN: False
        if last or moving.shape[0] == 0:
            break
        live = moving if live is None else live[moving]
        position = position[moving]
    return modes, intensity[:, 0]


def _lexicographic_order(keys: Tensor) -> Tensor:
    """(S,) order of the rows of (S, F) ``keys`` by decreasing lexicographic value (ties
    keep their order). One (S, S, F) comparison for moderate S, else one stable sort per
    column."""
    if keys.shape[0] <= _PAIRWISE_SORT_MAX:
        difference = keys.unsqueeze(1) - keys.unsqueeze(0)                      # (S, S, F)
        first = (difference != 0).to(torch.uint8).argmax(2, keepdim=True)       # first differing column
        before = difference.gather(2, first).squeeze(2) > 0                     # [i, j]: row i comes before row j
        return torch.argsort(before.sum(0), stable=True)
    order = torch.arange(keys.shape[0], device=keys.device)
    for column in keys.t().flip(0):     # least significant first: stable sorts compose
        order = order[torch.argsort(column[order], descending=True, stable=True)]
    return order


_PAIRWISE_SORT_MAX = 640
"""Most modes sorted by one pairwise comparison ((S, S, F) float32: 16 MB at 640 x 10)."""


def merge_modes(modes: Tensor, groups: Tensor, intensity: Tensor, *, extra_flags: Tensor | None = None,
                check_every: int = 3) -> tuple[Tensor, list[bool]]:
    """Greedy suppression, as scikit-learn: modes sorted by group, decreasing intensity,
    then decreasing coordinates; a mode is kept unless a kept mode before it lies within
    unit distance (modes of different groups are more than 1 apart through their group
    bits).

    Args:
        modes: (S, D); groups: (S,); intensity: (S,) (0: not a mode).
        extra_flags: (F,) bool read back together with the result (saves a host read).
    Returns:
        (K,) indices of the kept modes in that order, and the F flags.
    """
    # Float32 keys are exact here (group indices, point counts, coordinates). Unusable
    # rows (NaN coordinates) have intensity 0, which decides before their coordinates do.
    order = _lexicographic_order(torch.column_stack([-groups, intensity, modes]))
    ordered = modes[order].double()
    close = torch.cdist(ordered, ordered) <= 1.0     # NaN rows: never close
    kept, flags = greedy_keep(close, intensity[order] > 0, extra_flags=extra_flags, check_every=check_every)
    return order[kept], flags


def assign_grouped(points: Tensor, groups: Tensor, found: GroupedModes) -> Tensor:
    """(N,) int64 index of each point's nearest mode of its own group.

    Args:
        points: (N, D); groups: (N,); found: modes in the same space (every group of
            ``groups`` has at least one).
    """
    score = torch.cdist(points, found.modes)
    return score.masked_fill_(groups.unsqueeze(1) != found.groups, float("inf")).argmin(1)


def grouped_mean_shift(points: Tensor, groups: Tensor, num_groups: int, *, min_bin_freq: int = 1,
                       max_iter: int = 300, first_check: int = 12, check_every: int = 8,
                       origins: Tensor | None = None) -> GroupedModes:
    """Bin-seeded flat-kernel mean-shift of every group, at unit bandwidth.

    Per group the same modes, in the same order, as ``mean_shift(points[groups == g],
    1.0, min_bin_freq=...)`` up to float rounding (seeds that converge between two checks
    move on by less than the 1e-3 tolerance).

    Args:
        points: (N, D) float points, each group scaled to unit bandwidth.
        groups: (N,) int64 group of each point, in ``[0, num_groups)``.
        num_groups: number of groups (some may be empty).
        min_bin_freq: minimum points in a seeding cell.
        max_iter: maximum mean updates per seed beyond the first.
        first_check, check_every: iterations before the first host read of the state,
            and between later ones.
        origins: (num_groups, D): group g's seeding grid has a node at ``-origins[g]``
            (pass the centre of a centred group: it then seeds like the uncentred one).
    Returns:
        the kept modes and their groups; every non-empty group has at least one.
    """
    dims = points.shape[1]
    if points.shape[0] == 0:
        return GroupedModes(points.new_zeros((0, dims)), groups.new_zeros(0))
    if origins is None:
        origins = points.new_zeros((num_groups, dims))
    with full_fp32():
        seeds, seed_groups = grid_seeds(points, groups, origins, num_groups, min_bin_freq)
        bits = _bit_table(num_groups, points.dtype, points.device)
        coded = torch.cat([points, bits[groups]], 1)
        modes, intensity = climb(coded, torch.cat([seeds, bits[seed_groups]], 1), max_iter, first_check, check_every)
        # A group none of whose seeds found a point (scikit-learn raises) reseeds from its points.
        best = intensity.new_zeros(num_groups).scatter_reduce_(0, seed_groups, intensity, "amax")
        lacking = best == 0     # also groups without points: harmless, they have no points to seed
        kept, (retry,) = merge_modes(modes, seed_groups, intensity, extra_flags=(best[seed_groups] == 0).any(0, True))
        if retry:
            more, more_intensity = climb(coded, torch.where(lacking[groups].unsqueeze(1), coded, float("nan")),
                                         max_iter, first_check, check_every)
            modes, intensity = torch.cat([modes, more]), torch.cat([intensity, more_intensity])
            seed_groups = torch.cat([seed_groups, groups])
            kept, _ = merge_modes(modes, seed_groups, intensity)
    return GroupedModes(modes[kept, :dims], seed_groups[kept])
