"""Speed of ``panoptic-eval`` against the official cityscapesscripts evaluation.

Writes N Cityscapes-sized (1024 x 2048) GT/prediction pairs in COCO panoptic format
(street-like layouts: stuff bands, 20-40 instances, crowd regions, VOID; predictions with
shifted boundaries, missed, split and relabelled instances, spurious ones), then
evaluates the same files with our evaluator and with the official ``evaluatePanoptic``,
one process each, and prints both times, the ratio and whether the results agree.

``--writer`` chooses what writes the PNGs, GT and predictions alike: ``pil`` (PIL's PNG
writer with its adaptive filters, as cityscapesscripts' ``createPanopticImgs`` writes the
real Cityscapes ground truth), ``opencv`` (``cv2.imwrite``'s defaults) or ``ours``
(:func:`write_panoptic_png`); several run one after the other. Two measurements each:

- in process (as before): CPU seconds of the evaluation call itself, best of
  ``--repeats``, with the PNG decoding share;
- whole process: CPU seconds of ``panoptic-eval --workers 1`` against the official
  script (``python -m cityscapesscripts.evaluation.evalPanopticSemanticLabeling``, its
  pool dispatcher swapped for its single-core function so that it too uses one core),
  each started fresh, interpreter start and imports included (wall seconds beside them);
  medians of ``--repeats``, the two alternating.

Usage: .venv/bin/python bench/eval_speed.py [--images 20] [--writer pil opencv ours]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from panoptic_ros.eval.cli import COMPILED_DECODE_FROM_PAIRS, evaluate_coco_panoptic
from panoptic_ros.eval.coco_format import write_panoptic_png
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.precision import machine_name
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


def write_pil(path: Path, ids: np.ndarray) -> None:
    """PIL's defaults, as cityscapesscripts' createPanopticImgs writes GT PNGs."""
    Image.fromarray(id2rgb(ids)).save(path)


def write_opencv(path: Path, ids: np.ndarray) -> None:
    """``cv2.imwrite``'s defaults (BGR order on disk as RGB)."""
    cv2.imwrite(str(path), np.ascontiguousarray(id2rgb(ids)[..., ::-1]))


WRITERS = {"pil": write_pil, "opencv": write_opencv, "ours": write_panoptic_png}


