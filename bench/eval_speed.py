"""Speed of ``panoptic-eval`` against the official cityscapesscripts evaluation.

Writes N Cityscapes-sized (1024 x 2048) GT/prediction pairs in COCO panoptic format
(street-like layouts: stuff bands, 20-40 instances, crowd regions, VOID; predictions with
shifted boundaries, missed, split and relabelled instances, spurious ones), then
evaluates the same files with our evaluator and with the official ``evaluatePanoptic``,
one process each, and prints both times, the ratio and whether the results agree.

Usage: .venv/bin/python bench/eval_speed.py [--images 20]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from panoptic_ros.eval.cli import evaluate_coco_panoptic
from panoptic_ros.eval.coco_format import write_panoptic_png
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.types import id2rgb

H, W = 1024, 2048
STUFF = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23)
THINGS = (24, 25, 26, 27, 28, 31, 32, 33)


def street_gt(rng: np.random.Generator) -> np.ndarray:
    """(H, W) int32 Cityscapes-style panoptic ids of a random street scene."""
    pan = np.full((H, W), 7000, np.int32)                       # road
    horizon = int(rng.integers(350, 500))
    pan[:horizon] = 23000                                       # sky
    for _ in range(int(rng.integers(6, 12))):                   # buildings, trees, poles ...
        x0 = int(rng.integers(0, W - 100))
        pts = np.array([[x0, int(rng.integers(0, horizon))], [x0 + int(rng.integers(80, 600)), int(rng.integers(0, horizon))],
                        [x0 + int(rng.integers(80, 600)), horizon + int(rng.integers(0, 200))],
                        [x0, horizon + int(rng.integers(0, 200))]], np.int32)
        cv2.fillPoly(pan, [pts], int(rng.choice(STUFF[1:-1])) * 1000)
    pan[int(rng.integers(750, 900)):, : int(rng.integers(200, 700))] = 8000   # sidewalk
    for k in range(1, int(rng.integers(20, 41))):               # instances, far ones small
        y = int(rng.integers(horizon, H - 20))
        scale = 0.1 + 0.9 * (y - horizon) / (H - horizon)
        axes = (max(2, int(rng.integers(20, 160) * scale)), max(2, int(rng.integers(15, 120) * scale)))
        cv2.ellipse(pan, (int(rng.integers(0, W)), y), axes, 0, 0, 360, int(rng.choice(THINGS)) * 1000 + k, -1)
    for _ in range(int(rng.integers(0, 3))):                    # crowd regions (instance 0)
        x, y = int(rng.integers(0, W - 300)), int(rng.integers(horizon, H - 100))
        pan[y:y + int(rng.integers(30, 100)), x:x + int(rng.integers(100, 300))] = int(rng.choice((24, 26))) * 1000
    pan[H - 60:] = 0                                            # ego vehicle: VOID
    pan[rng.random((H, W)) < 0.002] = 0
    return pan


def street_prediction(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible prediction: shifted, missed, split, relabelled and spurious segments."""
    pred = np.roll(gt, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
    ids = np.unique(pred)
    for sid in ids[(ids % 1000 > 0)].tolist():
        action = rng.random()
        if action < 0.12:
            pred[pred == sid] = (sid // 1000) * 1000 if rng.random() < 0.5 else 7000   # missed
        elif action < 0.2:
            pred[pred == sid] = int(rng.choice(THINGS)) * 1000 + sid % 1000          # relabelled
        elif action < 0.28:
            ys, xs = np.nonzero(pred == sid)
            half = xs > np.median(xs)
            pred[ys[half], xs[half]] = sid // 1000 * 1000 + 900 + sid % 100           # split
    pred[(pred % 1000 == 0) & (pred // 1000 >= 24)] = 7000                            # no crowd in predictions
    for k in range(int(rng.integers(2, 8))):
        cv2.circle(pred, (int(rng.integers(0, W)), int(rng.integers(400, H))), int(rng.integers(5, 60)),
                   int(rng.choice(THINGS)) * 1000 + 500 + k, -1)
    return pred


def write_dataset(root: Path, count: int, seed: int) -> dict[str, Path]:
    """GT and prediction COCO panoptic datasets of ``count`` street pairs.

    GT PNGs are written with PIL's defaults, as cityscapesscripts' createPanopticImgs
    writes them; predictions with our writer, as the project's tools write them.
    """
    rng = np.random.default_rng(seed)
    categories = CITYSCAPES.coco_categories()
    gt_anns, pred_anns = [], []
    for k in range(count):
        gt = street_gt(rng)
        pred = street_prediction(gt, rng)
        name = f"frame{k:04d}.png"
        (root / "gt").mkdir(parents=True, exist_ok=True)
        Image.fromarray(id2rgb(gt)).save(root / "gt" / name)
        write_panoptic_png(root / "pred" / name, pred)
        for pan, anns in ((gt, gt_anns), (pred, pred_anns)):
            ids, areas = np.unique(pan, return_counts=True)
            info = [{"id": i, "category_id": i // 1000, "area": int(a),
                     "iscrowd": int(i % 1000 == 0 and i // 1000 in THINGS)}
                    for i, a in zip(ids.tolist(), areas) if i]
            anns.append({"image_id": f"frame{k:04d}", "file_name": name, "segments_info": info})
    paths = {"gt_json": root / "gt.json", "gt_folder": root / "gt",
             "pred_json": root / "pred.json", "pred_folder": root / "pred"}
    paths["gt_json"].write_text(json.dumps({"annotations": gt_anns, "categories": categories}))
    paths["pred_json"].write_text(json.dumps({"annotations": pred_anns, "categories": categories}))
    return paths


class DecodeClock:
    """Accumulates the CPU time spent decoding PNGs inside either evaluator, by wrapping
    the one call each uses (read_panoptic_png in ours, PIL's Image.open in the official code;
    PIL decodes lazily, so the wrapper loads the image before returning it)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, load):
        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return load(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - start
        return timed

    def pil_open(self, path, *args, **kwargs):
        image = Image.open(path, *args, **kwargs)
        self.wrap(image.load)()
        return image


def run_official(paths: dict[str, Path], results_file: Path, clock: DecodeClock) -> dict:
    """The official evaluatePanoptic in one process (its pool dispatcher swapped for the
    official single-core function; it has no process-count option)."""
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as official

    def single_core(matched, gt_folder, pred_folder, categories):
        return official.pq_compute_single_core(0, matched, gt_folder, pred_folder, categories)

    saved = official.pq_compute_multi_core, official.Image
    official.pq_compute_multi_core = single_core
    official.Image = types.SimpleNamespace(open=clock.pil_open)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return official.evaluatePanoptic(str(paths["gt_json"]), str(paths["gt_folder"]), str(paths["pred_json"]),
                                             str(paths["pred_folder"]), str(results_file))
    finally:
        official.pq_compute_multi_core, official.Image = saved


def run_ours(paths: dict[str, Path], clock: DecodeClock) -> dict:
    """Our evaluator in this process, with its PNG decoding (file read + decode + ids) timed."""
    from panoptic_ros.eval import cli

    read = cli.read_panoptic_png
    cli.read_panoptic_png = clock.wrap(read)
    try:
        return evaluate_coco_panoptic(paths["gt_json"], paths["gt_folder"], paths["pred_json"],
                                      paths["pred_folder"], workers=1).summarize()
    finally:
        cli.read_panoptic_png = read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each (the best counts)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float, float]]] = {"ours": [], "official": []}
    with tempfile.TemporaryDirectory(prefix="eval_speed_") as tmp:
        root = Path(tmp)
        paths = write_dataset(root, args.images, args.seed)
        for _ in range(args.repeats):   # alternate, so load changes on a shared machine hit both
            for name in ("ours", "official"):
                clock = DecodeClock()
                wall, cpu = time.perf_counter(), time.process_time()
                if name == "ours":
                    ours = run_ours(paths, clock)
                else:
                    official = run_official(paths, root / "official.json", clock)
                runs[name].append((time.process_time() - cpu, time.perf_counter() - wall, clock.seconds))
        identical = (root / "official.json").read_text() == json.dumps(ours, sort_keys=True, indent=4)

    n = args.images
    best = {name: min(times) for name, times in runs.items()}   # by CPU time
    print(f"{n} pairs of {W}x{H} (COCO panoptic PNG + JSON), one process each, best of {args.repeats}; "
          f"CPU seconds of this process (wall in brackets)")
    for name, (cpu, wall, decode) in best.items():
        print(f"{name:9s} {cpu:6.2f} s ({wall:5.2f})  {cpu / n * 1e3:6.1f} ms/pair, of which PNG decoding "
              f"{decode / n * 1e3:5.1f} ms/pair ({'libdeflate + numba' if name == 'ours' else 'PIL'})")
    first = runs["ours"][0][0]
    print(f"ours, first run  {first:6.2f} s: includes loading the compiled PNG unfilter from numba's cache "
          f"(or compiling it, about 2-5 s, on a fresh install)")
    (ours_cpu, _, ours_dec), (off_cpu, _, off_dec) = best["ours"], best["official"]
    print(f"speed-up end to end            {off_cpu / ours_cpu:6.2f} x  (target >= 5 x)")
    print(f"speed-up without PNG decoding  {(off_cpu - off_dec) / (ours_cpu - ours_dec):6.2f} x")
    print(f"All PQ ours {100 * ours['All']['pq']:.4f} official {100 * official['All']['pq']:.4f}; "
          f"results file byte-identical to the official one: {identical}")


if __name__ == "__main__":
    main()
