"""``panoptic-eval``: PQ/SQ/RQ of COCO panoptic predictions, as the official script computes it.

Categories come from the GT JSON (as in the official ``evaluatePanoptic``); predictions
are paired with GT annotations by ``image_id``. ``--json-out`` receives exactly the dict
the official function returns and writes (fractions, ``per_class`` keyed by category id).
Bad input ends with one line naming the file on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

from panoptic_ros.config import ConfigError
from panoptic_ros.eval.coco_format import CocoFormatError, read_panoptic_json, read_panoptic_png
from panoptic_ros.eval.pq import PanopticEvaluator
from panoptic_ros.labels import LABEL_SPACES, get_label_space
from panoptic_ros.paths import check_output
from panoptic_ros.types import PanopticFormatError

EXIT_BAD_INPUT = 2

# (gt PNG, gt segments_info, prediction PNG, prediction segments_info)
_Task = tuple[Path, list, Path, list]
# From this many pairs per process on, PNGs are unfiltered by the compiled loop: loading
# it costs about a second of CPU per process, which its speed (~4 against ~20 ms per
# PIL-written 2048x1024 PNG) repays over some 20 pairs (24 PIL-written pairs, whole
# process, AMD EPYC: 1.98 s compiled, 2.14 s numpy); fewer go through the numpy unfilter.
COMPILED_DECODE_FROM_PAIRS = 20


def evaluate_coco_panoptic(
    gt_json: str | Path,
    gt_folder: str | Path,
    pred_json: str | Path,
    pred_folder: str | Path,
    *,
    workers: int = 1,
    label_space: str = "auto",
) -> PanopticEvaluator:
    """Evaluate a COCO panoptic prediction folder against its ground truth.

    Args:
        gt_json, gt_folder: GT annotations and their PNGs.
        pred_json, pred_folder: predictions and their PNGs.
        workers: processes reading and counting images (1 = in this process).
        label_space: ``auto`` takes the GT JSON's categories as they are; ``cityscapes``
            or ``coco`` also checks that they belong to that label space.
    Returns:
        The filled evaluator (``summarize()`` gives the official results dict).
    Raises:
        CocoFormatError, PanopticFormatError: bad input; the message names the file.
    """
    gt_json, pred_json = Path(gt_json), Path(pred_json)
    gt_data = read_panoptic_json(gt_json)
    pred_data = read_panoptic_json(pred_json, require_categories=False)
    categories = gt_data["categories"]
    try:
        evaluator = PanopticEvaluator(categories)
    except PanopticFormatError as exc:
        raise CocoFormatError(f"{gt_json}: {exc}") from None
    if label_space != "auto":
        _check_label_space(evaluator, label_space, gt_json)
    for folder in (gt_folder, pred_folder):
        if not Path(folder).is_dir():
            raise CocoFormatError(f"{folder}: folder not found")
    tasks = _pair_annotations(gt_data, gt_json, gt_folder, pred_data, pred_json, pred_folder)
    if workers <= 1 or len(tasks) < 2:
        return _evaluate_tasks(categories, tasks)
    chunks = [tasks[i::workers * 4] for i in range(min(len(tasks), workers * 4))]
    with multiprocessing.Pool(processes=min(workers, len(chunks))) as pool:
        for part in pool.imap_unordered(_evaluate_chunk, [(categories, chunk) for chunk in chunks]):
            evaluator.merge(part)
    return evaluator


def _pair_annotations(gt_data, gt_json, gt_folder, pred_data, pred_json, pred_folder) -> list[_Task]:
    """One task per GT annotation, with the prediction of the same image_id (the last
    one where a prediction JSON repeats an image_id, as the official code)."""
    predictions = {ann["image_id"]: ann for ann in pred_data["annotations"]}
    tasks = []
    for gt_ann in gt_data["annotations"]:
        pred_ann = predictions.get(gt_ann["image_id"])
        if pred_ann is None:
            raise CocoFormatError(f"{pred_json}: no prediction for image {gt_ann['image_id']!r} of {gt_json}")
        tasks.append((Path(gt_folder) / gt_ann["file_name"], gt_ann["segments_info"],
                      Path(pred_folder) / pred_ann["file_name"], pred_ann["segments_info"]))
    return tasks


def _evaluate_chunk(job: tuple[list, list[_Task]]) -> PanopticEvaluator:
    return _evaluate_tasks(*job)


def _evaluate_tasks(categories: Sequence[Mapping], tasks: list[_Task]) -> PanopticEvaluator:
    evaluator = PanopticEvaluator(categories)
    compiled = len(tasks) >= COMPILED_DECODE_FROM_PAIRS
    for gt_png, gt_info, pred_png, pred_info in tasks:
        evaluator.add_coco(read_panoptic_png(gt_png, compiled=compiled), gt_info,
                           read_panoptic_png(pred_png, compiled=compiled), pred_info,
                           gt_source=str(gt_png), pred_source=str(pred_png))
    return evaluator


def _check_label_space(evaluator: PanopticEvaluator, name: str, gt_json: Path) -> None:
    space = get_label_space(name)
    for category_id, is_thing in zip(evaluator.category_ids, evaluator.is_thing):
        if category_id not in space or space.category(category_id).is_thing != bool(is_thing):
            kind = "thing" if is_thing else "stuff"
            raise CocoFormatError(f"{gt_json}: category {category_id!r} ({kind}) is not a {kind} "
                                  f"category of label space {name!r}")


def format_results(evaluator: PanopticEvaluator, results: dict) -> str:
    """A readable table: All/Things/Stuff (PQ SQ RQ in percent, N), then every category."""
    lines = [f"{'':24s} {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} {'N':>5s}"]
    for name in ("All", "Things", "Stuff"):
        r = results[name]
        lines.append(f"{name:24s} {100 * r['pq']:6.2f} {100 * r['sq']:6.2f} {100 * r['rq']:6.2f} {r['n']:5d}")
    lines += ["", f"{'category':24s} {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} {'TP':>7s} {'FP':>7s} {'FN':>7s}"]
    for i, category_id in enumerate(evaluator.category_ids):
        r = results["per_class"][category_id]
        label = f"{evaluator.names[i]} ({category_id}){' *' if evaluator.is_thing[i] else ''}"
        lines.append(f"{label[:24]:24s} {100 * r['pq']:6.2f} {100 * r['sq']:6.2f} {100 * r['rq']:6.2f} "
                     f"{evaluator.tp[i]:7d} {evaluator.fp[i]:7d} {evaluator.fn[i]:7d}")
    lines.append("(* = thing category)")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="panoptic-eval",
        description="Panoptic quality (PQ, SQ, RQ) of COCO panoptic predictions with the official rules "
                    "(COCO panopticapi / cityscapesscripts evalPanopticSemanticLabeling).")
    parser.add_argument("--gt-json", required=True, type=Path, help="GT COCO panoptic JSON (gives the categories)")
    parser.add_argument("--gt-folder", required=True, type=Path, help="folder of the GT PNGs")
    parser.add_argument("--pred-json", required=True, type=Path, help="prediction COCO panoptic JSON")
    parser.add_argument("--pred-folder", required=True, type=Path, help="folder of the prediction PNGs")
    parser.add_argument("--json-out", type=Path, help="write the official results dict here (fractions)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--label-space", default="auto", choices=["auto", *sorted(LABEL_SPACES)],
                        help="check the GT categories against this label space (default auto: no check)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.workers < 1:
        _parser().error("--workers must be at least 1")
    start = time.perf_counter()
    try:
        if args.json_out is not None:  # checked before the evaluation, not after it
            check_output(args.json_out, folder=False, what="--json-out file")
        evaluator = evaluate_coco_panoptic(args.gt_json, args.gt_folder, args.pred_json, args.pred_folder,
                                           workers=args.workers, label_space=args.label_space)
        results = evaluator.summarize()
        if args.json_out is not None:
            try:
                args.json_out.parent.mkdir(parents=True, exist_ok=True)
                args.json_out.write_text(json.dumps(results, sort_keys=True, indent=4))
            except OSError as exc:
                raise CocoFormatError(f"{args.json_out}: cannot write ({exc.strerror})") from None
    except (CocoFormatError, PanopticFormatError, ConfigError) as exc:
        print(f"panoptic-eval: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_results(evaluator, results))
    print(f"\n{evaluator.num_images} images evaluated in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