def write_dataset(root: Path, count: int, seed: int, writer: str = "pil") -> dict[str, Path]:
    """GT and prediction COCO panoptic datasets of ``count`` street pairs, every PNG
    written by ``WRITERS[writer]``."""
    rng = np.random.default_rng(seed)
    categories = CITYSCAPES.coco_categories()
    write = WRITERS[writer]
    gt_anns, pred_anns = [], []
    for k in range(count):
        gt = street_gt(rng)
        pred = street_prediction(gt, rng)
        name = f"frame{k:04d}.png"
        for folder, pan, anns in (("gt", gt, gt_anns), ("pred", pred, pred_anns)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            write(root / folder / name, pan)
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


# The official command line, one core: its pool dispatcher replaced by its single-core function.
OFFICIAL_SINGLE_CORE = (
    "import sys\n"
    "from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as official\n"
    "official.pq_compute_multi_core = lambda matched, gt, pred, cats: "
    "official.pq_compute_single_core(0, matched, gt, pred, cats)\n"
    "sys.argv[0] = 'evalPanopticSemanticLabeling'\n"
    "official.main()\n")


def whole_process_commands(paths: dict[str, Path], root: Path) -> dict[str, list[str]]:
    """The two command lines, each a fresh interpreter."""
    ours = [str(Path(sys.executable).with_name("panoptic-eval")), "--gt-json", str(paths["gt_json"]),
            "--gt-folder", str(paths["gt_folder"]), "--pred-json", str(paths["pred_json"]),
            "--pred-folder", str(paths["pred_folder"]), "--workers", "1", "--json-out", str(root / "ours_cli.json")]
    official = [sys.executable, "-c", OFFICIAL_SINGLE_CORE, "--gt-json-file", str(paths["gt_json"]),
                "--gt-folder", str(paths["gt_folder"]), "--prediction-json-file", str(paths["pred_json"]),
                "--prediction-folder", str(paths["pred_folder"]), "--results_file", str(root / "official_cli.json")]
    return {"ours": ours, "official": official}


def time_whole_processes(paths: dict[str, Path], root: Path, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (CPU, wall) seconds of each command line, the two alternating. CPU seconds
    (user + system of the child) are the figure: on a shared machine wall time mostly
    measures the other load."""
    commands = whole_process_commands(paths, root)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            times[name].append((cpu, wall))
    return {name: (statistics.median(c for c, _ in t), statistics.median(w for _, w in t)) for name, t in times.items()}


def results_agree(ours: dict, official: dict, tolerance: float = 1e-9) -> bool:
    """Whether every number of the two results dicts agrees to ``tolerance``."""
    if isinstance(ours, dict) and isinstance(official, dict):
        return ours.keys() == official.keys() and all(results_agree(ours[k], official[k], tolerance) for k in ours)
    return abs(ours - official) <= tolerance


def in_process(paths: dict[str, Path], root: Path, repeats: int) -> tuple[dict, dict]:
    """Best (CPU, wall, decode) seconds of each evaluator in this process, and both results."""
    runs: dict[str, list[tuple[float, float, float]]] = {"ours": [], "official": []}
    results = {}
    for _ in range(repeats):   # alternate, so load changes on a shared machine hit both
        for name in ("ours", "official"):
            clock = DecodeClock()
            wall, cpu = time.perf_counter(), time.process_time()
            if name == "ours":
                results[name] = run_ours(paths, clock)
            else:
                results[name] = run_official(paths, root / "official.json", clock)
            runs[name].append((time.process_time() - cpu, time.perf_counter() - wall, clock.seconds))
    return {name: min(times) for name, times in runs.items()}, results


def report(writer: str, n: int, repeats: int, best: dict, results: dict, wall: dict) -> None:
    decoder = "numba" if n >= COMPILED_DECODE_FROM_PAIRS else "numpy"
    print(f"\n== PNGs written by {writer}: {n} pairs of {W}x{H} (COCO panoptic PNG + JSON)")
    print(f"in process, CPU seconds of the evaluation call, best of {repeats} (wall in brackets):")
    for name, (cpu, wall_s, decode) in best.items():
        print(f"  {name:9s} {cpu:6.2f} s ({wall_s:5.2f})  {cpu / n * 1e3:6.1f} ms/pair, of which PNG decoding "
              f"{decode / n * 1e3:5.1f} ms/pair ({'libdeflate + ' + decoder if name == 'ours' else 'PIL'})")
    (ours_cpu, _, ours_dec), (off_cpu, _, off_dec) = best["ours"], best["official"]
    print(f"  speed-up                       {off_cpu / ours_cpu:6.2f} x")
    print(f"  speed-up without PNG decoding  {(off_cpu - off_dec) / (ours_cpu - ours_dec):6.2f} x")
    (cli_cpu, cli_wall), (official_cpu, official_wall) = wall["ours"], wall["official"]
    print(f"whole process, one core each, CPU seconds (wall in brackets), median of {repeats}:")
    print(f"  panoptic-eval --workers 1 {cli_cpu:6.2f} s ({cli_wall:5.2f}), official {official_cpu:6.2f} s "
          f"({official_wall:5.2f}), speed-up {official_cpu / cli_cpu:.2f} x (target >= 5 x)")
    agree = results_agree(results["ours"], results["official"])
    print(f"  All PQ ours {100 * results['ours']['All']['pq']:.4f} official "
          f"{100 * results['official']['All']['pq']:.4f}; every figure equal to 1e-9: {agree}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--writer", nargs="+", choices=list(WRITERS), default=list(WRITERS),
                        help="what writes the PNGs (default: each in turn)")
    args = parser.parse_args()
    print(f"{machine_name()}")
    for writer in args.writer:
        with tempfile.TemporaryDirectory(prefix="eval_speed_") as tmp:
            root = Path(tmp)
            paths = write_dataset(root, args.images, args.seed, writer)
            best, results = in_process(paths, root, args.repeats)
            wall = time_whole_processes(paths, root, args.repeats)
            cli = json.loads((root / "ours_cli.json").read_text())
            official_cli = json.loads((root / "official_cli.json").read_text())
            if not results_agree(cli, official_cli):
                print(f"  {writer}: the command lines' results differ (beyond 1e-9)")
            report(writer, args.images, args.repeats, best, results, wall)


if __name__ == "__main__":
    main()
