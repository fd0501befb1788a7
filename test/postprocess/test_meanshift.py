"""Mean-shift against scikit-learn's MeanShift (the reference) on small seeded cases."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
from sklearn.cluster import MeanShift
from sklearn.cluster._mean_shift import get_bin_seeds
from sklearn.metrics import adjusted_rand_score

from panoptic_ros.postprocess import meanshift
from panoptic_ros.postprocess.meanshift import assign_to_modes, bin_seeds, mean_shift


def blobs(seed: int, n: int, dim: int, clusters: int, spread: float, scale: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * scale
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, dim)) * spread).astype(np.float32)


def assert_same_clustering(x: np.ndarray, bandwidth: float, **kwargs) -> None:
    ref = MeanShift(bandwidth=bandwidth, **kwargs).fit(x)
    labels, modes = mean_shift(torch.from_numpy(x), bandwidth, **kwargs)
    assert labels.dtype == torch.int64 and labels.shape == (len(x),)
    assert adjusted_rand_score(ref.labels_, labels.numpy()) >= 0.99
    assert modes.shape == ref.cluster_centers_.shape
    # Same modes in the same (intensity) order.
    np.testing.assert_allclose(modes.numpy(), ref.cluster_centers_, atol=1e-4)


@pytest.mark.parametrize("seed,dim,clusters,spread,bandwidth", [
    (0, 2, 3, 0.3, 0.8),
    (1, 12, 5, 0.08, 0.5),
    (2, 12, 4, 0.1, 0.7),
    (3, 3, 6, 0.5, 1.0),
])
def test_matches_sklearn_bin_seeding(seed, dim, clusters, spread, bandwidth):
    assert_same_clustering(blobs(seed, 300, dim, clusters, spread), bandwidth, bin_seeding=True)


def test_matches_sklearn_min_bin_freq_and_point_seeds():
    x = blobs(4, 200, 4, 3, 0.3)
    assert_same_clustering(x, 0.9, bin_seeding=True, min_bin_freq=5)
    assert_same_clustering(x, 0.9, bin_seeding=False)


def test_matches_sklearn_with_max_iter_cut_short():
    x = blobs(5, 300, 2, 2, 0.6, scale=2.0)
    assert_same_clustering(x, 1.0, bin_seeding=True, max_iter=1)


def test_blocked_search_equals_dense_search():
    # Enough points for blocking; clusters far apart give several blocks.
    x = torch.from_numpy(blobs(6, 2500, 12, 6, 0.1, scale=2.0))
    blocked = meanshift._Blocks(x, 0.5, blocked=True)
    dense = meanshift._Blocks(x, 0.5, blocked=False)
    assert len(blocked.bounds) > 1 and len(dense.bounds) == 1
    seeds = bin_seeds(x, 0.5)
    means_b, counts_b = meanshift._window_means(blocked, seeds, 0.5)
    means_d, counts_d = meanshift._window_means(dense, seeds, 0.5)
    torch.testing.assert_close(counts_b, counts_d, rtol=0, atol=0)
    torch.testing.assert_close(means_b, means_d, rtol=0, atol=1e-5)


def test_bin_seeds_match_sklearn():
    x = blobs(7, 500, 3, 4, 0.4)
    for freq in (1, 3):
        ours = bin_seeds(torch.from_numpy(x), 0.6, freq).numpy()
        ref = get_bin_seeds(x, 0.6, freq)
        assert sorted(map(tuple, np.round(ours, 5))) == sorted(map(tuple, np.round(ref, 5)))


def test_bin_seeds_fall_back_to_points_when_every_point_has_its_cell():
    x = torch.tensor([[0.0, 0.0], [5.0, 5.0], [10.0, 0.0]])
    assert bin_seeds(x, 1.0) is x


def test_no_seed_reaches_a_point_falls_back_to_point_seeds():
    # Every coordinate 0.45 rounds to the cell at the origin, but the origin is
    # 0.45 * sqrt(12) = 1.56 > 1 away: the only seed has an empty window.
    x = np.full((4, 12), 0.45, dtype=np.float32)
    x[:2] += 0.01
    with pytest.raises(ValueError):
        MeanShift(bandwidth=1.0, bin_seeding=True).fit(x)
    labels, modes = mean_shift(torch.from_numpy(x), 1.0)
    assert labels.tolist() == [0, 0, 0, 0]
    np.testing.assert_allclose(modes.numpy(), x.mean(0, keepdims=True), atol=1e-6)


def test_labels_are_nearest_modes_ordered_by_intensity():
    x = np.concatenate([np.zeros((30, 2)), np.full((10, 2), 5.0), np.full((20, 2), -5.0)]).astype(np.float32)
    x += np.random.default_rng(8).normal(size=x.shape).astype(np.float32) * 0.05
    labels, modes = mean_shift(torch.from_numpy(x), 1.0)
    assert labels.tolist() == [0] * 30 + [2] * 10 + [1] * 20
    torch.testing.assert_close(assign_to_modes(torch.from_numpy(x), modes), labels)


def test_float64_and_empty_inputs():
    x = torch.from_numpy(blobs(9, 200, 3, 2, 0.2).astype(np.float64))
    labels, modes = mean_shift(x, 0.8)
    assert modes.dtype == torch.float64 and labels.max() == len(modes) - 1
    labels, modes = mean_shift(torch.empty(0, 5), 0.5)
    assert labels.shape == (0,) and modes.shape == (0, 5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(points=torch.zeros(3), bandwidth=1.0), "points"),
    (dict(points=torch.zeros(3, 2, dtype=torch.int64), bandwidth=1.0), "points"),
    (dict(points=torch.zeros(3, 2), bandwidth=0.0), "bandwidth"),
    (dict(points=torch.zeros(3, 2), bandwidth=1.0, min_bin_freq=0), "min_bin_freq"),
    (dict(points=torch.zeros(3, 2), bandwidth=1.0, max_iter=-1), "max_iter"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    kwargs = dict(kwargs)  # the parameter dict is shared by every run of this case: leave it whole
    points = kwargs.pop("points")
    bandwidth = kwargs.pop("bandwidth")
    with pytest.raises(ValueError, match=match):
        mean_shift(points, bandwidth, **kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.from_numpy(blobs(10, 3000, 12, 5, 0.08))
    labels_cpu, modes_cpu = mean_shift(x, 0.5)
    labels_gpu, modes_gpu = mean_shift(x.cuda(), 0.5)
    assert labels_gpu.device.type == "cuda"
    assert adjusted_rand_score(labels_cpu.numpy(), labels_gpu.cpu().numpy()) >= 0.99
    torch.testing.assert_close(modes_gpu.cpu(), modes_cpu, atol=1e-4, rtol=0)


def test_window_includes_points_exactly_one_bandwidth_away():
    # Hand-worked (scikit-learn agrees): with bandwidth 1 the seed cells 0, 1, 3, 4 climb to
    # (0.25, 0) = mean of (0,0)x3 and (1,0), and (11/3, 0) = mean of (3,0) and (4,0)x2,
    # because (1,0) and (3,0) lie exactly on the window's edge. A strict test (< bandwidth)
    # would leave them out and stop at (0, 0) and (4, 0).
    x = np.array([[0, 0]] * 3 + [[1, 0], [3, 0]] + [[4, 0]] * 2, dtype=np.float32)
    labels, modes = mean_shift(torch.from_numpy(x), 1.0)
    np.testing.assert_allclose(modes.numpy(), [[0.25, 0.0], [11 / 3, 0.0]], atol=1e-6)
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1]


@pytest.mark.filterwarnings("ignore:Binning data failed:UserWarning")
def test_a_kept_mode_suppresses_modes_exactly_one_bandwidth_away():
    # Hand-worked (scikit-learn agrees): every point of -1, 0, 1, 2 has its own cell, so the
    # points seed. The seeds stop at -0.5 (2 points), 0 (3), 1 (3) and 1.5 (2). Sorted by
    # intensity then coordinate, 1 is kept first and suppresses 0 (exactly one bandwidth
    # away) and 1.5; -0.5 is kept. A strict test (< bandwidth) would keep 0 as well.
    x = torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    labels, modes = mean_shift(x, 1.0)
    np.testing.assert_allclose(modes.numpy(), [[1.0, 0.0], [-0.5, 0.0]], atol=1e-6)
    assert labels.tolist() == [1, 1, 0, 0]   # 0 is nearer -0.5 than 1


def _nearest_mode_distances(x: np.ndarray, modes: np.ndarray) -> np.ndarray:
    return np.sqrt(((x[:, None, :] - modes[None, :, :]) ** 2).sum(-1))


@pytest.mark.filterwarnings("ignore:Binning data failed:UserWarning")  # scikit-learn seeds from the points then, as we do
@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(-4, 4), st.integers(-4, 4)), min_size=1, max_size=30),
       st.sampled_from([1.0, 2.0, 3.0]))
def test_lattice_points_on_window_edges_match_sklearn(cells, bandwidth):
    # Integer points and bandwidths: many points sit exactly one bandwidth from a seed or a
    # mean, and the float arithmetic of both implementations is exact there.
    x = np.array(cells, dtype=np.float64)
    ref = MeanShift(bandwidth=bandwidth, bin_seeding=True).fit(x)
    labels, modes = mean_shift(torch.from_numpy(x), bandwidth)
    np.testing.assert_allclose(modes.numpy(), ref.cluster_centers_, atol=1e-9)
    # every point takes a nearest mode (ties may go either way)
    distances = _nearest_mode_distances(x, modes.numpy())
    np.testing.assert_allclose(distances[np.arange(len(x)), labels.numpy()], distances.min(1), atol=1e-9)
