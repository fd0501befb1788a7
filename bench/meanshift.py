"""Mean-shift: panoptic_ros (torch) vs scikit-learn ``MeanShift(bin_seeding=True)``.

Two point sets, each clustered by both in one run, with the adjusted Rand index between
the labelings (target >= 0.99) and the speed-up (target >= 50x on the CPU):

1. ``blobs``: 20,000 and 100,000 points in 12-d from 10 Gaussian clusters (std 0.1 per
   dim, centres N(0, 1.5^2)), bandwidth 0.5; the 100k line prints the ratio the issue
   targets (>= 50x; scikit-learn takes minutes there, ``--no-100k`` skips it).
2. ``model``: PanoNet embeddings of a 1024x2048 SynthStreet frame at its thing pixels:
   the 1/4-scale cells whose ground-truth centre pixel is a thing, every
   ``--stride``-th cell in each direction (the post-processing default), clustered class
   by class as the post-processing does. The weights are ``--checkpoint``, else the
   shipped demo weights, else an untrained PanoNet whose embedding is standardised per
   dimension (an untrained head outputs near-constant embeddings); the line says which.

With CUDA, the model case is also timed on the GPU (target: under 1 ms per frame);
otherwise the script prints "no CUDA".

    .venv/bin/python bench/meanshift.py [--checkpoint CKPT] [--repeat 5] [--stride 2] [--threads N]

scikit-learn runs single-threaded here (``n_jobs=None``), so torch gets one thread by
default too (like with like; on a loaded machine multi-threaded torch also loses time
waiting for descheduled threads). ``--threads 0`` keeps torch's default.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import MeanShift
from sklearn.metrics import adjusted_rand_score

from panoptic_ros.checkpoint import load_checkpoint
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.models.icnet import guidance_size
from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
from panoptic_ros.postprocess.meanshift import mean_shift
from panoptic_ros.resources import default_weights
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.types import LABEL_DIVISOR

BANDWIDTH = 0.5


def blobs(seed: int = 0, n: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, 12)) * 1.5
    return (centres[rng.integers(0, 10, n)] + rng.normal(size=(n, 12)) * 0.1).astype(np.float32)


def model_points(checkpoint: str | None, stride: int) -> tuple[dict[str, np.ndarray], str]:
    """Per thing class, the (N, E) embeddings of its strided cells, and the weights used."""
    path = Path(checkpoint) if checkpoint else default_weights("panonet")
    if path.with_suffix(".json").is_file() or path.suffix == ".json":
        loaded = load_checkpoint(path)
        if loaded.model_config.kind != "panonet":
            raise SystemExit(f"{path}: holds a {loaded.model_config.kind} model, not a PanoNet")
        model, source, standardise = loaded.model, f"weights {path}", False
    else:
        torch.manual_seed(0)
        model = PanoNet(PanoNetConfig()).eval()
        source, standardise = "UNTRAINED PanoNet (no checkpoint found), embeddings standardised", True
    sample = generate_scene(0, 0, height=1024, width=2048)
    with torch.no_grad():
        embedding = model(torch.from_numpy(sample.image).permute(2, 0, 1)[None].float())["embedding"][0]
    if standardise:
        embedding = (embedding - embedding.mean((1, 2), keepdim=True)) / embedding.std((1, 2), keepdim=True)
    h, w = guidance_size(1024, 2048, 4)
    rows = np.minimum(np.arange(h) * 4 + 2, 1023)
    cols = np.minimum(np.arange(w) * 4 + 2, 2047)
    category = sample.target.panoptic[np.ix_(rows, cols)] // LABEL_DIVISOR
    keep = np.zeros((h, w), bool)
    keep[::stride, ::stride] = True
    cells = embedding.permute(1, 2, 0).numpy()
    points = {}
    for category_id in sorted(CITYSCAPES.thing_ids):
        mask = keep & (category == category_id)
        if mask.sum() >= 2:
            points[CITYSCAPES.category(category_id).name] = cells[mask]
    return points, source


def time_ours(points: torch.Tensor, repeat: int) -> tuple[float, np.ndarray]:
    """Median seconds over ``repeat`` runs (after one warm-up) and the labels."""
    labels, _ = mean_shift(points, BANDWIDTH)
    times = []
    for _ in range(repeat):
        if points.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        labels, _ = mean_shift(points, BANDWIDTH)
        if points.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), labels.cpu().numpy()


def compare(name: str, x: np.ndarray, repeat: int) -> tuple[float, float, float]:
    """Print one line for point set ``x``; returns (ours s, sklearn s, ARI)."""
    start = time.perf_counter()
    reference = MeanShift(bandwidth=BANDWIDTH, bin_seeding=True).fit(x)
    sk_time = time.perf_counter() - start
    ours, labels = time_ours(torch.from_numpy(x), repeat)
    ari = adjusted_rand_score(reference.labels_, labels)
    print(f"  {name:<14} {len(x):>6} pts  clusters ours {labels.max() + 1:>3} sklearn "
          f"{len(reference.cluster_centers_):>3}  ARI {ari:.4f}  ours {ours * 1e3:8.1f} ms  "
          f"sklearn {sk_time * 1e3:8.1f} ms  speed-up {sk_time / ours:6.1f}x")
    return ours, sk_time, ari


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="PanoNet checkpoint for the model case")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of ours (median)")
    parser.add_argument("--stride", type=int, default=2, help="cell stride of the model case")
    parser.add_argument("--no-100k", action="store_true", help="skip the 100k-point case")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1, like scikit-learn; 0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"mean-shift, bandwidth {BANDWIDTH}, bin seeding; torch threads {torch.get_num_threads()}")
    print("blobs: 12-d, 10 clusters")
    compare("blobs 20k", blobs(), args.repeat)
    if not args.no_100k:
        ours, sk_time, ari = compare("blobs 100k", blobs(n=100_000), max(1, args.repeat // 2))
        print(f"  100k ratio: {sk_time / ours:.1f}x (target >= 50x), ARI {ari:.4f} (target >= 0.99)")
    points, source = model_points(args.checkpoint, args.stride)
    print(f"model: 1024x2048 SynthStreet frame, thing cells at stride {args.stride}, {source}")
    totals = np.zeros(2)
    aris = []
    for name, x in points.items():
        ours, sk_time, ari = compare(name, x, args.repeat)
        totals += (ours, sk_time)
        aris.append(ari)
    print(f"  {'all classes':<14} {sum(len(x) for x in points.values()):>6} pts  min ARI {min(aris):.4f}  "
          f"ours {totals[0] * 1e3:.1f} ms  sklearn {totals[1] * 1e3:.1f} ms  speed-up {totals[1] / totals[0]:.1f}x")
    if not torch.cuda.is_available():
        print("GPU: no CUDA")
        return
    gpu_total = sum(time_ours(torch.from_numpy(x).cuda(), max(args.repeat, 20))[0] for x in points.values())
    print(f"GPU ({torch.cuda.get_device_name()}): model case {gpu_total * 1e3:.3f} ms per frame (target < 1 ms)")


if __name__ == "__main__":
    main()
