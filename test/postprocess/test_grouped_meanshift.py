"""Grouped mean-shift against scikit-learn's MeanShift run on each group alone, and the
device greedy suppression against a plain Python loop."""
import numpy as np
import pytest
import torch
from sklearn.cluster import MeanShift
from sklearn.metrics import adjusted_rand_score

from panoptic_ros.postprocess.grouped_meanshift import (assign_grouped, check_schedule, full_fp32,
                                                        grouped_mean_shift)
from panoptic_ros.postprocess.nms import greedy_keep
from panoptic_ros.sync_count import count_torch


def blobs(seed: int, n: int, dim: int, clusters: int, spread: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 1.5
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, dim)) * spread).astype(np.float32)


@pytest.mark.parametrize("min_bin_freq", [1, 3])
def test_each_group_clusters_like_sklearn_alone(min_bin_freq):
    # Three groups in one space that overlap (same centres for groups 0 and 2), each with
    # its own bandwidth; group 1 is empty of points in between (groups 0, 2, 3 used).
    sets = {0: (blobs(0, 300, 6, 4, 0.1), 0.5), 2: (blobs(0, 200, 6, 4, 0.15), 0.8), 3: (blobs(3, 250, 6, 3, 0.2), 0.7)}
    points = torch.cat([torch.from_numpy(x) / bw for x, bw in sets.values()])
    groups = torch.cat([torch.full((len(x),), g) for g, (x, _) in sets.items()])
    found = grouped_mean_shift(points, groups, 4, min_bin_freq=min_bin_freq)
    labels = assign_grouped(points, groups, found)
    for g, (x, bw) in sets.items():
        reference = MeanShift(bandwidth=bw, bin_seeding=True, min_bin_freq=min_bin_freq).fit(x)
        modes = found.modes[found.groups == g].numpy() * bw
        np.testing.assert_allclose(modes, reference.cluster_centers_, atol=1e-4)   # same modes, same order
        mine = labels[groups == g].numpy()
        assert adjusted_rand_score(reference.labels_, mine) >= 0.99


def test_centred_groups_seed_on_the_uncentred_grid():
    x = blobs(5, 400, 4, 3, 0.3)
    reference = MeanShift(bandwidth=1.0, bin_seeding=True).fit(x)
    centre = torch.from_numpy(x).mean(0)
    found = grouped_mean_shift(torch.from_numpy(x) - centre, torch.zeros(len(x), dtype=torch.int64), 1,
                               origins=centre.unsqueeze(0))
    np.testing.assert_allclose((found.modes + centre).numpy(), reference.cluster_centers_, atol=1e-4)


def test_group_whose_seeds_find_no_point_reseeds_from_its_points():
    # Every coordinate 0.45 rounds to the origin cell, 1.56 away: scikit-learn raises.
    x = np.full((4, 12), 0.45, dtype=np.float32)
    x[:2] += 0.01
    points = torch.from_numpy(np.concatenate([x, blobs(1, 50, 12, 1, 0.05)]))
    groups = torch.tensor([0] * 4 + [1] * 50)
    found = grouped_mean_shift(points, groups, 2)
    assert found.groups.tolist() == [0, 1]
    np.testing.assert_allclose(found.modes[0].numpy(), x.mean(0), atol=1e-6)


def test_points_alone_in_their_cells_are_the_seeds():
    points = torch.tensor([[0.0, 0.0], [5.0, 5.0], [10.0, 0.0], [0.3, 0.1], [0.2, 0.3]])
    groups = torch.tensor([0, 0, 0, 1, 1])
    found = grouped_mean_shift(points, groups, 2)
    # Group 0: three far-apart points, three modes at the points; group 1: one cell.
    assert found.groups.tolist() == [0, 0, 0, 1]
    np.testing.assert_allclose(found.modes[3].numpy(), [0.25, 0.2], atol=1e-6)


def test_reads_do_not_grow_with_groups():
    def reads(n_groups):
        x = torch.from_numpy(np.concatenate([blobs(g, 200, 8, 3, 0.1) for g in range(n_groups)]))
        groups = torch.arange(n_groups).repeat_interleave(200)
        with count_torch() as counts:
            grouped_mean_shift(x / 0.5, groups, n_groups)
        return counts.host_reads
    assert reads(6) == reads(1)


def test_check_schedule_spaces_reads():
    assert sorted(check_schedule(12, 8, 301)) == [12, 20, 28, 44, 76, 140, 268, 301]
    assert check_schedule(12, 8, 5) == {5}


def test_full_fp32_restores_the_setting():
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        with full_fp32():
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)


def python_greedy(suppress: np.ndarray, candidates: np.ndarray) -> list[int]:
    kept = []
    for j in range(len(suppress)):
        if candidates[j] and not any(suppress[i, j] for i in kept):
            kept.append(j)
    return kept


@pytest.mark.parametrize("seed", range(6))
def test_greedy_keep_equals_the_python_loop(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    suppress = rng.random((n, n)) < rng.uniform(0.01, 0.3)
    candidates = rng.random(n) < 0.8
    kept, flags = greedy_keep(torch.from_numpy(suppress), torch.from_numpy(candidates),
                              extra_flags=torch.tensor([True, False]), check_every=2)
    assert kept.tolist() == python_greedy(np.triu(suppress, 1), candidates)
    assert flags == [True, False]


def test_greedy_keep_long_chain():
    # i suppresses i + 1 only: the answer alternates, and needs n iterations to settle.
    n = 40
    suppress = torch.zeros(n, n, dtype=torch.bool)
    suppress[torch.arange(n - 1), torch.arange(1, n)] = True
    kept, _ = greedy_keep(suppress)
    assert kept.tolist() == list(range(0, n, 2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_under_tf32_matches_the_cpu():
    # TF32 would move points across window borders; the mean-shifts force full fp32.
    from panoptic_ros.postprocess.meanshift import mean_shift

    x = torch.from_numpy(blobs(10, 3000, 12, 5, 0.08)) * 6.0      # large norms: |x|^2 ~ 1000
    groups = torch.arange(3).repeat_interleave(1000)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        cpu, gpu = grouped_mean_shift(x / 0.5, groups, 3), grouped_mean_shift(x.cuda() / 0.5, groups.cuda(), 3)
        labels_cpu, modes_cpu = mean_shift(x, 0.5)
        labels_gpu, modes_gpu = mean_shift(x.cuda(), 0.5)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    torch.testing.assert_close(gpu.modes.cpu(), cpu.modes, atol=1e-4, rtol=0)
    assert gpu.groups.cpu().tolist() == cpu.groups.tolist()
    assert adjusted_rand_score(labels_cpu.numpy(), labels_gpu.cpu().numpy()) >= 0.99
    torch.testing.assert_close(modes_gpu.cpu(), modes_cpu, atol=1e-4, rtol=0)


@pytest.mark.parametrize("rows", [50, 700])     # the pairwise comparison, and column-by-column sorts
def test_lexicographic_order_is_pythons_descending_sort(rows):
    from panoptic_ros.postprocess.grouped_meanshift import _lexicographic_order

    keys = torch.from_numpy(np.random.default_rng(rows).integers(0, 3, (rows, 4)).astype(np.float32))
    expected = sorted(range(rows), key=lambda i: tuple(-v for v in keys[i].tolist()))   # stable: ties keep order
    assert _lexicographic_order(keys).tolist() == expected
