"""The PanoNet twin test: do the coordinate channels separate identical instances?

PanoNet's instance branch sees RGB plus two normalised coordinate channels so that two
instances that look exactly alike (twins side by side, or a scene mirrored about its
centre, the paper's Fig. 5) still get different embeddings. This scores two checkpoints
trained the same way, one with coordinates and one without (``use_coords: false``), on

* SynthStreet scenes that contain identical twins (the first ``--count`` such scenes of
  stream ``--seed``; a scene qualifies when ``twin_ids`` finds a pair), and
* the same scenes with the context taken away (``synthstreet/twins.py``): two copies of the
  largest twin, ``--gap`` of its width apart and centred, on rows of one colour and one
  stuff class, so that only their position tells them apart, and
* ``--count`` mirrored scenes of the same stream (left half mirrored onto the right), and
* for reference, the first ``--count`` plain scenes of the stream (every thing instance),

and prints PQ_things and the share of twin instances (every thing instance for mirrored
scenes) that come out as their own segment: matched by a predicted segment of the same
class with IoU > 0.5 (the PQ matching rule, without the VOID correction).

``--oracle-semantics`` replaces the network's semantic outputs by the ground truth (the
class map and one-hot class logits, VOID pixels left as predicted), so the figures measure
the instance embedding and mean-shift alone: the coordinates can only help there, and on
small CPU-trained models semantic errors otherwise dominate PQ_things.

Usage: .venv/bin/python bench/twin_test.py [--with weights/panonet_synthstreet]
       [--without weights/panonet_synthstreet_nocoords] [--seed 1000] [--count 30]
       [--size 512x1024] [--gap 0.5] [--threads 0] [--oracle-semantics]
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from panoptic_ros.checkpoint import load_checkpoint
from panoptic_ros.cli_common import parse_size
from panoptic_ros.eval.pq import PanopticEvaluator
from panoptic_ros.inference.predictor import Predictor, resize_image
from panoptic_ros.labels import CITYSCAPES, IGNORE_INDEX
from panoptic_ros.postprocess.panonet import PanoNetPostprocessConfig, postprocess_panonet
from panoptic_ros.sample import Sample
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.synthstreet.stats import twin_ids
from panoptic_ros.synthstreet.twins import isolate_twins
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


def isolated_twin_scenes(seed: int, count: int, size: tuple[int, int],
                         gap_share: float) -> Iterator[tuple[Sample, set[int]]]:
    """The twin scenes of :func:`twin_scenes`, each reduced to two copies of its largest
    twin side by side on a plain background (:func:`isolate_twins`), and the copies' ids."""
    for sample, ids in twin_scenes(seed, count, size):
        largest = max(ids, key=lambda i: sample.target.segment(i).area)
        isolated = isolate_twins(sample, largest, gap_share)
        yield isolated, {s.id for s in isolated.target.segments if s.is_thing}


def whole_scenes(seed: int, count: int, size: tuple[int, int], *,
                 mirror: bool) -> Iterator[tuple[Sample, set[int]]]:
    """The first ``count`` scenes (mirrored or not) and the ids of all their (non-crowd)
    thing instances."""
    for index in range(count):
        sample = generate_scene(seed, index, height=size[0], width=size[1], mirror=mirror)
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


class OracleSemantics:
    """A PanoNet checkpoint whose semantic outputs are replaced by the ground truth."""

    LOGIT = 20.0  # one-hot logits: softmax ~1 for the true class (the segment scores)

    def __init__(self, path: str):
        checkpoint = load_checkpoint(path)
        self.model = checkpoint.model
        self.input_size = tuple(checkpoint.model_config.input_size)
        self.postprocess = PanoNetPostprocessConfig(**checkpoint.postprocess)

    def __call__(self, sample: Sample) -> PanopticResult:
        image = torch.from_numpy(resize_image(sample.image, self.input_size)).permute(2, 0, 1)[None].float()
        with torch.inference_mode():
            outputs = dict(self.model(image))
        truth = sample.target.semantic_map(CITYSCAPES)
        outputs["semantic"] = _override(outputs["semantic"][0], truth)[None]
        logits = outputs["semantic_logits"][0]
        small = torch.from_numpy(_resized(truth, logits.shape[1:]).astype(np.int64))
        known = small != IGNORE_INDEX
        one_hot = F.one_hot(small.clamp(max=logits.shape[0] - 1), logits.shape[0]).permute(2, 0, 1) * self.LOGIT
        outputs["semantic_logits"] = torch.where(known, one_hot.to(logits.dtype), logits)[None]
        result = postprocess_panonet(outputs, config=self.postprocess, label_space=CITYSCAPES)
        return result.resize(sample.image.shape[1], sample.image.shape[0])


def _resized(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST_EXACT)


def _override(semantic: torch.Tensor, truth: np.ndarray) -> torch.Tensor:
    """(H, W) predicted classes with the known ground-truth classes written over them."""
    small = torch.from_numpy(_resized(truth, tuple(semantic.shape)).astype(np.int64))
    return torch.where(small != IGNORE_INDEX, small.to(semantic.dtype), semantic)


def score(segment: Callable[[Sample], PanopticResult],
          scenes: Iterable[tuple[Sample, set[int]]]) -> tuple[float, int, int]:
    """(PQ_things, instances recovered, instances asked for) over ``scenes``."""
    evaluator, hits, total = PanopticEvaluator(CITYSCAPES), 0, 0
    for sample, ids in scenes:
        pred = segment(sample)
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
    p.add_argument("--gap", type=float, default=0.5,
                   help="isolated twins: the gap between the copies as a share of their width")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = library default)")
    p.add_argument("--oracle-semantics", action="store_true",
                   help="ground-truth semantic outputs: score the instance embedding alone")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sets = {"twin scenes": lambda: twin_scenes(args.seed, args.count, args.size),
            "isolated twins": lambda: isolated_twin_scenes(args.seed, args.count, args.size, args.gap),
            "mirrored scenes": lambda: whole_scenes(args.seed, args.count, args.size, mirror=True),
            "plain scenes": lambda: whole_scenes(args.seed, args.count, args.size, mirror=False)}
    table: dict[str, dict[str, tuple[float, int, int]]] = {}
    started = time.perf_counter()
    for label, path in (("with coords", args.with_coords), ("without coords", args.without_coords)):
        predictor = Predictor.from_checkpoint(path, device="cpu")
        if predictor.kind != "panonet":
            print(f"{path}: a {predictor.kind} checkpoint; the twin test compares PanoNet checkpoints")
            return 2
        segment = OracleSemantics(path) if args.oracle_semantics else (lambda s, p=predictor: p.predict(s.image))
        table[label] = {name: score(segment, make()) for name, make in sets.items()}
    print(f"twin test, SynthStreet seed {args.seed}, {args.count} scenes per set at "
          f"{args.size[0]}x{args.size[1]}{', ground-truth semantics' if args.oracle_semantics else ''} "
          f"({time.perf_counter() - started:.0f} s)")
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
