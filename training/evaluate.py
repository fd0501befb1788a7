"""``panoptic-evaluate``: score a checkpoint on SynthStreet, Cityscapes or COCO panoptic.

Examples::

    panoptic-evaluate --checkpoint weights/panonet_synthstreet --dataset synthstreet \\
        --seed 1000 --count 50 --size 512x1024 --json-out pq.json --predictions-dir preds/
    panoptic-evaluate --checkpoint weights/panonet_synthstreet --dataset synthstreet \\
        --count 2 --size 256x512 --set default_bandwidth=0.6 --set min_area=200

``--set KEY=VALUE`` overrides a post-processing setting stored with the checkpoint; the
keys are the fields of ``PanoNetPostprocessConfig`` (``default_bandwidth``,
``bandwidths``, ``cluster_stride``, ``min_bin_freq``, ``min_area``, ``min_stuff_area``)
or ``CIAEPostprocessConfig`` (``score_threshold``, ``nms_threshold``, ``max_instances``,
``stuff_min_area``, ...). Values are YAML; a dict such as ``--set "bandwidths={car: 0.6}"``
replaces the stored dict as a whole. An unknown key or bad value ends with one line naming
it and exit code 2, as do a missing checkpoint or dataset.

Runs the real inference path (:class:`panoptic_ros.inference.predictor.Predictor`: resize
to the model's input size, network, post-processing, resize back) on every image and
scores the ``PanopticResult`` with the project's evaluator (official PQ rules) plus mIoU.
``--json-out`` receives the evaluator's dict (fractions; ``per_class`` keyed by category
id) with ``miou`` and ``images`` added. ``--predictions-dir`` receives the predictions in
COCO panoptic format (``predictions.json`` + ``predictions/``; for SynthStreet also the
ground truth as ``gt.json`` + ``gt/``), which ``panoptic-eval`` or the official scripts
re-score. Evaluation is deterministic: scenes are pure functions of (seed, index) and
inference has no randomness.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from panoptic_ros.checkpoint import CheckpointError, atomic_write_bytes
from panoptic_ros.cli_common import parse_size
from panoptic_ros.config import ConfigError, apply_overrides
from panoptic_ros.eval.cli import EXIT_BAD_INPUT
from panoptic_ros.eval.coco_format import CocoFormatError, write_coco_panoptic
from panoptic_ros.eval.scores import PanopticScores
from panoptic_ros.inference.auto import BACKEND_SETTINGS
from panoptic_ros.inference.backends import BackendError, TorchBackend
from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.kinds import model_kind
from panoptic_ros.labels import LabelSpace, get_label_space
from panoptic_ros.paths import check_output, os_error_line
from panoptic_ros.training import distributed
from panoptic_ros.training.engine import predictions
from panoptic_ros.training.state import preserved_rng
from panoptic_ros.types import PanopticFormatError

USER_ERRORS = (ConfigError, CheckpointError, CocoFormatError, PanopticFormatError, BackendError, FileNotFoundError)
GROUPS = ("All", "Things", "Stuff")


def format_summary(summary: dict) -> str:
    """PQ/SQ/RQ per group and mIoU as percentages, one line per group."""
    lines = [f"{'':8s} {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} {'n':>4s}"]
    for group in GROUPS:
        g = summary[group]
        lines.append(f"{group:8s} {100 * g['pq']:6.2f} {100 * g['sq']:6.2f} {100 * g['rq']:6.2f} {g['n']:4d}")
    lines.append(f"mIoU {100 * summary['miou']:.2f} over {summary['images']} images")
    return "\n".join(lines)


def log_evaluation(logger, step: int, summary: dict) -> None:
    """PQ/SQ/RQ of each group and mIoU to the run log (TensorBoard ``val/``)."""
    values = {f"{m}_{group}": summary[group][m] for group in GROUPS for m in ("pq", "sq", "rq")}
    logger.scalars(step, {**values, "miou": summary["miou"]}, prefix="val")
    groups = " | ".join(f"{g} PQ {100 * summary[g]['pq']:.1f} SQ {100 * summary[g]['sq']:.1f} "
                        f"RQ {100 * summary[g]['rq']:.1f}" for g in GROUPS)
    logger.message(f"step {step}: {groups} | mIoU {100 * summary['miou']:.1f} ({summary['images']} images)")


class _KeepingBackend(TorchBackend):
    """The torch backend that also keeps the last frame's raw outputs (batch 1), so the
    logged embedding image comes from the forward pass the evaluation already ran."""

    last_outputs: dict[str, torch.Tensor] | None = None

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        self.last_outputs = super().__call__(image)
        return self.last_outputs


def evaluate_model(model: nn.Module, config, *, count: int = 0, logger=None, step: int = 0) -> dict:
    """Validation scores of ``model`` during/after training (as :func:`run` scores a checkpoint).

    Under torchrun every rank scores its own consecutive share of the first ``count``
    validation images (``model`` must be the bare model, the same on every rank); the
    shares' scores are gathered and merged in image order, so every rank returns exactly
    the single-process scores. Rank 0 logs the first ``config.eval.images`` images of its
    share to ``logger``. RNG states are restored afterwards, so evaluating does not
    change the training run's random stream (a resumed run, which skips this evaluation,
    stays identical).
    """
    from panoptic_ros.training.data import build_dataset

    was_training = model.training
    device = next(model.parameters()).device
    label_space = get_label_space(config.model.label_space)
    dataset = build_dataset(config.data, "val")
    rank, world_size = distributed.rank_and_world()
    share = shard(min(count or len(dataset), len(dataset)), rank, world_size)
    images = config.eval.images if logger is not None and rank == 0 else 0
    embedding_output = model_kind(config.model.kind).embedding_output
    distributed.buffers_from_rank0(model)
    with preserved_rng():
        # The same path as inference (Predictor: resize, network, post-processing).
        backend = _KeepingBackend(model, device=device)
        predictor = Predictor(backend=backend, model_config=config.model, postprocess_config=config.postprocess,
                              input_size=config.model.input_size)

        def on_image(index, sample, result) -> None:
            if index < images:
                embedding = backend.last_outputs[embedding_output][0]
                _log_images(logger, step, index, sample, result, embedding, label_space)

        scores = PanopticScores(label_space, keep_matches=True)
        for _ in predictions(predictor.predict, (dataset[i] for i in share), scores, on_image):
            pass
    model.train(was_training)
    merged = PanopticScores(label_space, keep_matches=True)
    for part in distributed.all_objects(scores):
        merged.merge(part)
    return merged.summary()


def shard(count: int, rank: int, world_size: int) -> range:
    """The consecutive indices of ``range(count)`` that ``rank`` of ``world_size`` handles
    (the shares differ in size by at most one; rank order is index order)."""
    return range(rank * count // world_size, (rank + 1) * count // world_size)


def _log_images(logger, step: int, index: int, sample, result, embedding: torch.Tensor,
                label_space: LabelSpace) -> None:
    """Panoptic overlay and embedding PCA image of one validation image to TensorBoard.

    Args:
        embedding: (E, h, w) pixel embedding of the evaluated forward pass (at the model's
            input size / its stride).
    """
    from panoptic_ros.viz import embedding_pca_image, panoptic_overlay

    logger.image(step, f"val/overlay_{index}", panoptic_overlay(sample.image, result, label_space))
    logger.image(step, f"val/embedding_pca_{index}", embedding_pca_image(embedding.float().cpu().numpy()))


# ---- CLI ---------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="panoptic-evaluate", description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:4]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint (x, x.safetensors or x.json)")
    p.add_argument("--dataset", required=True, choices=["synthstreet", "cityscapes", "coco"])
    p.add_argument("--root", type=Path, help="dataset root (Cityscapes / COCO)")
    p.add_argument("--split", default="val", help="split of Cityscapes / COCO (default val)")
    p.add_argument("--seed", type=int, default=1000, help="SynthStreet stream seed (default 1000)")
    p.add_argument("--count", type=int, help="SynthStreet scenes (default 50); Cityscapes / COCO: the first N "
                   "images (default all)")
    p.add_argument("--size", type=parse_size, default=(512, 1024), help="SynthStreet scene size HxW (default 512x1024)")
    p.add_argument("--mirror", action="store_true", help="SynthStreet mirrored scenes (twin test)")
    p.add_argument("--json-out", type=Path, help="write the results dict (fractions) here")
    p.add_argument("--predictions-dir", type=Path, help="write COCO panoptic predictions here")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto: CUDA when available)")
    p.add_argument("--backend", default="auto", choices=BACKEND_SETTINGS,
                   help="inference backend (default auto: the one measured fastest on the device)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "int8"],
                   help="inference precision (torch autocast; int8: the onnxruntime backend's quantized graph; "
                        "default fp32)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = library default)")
    p.add_argument("--set", dest="postprocess", action="append", default=[], metavar="KEY=VALUE",
                   help="post-processing override, e.g. --set default_bandwidth=0.6 (PanoNet) or "
                        "--set score_threshold=0.4 (CIAE); repeatable")
    return p.parse_args(argv)


def _samples(args: argparse.Namespace, label_space: LabelSpace):
    """(number of images, iterator of samples) for the CLI's dataset arguments."""
    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count: must be >= 1, got {args.count}")
    if args.dataset == "synthstreet":
        from panoptic_ros.training.data import synthstreet

        if label_space.name != "cityscapes":
            raise ConfigError(f"{args.checkpoint}: SynthStreet uses the Cityscapes label space, the model "
                              f"predicts {label_space.name!r}")
        dataset = synthstreet(args.seed, 50 if args.count is None else args.count, args.size, mirror=args.mirror)
        return len(dataset), (dataset[i] for i in range(len(dataset)))
    if args.root is None:
        raise ConfigError(f"--root: required for --dataset {args.dataset}")
    from panoptic_ros.training.data import real_dataset

    dataset = real_dataset(args.dataset, args.root, args.split)
    count = len(dataset) if args.count is None else min(args.count, len(dataset))
    return count, (dataset[i] for i in range(count))


