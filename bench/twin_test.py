"""The PanoNet twin test: do the coordinate channels separate identical instances?

PanoNet's instance branch sees RGB plus two normalised coordinate channels so that two
instances that look exactly alike (twins side by side, or a scene mirrored about its
centre, the paper's Fig. 5) still get different embeddings. This scores two checkpoints
trained the same way, one with coordinates and one without (``use_coords: false``), on

* SynthStreet scenes that contain identical twins (the first ``--count`` such scenes of
  stream ``--seed``; a scene qualifies when ``twin_ids`` finds a pair), and
* ``--count`` mirrored scenes of the same stream (left half mirrored onto the right),

and prints PQ_things and the share of twin instances (every thing instance for mirrored
scenes) that come out as their own segment: matched by a predicted segment of the same
class with IoU > 0.5 (the PQ matching rule, without the VOID correction).

Usage: .venv/bin/python bench/twin_test.py [--with weights/panonet_synthstreet]
       [--without weights/panonet_synthstreet_nocoords] [--seed 1000] [--count 30]
       [--size 512x1024] [--threads 0]
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Iterable, Iterator

import numpy as np
import torch

from panoptic_ros.eval.pq import PanopticEvaluator
from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.training.datasets.sample import Sample
from panoptic_ros.training.datasets.synth_stats import twin_ids
from panoptic_ros.training.datasets.synthstreet import generate_scene
from panoptic_ros.training.synth_cli import parse_size
from panoptic_ros.types import PanopticResult

MAX_SCANNED = 2000


def twin_scenes(seed: int, count: int, size: tuple[int, int]) -> Iterator[tuple[Sample, set[int]]]:
    """The first ``count`` scenes of stream ``seed`` with twins, and their twins' ids."""
    found = 0
    for index in range(MAX_SCANNED):
        sample = generate_scene(seed, index, height=size[0], width=size[1])
        ids = twin_ids(sample)
        if ids:
            yield sample, ids
            found += 1
            if found == count:
                return
    raise RuntimeError(f"only {found} scenes with twins among the first {MAX_SCANNED} of seed {seed}")


def mirrored_scenes(seed: int, count: int, size: tuple[int, int]) -> Iterator[tuple[Sample, set[int]]]:
    """Mirrored scenes and the ids of all their (non-crowd) thing instances."""
    for index in range(count):
        sample = generate_scene(seed, index, height=size[0], width=size[1], mirror=True)
        yield sample, {s.id for s in sample.target.segments if s.is_thing and not s.iscrowd}


def recovered(gt: PanopticResult, pred: PanopticResult, ids: set[int]) -> int:
    """How many of the GT segments ``ids`` a same-class predicted segment matches at IoU > 0.5."""
    pred_class = {s.id: s.category_id for s in pred.segments}
    hits = 0
    for gt_id in ids:
        mask = gt.panoptic == gt_id
        values, inter = np.unique(pred.panoptic[mask], return_counts=True)
        for pred_id, overlap in zip(values, inter):
            if pred_class.get(int(pred_id)) != gt_id // 1000:
                continue
            union = mask.sum() + np.count_nonzero(pred.panoptic == pred_id) - overlap
            if overlap / union > 0.5:
                hits += 1
                break
    return hits


def score(predictor: Predictor, scenes: Iterable[tuple[Sample, set[int]]]) -> tuple[float, int, int]:
    """(PQ_things, instances recovered, instances asked for) over ``scenes``."""
    evaluator, hits, total = PanopticEvaluator(CITYSCAPES), 0, 0
    for sample, ids in scenes:
        pred = predictor.predict(sample.image)
        evaluator.add(sample.target, pred)
        hits += recovered(sample.target, pred, ids)
        total += len(ids)
    return evaluator.summarize()["Things"]["pq"], hits, total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--with", dest="with_coords", default="weights/panonet_synthstreet")
    p.add_argument("--without", dest="without_coords", default="weights/panonet_synthstreet_nocoords")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--count", type=int, default=30)
    p.add_argument("--size", type=parse_size, default=(512, 1024))
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = library default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sets = {"twin scenes": lambda: twin_scenes(args.seed, args.count, args.size),
            "mirrored scenes": lambda: mirrored_scenes(args.seed, args.count, args.size)}
    table: dict[str, dict[str, tuple[float, int, int]]] = {}
    started = time.perf_counter()
    for label, path in (("with coords", args.with_coords), ("without coords", args.without_coords)):
        predictor = Predictor.from_checkpoint(path, device="cpu")
        if predictor.kind != "panonet":
            print(f"{path}: a {predictor.kind} checkpoint; the twin test compares PanoNet checkpoints")
            return 2
        table[label] = {name: score(predictor, make()) for name, make in sets.items()}
    print(f"twin test, SynthStreet seed {args.seed}, {args.count} scenes per set at "
          f"{args.size[0]}x{args.size[1]} ({time.perf_counter() - started:.0f} s)")
    print(f"{'':16s}{'set':18s}{'PQ_things':>10s}{'recovered':>16s}")
    for label, rows in table.items():
        for name, (pq, hits, total) in rows.items():
            print(f"{label:16s}{name:18s}{100 * pq:10.1f}{f'{hits}/{total} ({hits / max(total, 1):.0%})':>16s}")
    for name in sets:
        with_pq, without_pq = table["with coords"][name][0], table["without coords"][name][0]
        ratio = f"{with_pq / without_pq:.2f}x" if without_pq else "n/a (without: 0)"
        print(f"{name}: PQ_things with / without coordinates = {ratio} "
              f"({100 * (with_pq - without_pq):+.1f} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
