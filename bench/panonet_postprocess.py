"""PanoNet post-processing: the batched version against the per-class one it replaced.

On ``--count`` SynthStreet validation frames (stream 1000) through the shipped weights at
``--size`` (the shipped input size by default), prints per frame: the smallest per-class
adjusted Rand index between the two instance maps, host reads and torch calls of the
batched version (counted by panoptic_ros.sync_count on this machine's device), and both
run times (median of ``--repeat``, interleaved, same process); then PQ of both against
the ground truth. Targets (issue 20): ARI >= 0.99 per class, PQ within 0.2, at most 10
host reads and 300 torch calls per frame, not slower on the CPU.

    .venv/bin/python bench/panonet_postprocess.py [--count 20] [--size 512x1024] [--repeat 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from panoptic_ros.checkpoint import load_checkpoint
from panoptic_ros.eval.pq import PanopticEvaluator
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.postprocess.panonet import PanoNetPostprocessConfig, postprocess_panonet
from panoptic_ros.resources import default_weights
from panoptic_ros.sync_count import count_torch
from panoptic_ros.synthstreet.scene import generate_scene

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "postprocess"))
from panonet_reference import reference_postprocess  # noqa: E402  (the test oracle: the old algorithm)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def min_ari(old: np.ndarray, new: np.ndarray) -> float:
    scores = [adjusted_rand_score(old[m], new[m]) for c in CITYSCAPES.thing_ids for m in [old // 1000 == c] if m.any()]
    return min(scores, default=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--size", default="512x1024", help="HxW")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = map(int, args.size.split("x"))
    loaded = load_checkpoint(default_weights("panonet"))
    config = PanoNetPostprocessConfig(**loaded.postprocess)
    run = {"new": lambda o: postprocess_panonet(o, config=config, label_space=CITYSCAPES),
           "old": lambda o: reference_postprocess(o, config=config, label_space=CITYSCAPES)}
    pq = {k: PanopticEvaluator(CITYSCAPES) for k in run}
    rows = []
    print(f"{args.count} frames {height}x{width}, torch threads {torch.get_num_threads()}, device cpu")
    for index in range(args.count):
        sample = generate_scene(1000, index, height=height, width=width)
        with torch.no_grad():
            outputs = loaded.model(torch.from_numpy(sample.image).permute(2, 0, 1)[None].float())
        run["new"](outputs)   # warm the caches
        with count_torch() as counts:
            run["new"](outputs)
        (t_new, new), (t_old, old) = timed(lambda: run["new"](outputs), args.repeat), \
            timed(lambda: run["old"](outputs), args.repeat)
        pq["new"].add(sample.target, new)
        pq["old"].add(sample.target, old)
        rows.append((min_ari(old.panoptic, new.panoptic), counts.host_reads, counts.calls, t_new, t_old,
                     bool(np.array_equal(old.panoptic, new.panoptic))))
        print(f"  frame {index:2d}: min ARI {rows[-1][0]:.4f}  identical map {rows[-1][5]!s:5}  reads {counts.host_reads:2d}"
              f"  calls {counts.calls:3d}  new {t_new * 1e3:6.1f} ms  old {t_old * 1e3:6.1f} ms")
    a = np.array([r[:5] for r in rows])
    pq_new, pq_old = (pq[k].summarize()["All"]["pq"] * 100 for k in ("new", "old"))
    print(f"min ARI {a[:, 0].min():.4f}; identical maps {sum(r[5] for r in rows)}/{len(rows)}; "
          f"PQ new {pq_new:.2f} old {pq_old:.2f} (diff {pq_new - pq_old:+.2f})")
    print(f"host reads per frame max {a[:, 1].max():.0f} (target 10); torch calls median {np.median(a[:, 2]):.0f} "
          f"max {a[:, 2].max():.0f} (target 300), <= 300 on {int((a[:, 2] <= 300).sum())}/{len(a)} frames")
    print(f"CPU time per frame: new median {np.median(a[:, 3]) * 1e3:.1f} ms, old {np.median(a[:, 4]) * 1e3:.1f} ms; "
          f"sum new/old {a[:, 3].sum() / a[:, 4].sum():.2f}")


if __name__ == "__main__":
    main()