def parse_settings(items: Sequence[str]) -> dict:
    """``KEY=VALUE`` post-processing settings, values parsed as YAML (``0.5``,
    ``{car: 0.6}``) the same way as ``panoptic-train``'s overrides; unknown keys and wrong
    types are caught when the settings are applied to the post-processing config."""
    try:
        return apply_overrides({}, items)
    except ConfigError as exc:
        raise ConfigError(f"--set: {exc}") from None


def run(args: argparse.Namespace) -> dict:
    """Evaluate as the arguments say; returns the summary dict."""
    overrides = parse_settings(args.postprocess)
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, backend=args.backend,
                                          precision=args.precision, num_threads=args.threads, postprocess=overrides)
    label_space = predictor.label_space
    count, samples = _samples(args, label_space)
    scores, truth = PanopticScores(label_space), []
    keep_truth = args.predictions_dir is not None and args.dataset == "synthstreet"
    on_image = (lambda i, sample, result: truth.append((sample.image_id, sample.target))) if keep_truth else None
    rows = _progress(predictions(predictor.predict, samples, scores, on_image), count)
    if args.predictions_dir is not None:
        write_coco_panoptic(args.predictions_dir / "predictions.json", args.predictions_dir / "predictions",
                            rows, label_space)
        if keep_truth:
            write_coco_panoptic(args.predictions_dir / "gt.json", args.predictions_dir / "gt",
                                ((image_id, f"{image_id}.png", target) for image_id, target in truth), label_space)
    else:
        for _ in rows:
            pass
    return scores.summary()


def _progress(rows: Iterable, total: int) -> Iterable:
    from tqdm import tqdm

    return tqdm(rows, total=total, unit="img", disable=not sys.stderr.isatty())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        if args.json_out is not None:  # checked before the evaluation, not after it
            check_output(args.json_out, folder=False, what="--json-out file")
        if args.predictions_dir is not None:
            check_output(args.predictions_dir, folder=True, what="--predictions-dir folder")
        summary = run(args)
        print(format_summary(summary))
        print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
        if args.json_out is not None:
            _write_json(args.json_out, summary)
    except USER_ERRORS as exc:
        print(f"panoptic-evaluate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a write that failed all the same (disk full, a path that vanished)
        print(f"panoptic-evaluate: error: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _write_json(path: Path, summary: dict) -> None:
    text = json.dumps(summary, indent=1, default=_json_default) + "\n"
    try:
        atomic_write_bytes(path, text.encode())
    except OSError as exc:  # named by the target, not by the temporary file next to it
        raise ConfigError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


if __name__ == "__main__":
    sys.exit(main())
