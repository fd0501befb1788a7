"""One replay from start to report: open the bag, run it live or offline, score the outputs,
write ``report.json`` and ``report.html``.

Everything the replay produces lands in one folder::

    <out>/bag/            the node's outputs (rosbag2, mcap)
    <out>/coco/           pred.json, pred/; gt.json, gt/ too when the bag has ground truth
    <out>/samples/        full-size overlay PNGs of the sample frames
    <out>/node.log        the started node's log (live)
    <out>/report.json     every figure
    <out>/report.html     the same as one self-contained page

Ctrl-C stops the run, and everything up to that point is still closed, scored and
reported; a damaged bag ends the run at its last readable message, the same way.
"""
from __future__ import annotations

import datetime
import itertools
import shutil
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from panoptic_ros.checkpoint import checkpoint_paths
from panoptic_ros.config import ConfigError
from panoptic_ros.inference.auto import BACKEND_SETTINGS
from panoptic_ros.replay.bag import (BAG_FILE_SUFFIXES, BagError, BagSource, ReplayTopics, camera_topics,
                                    select_topics, stamp_text)
from panoptic_ros.replay.evaluate import score_outputs
from panoptic_ros.replay.messages import output_topics
from panoptic_ros.replay.metrics import RunLog, summarize
from panoptic_ros.replay.multicamera import (ReplayCamera, camera_report, live_inputs, node_cameras,
                                             replay_cameras, run_cameras, score_cameras)
from panoptic_ros.replay.outbag import OutputBag
from panoptic_ros.replay.report import write_report
from panoptic_ros.resources import default_weights

OUTPUTS = ("bag", "coco", "samples", "node.log", "report.json", "report.html")


class ReplayError(ValueError):
    """Options or inputs that make a replay impossible; the message says which."""


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay and how (see ``panoptic-replay --help`` for each option).

    ``on_frame`` (for programs that run replays): called with the number of frames handed
    over so far, after each one; a ``KeyboardInterrupt`` it raises stops the replay as
    Ctrl-C does (results up to then are written).
    """

    bag: Path
    mode: Literal["live", "offline"]
    model: Literal["panonet", "ciae"] | None = None
    weights: Path | None = None
    out: Path | None = None
    image_topic: str | None = None
    gt_topic: str | None = None
    use_gt: bool = True
    rate: float = 1.0
    as_fast_as_possible: bool = False
    device: str = "auto"
    backend: Literal[BACKEND_SETTINGS] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    num_threads: int = 0
    max_frames: int | None = None
    connect: str | None = None
    node_name: str = "panoptic_node"
    node_params: tuple[str, ...] = ()
    input_qos: Literal["reliable", "best_effort"] | None = None
    frame_timeout: float = 30.0
    startup_timeout: float = 180.0
    samples: int = 4
    force: bool = False
    progress: bool = True
    on_frame: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("live", "offline"):
            raise ConfigError(f"mode: must be live or offline, got {self.mode!r}")
        if self.connect is not None and self.mode != "live":
            raise ConfigError("connect: only a live replay connects to a running node")
        if self.mode == "offline" and (self.rate != 1.0 or self.as_fast_as_possible):
            raise ConfigError("rate, as_fast_as_possible: pace a live replay; offline runs as fast as it can")
        if (self.node_params or self.input_qos) and (self.mode != "live" or self.connect is not None):
            raise ConfigError("node_params, input_qos: only for a node the live replay starts")
        if self.input_qos not in (None, "reliable", "best_effort"):
            raise ConfigError(f"input_qos: must be reliable or best_effort, got {self.input_qos!r}")
        if self.model is None and self.connect is None:
            raise ConfigError("model: name the model (panonet or ciae)")
        if not self.rate > 0:
            raise ConfigError(f"rate: must be positive, got {self.rate}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames: must be at least 1, got {self.max_frames}")
        if self.frame_timeout <= 0 or self.startup_timeout <= 0:
            raise ConfigError("frame_timeout and startup_timeout must be positive")
        if not 0 <= self.samples <= 16:
            raise ConfigError(f"samples: must lie in [0, 16], got {self.samples}")

    @property
    def out_dir(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        what = self.model or Path(self.connect).name
        bag = Path(self.bag)
        name = bag.stem if bag.suffix in BAG_FILE_SUFFIXES else bag.name  # a one-file bag: its stem
        return Path(f"replay_{name}_{what}_{self.mode}")


def resolve_weights(options: ReplayOptions) -> Path:
    """The checkpoint to run: ``--weights`` or the shipped demo weights of the model."""
    weights = Path(options.weights) if options.weights is not None else default_weights(options.model)
    missing = [p for p in checkpoint_paths(weights) if not p.is_file()]
    if missing:
        hint = "" if options.weights is not None else " (the shipped demo weights; pass --weights CKPT)"
        raise ReplayError(f"{missing[0]}: checkpoint file not found{hint}")
    return weights


def _prepare_out(options: ReplayOptions) -> Path:
    out = options.out_dir
    present = [name for name in OUTPUTS if (out / name).exists()]
    if present and not options.force:
        raise ReplayError(f"{out}: already holds {', '.join(present)} from an earlier replay "
                          f"(choose another --out or pass --force to replace them)")
    for name in present:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _make_runner(options: ReplayOptions, topics: ReplayTopics | None, out: Path,
                 cameras: list[ReplayCamera] | None = None):
    """The offline or live runner; ``cameras``: a multi-camera replay (``topics`` None)."""
    if options.mode == "offline":
        from panoptic_ros.inference.predictor import PredictorConfig
        from panoptic_ros.replay.offline import OfflineRunner

        config = PredictorConfig(weights=resolve_weights(options), model=options.model, backend=options.backend,
                                 device=options.device, precision=options.precision,
                                 num_threads=options.num_threads)
        return OfflineRunner(config, node_topic=f"/{options.node_name}")
    from panoptic_ros.replay.nodeproc import NodeSpec
    from panoptic_ros.replay.live import LiveRunner  # the only part of a replay that needs ROS

    common = dict(log_dir=out, rate=options.rate, as_fast_as_possible=options.as_fast_as_possible,
                  frame_timeout=options.frame_timeout, startup_timeout=options.startup_timeout)
    if options.connect is not None:
        return LiveRunner(connect=options.connect, **common)
    image = topics.image if cameras is None else cameras[0].topics.image
    spec = NodeSpec(model=options.model, weights=resolve_weights(options).resolve(), name=options.node_name,
                    input_topic=image.name, compressed=image.msgtype.endswith("CompressedImage"),
                    backend=options.backend, device=options.device, precision=options.precision,
                    num_threads=options.num_threads,
                    input_qos=options.input_qos or "reliable", params=tuple(options.node_params),
                    cameras=() if cameras is None else tuple(node_cameras(cameras)))
    return LiveRunner(spec=spec, **common)


@contextmanager
def _sigint_ignored():
    """Ignore further Ctrl-C while files are being closed (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Progress:
    """What the runners tick once per frame handed over: the progress bar and ``on_frame``."""

    def __init__(self, options: ReplayOptions, total: int | None):
        from tqdm import tqdm

        if options.max_frames is not None:
            total = min(total, options.max_frames) if total else options.max_frames
        self._bar = tqdm(total=total, unit="frame", desc=f"{options.mode} replay",
                         disable=not (options.progress and sys.stderr.isatty()))
        self._on_frame = options.on_frame
        self.count = 0

    def update(self, frames: int = 1) -> None:
        self._bar.update(frames)
        self.count += frames
        if self._on_frame is not None:
            self._on_frame(self.count)

    def set_postfix(self, **values) -> None:
        self._bar.set_postfix(**values)

    def close(self) -> None:
        self._bar.close()


def _run(options: ReplayOptions, source: BagSource, topics: ReplayTopics, out: Path) -> dict:
    """Run the frames through the model; returns what the report needs from the run."""
    log = RunLog()
    runner = _make_runner(options, topics, out)
    interrupted = False
    bag = None
    progress = _Progress(options, topics.image.count)
    try:
        if options.mode == "live":
            runner.start(topics.image.name, topics.image.msgtype)
        else:
            runner.start()
        bag = OutputBag(out / "bag", output_topics(runner.node_topic), latched=(f"{runner.node_topic}/label_info",))
        frames = itertools.islice(source.messages([topics.image.name]), options.max_frames)
        runner.run(frames, topics.image.msgtype, bag, log, progress)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with _sigint_ignored():
            progress.close()
            runner.close()
            if bag is not None:
                bag.close()
    model_ms = runner.model_ms() if options.mode == "live" else None
    return {"log": log, "info": runner.info(), "label_space": runner.label_space, "interrupted": interrupted,
            "figures": summarize(log, wall_s=runner.wall_s, model_ms=model_ms),
            "panoptic_topic": f"{runner.node_topic}/panoptic", "output_counts": bag.counts if bag else {}}


def _sample_stamps(log: RunLog, count: int) -> list[int]:
    """Up to ``count`` processed frames spread evenly over the run."""
    done = [r.stamp_ns for r in log.records if r.done_s is not None]
    if not done or count == 0:
        return []
    step = len(done) / min(count, len(done))
    return sorted({done[int(i * step + step / 2)] for i in range(min(count, len(done)))})


def replay(options: ReplayOptions) -> dict:
    """Run one replay and write its outputs and report; returns the report dict.

    Raises:
        ReplayError, BagError, ConfigError: unusable options or bag.
        CheckpointError, BackendError, NodeError: the model or node cannot run.
    """
    out = _prepare_out(options)
    with BagSource(options.bag) as source:
        if options.image_topic is None and len(camera_topics(source.topics)) > 1:
            return _replay_cameras(options, source, out)
        topics = select_topics(source, image_topic=options.image_topic, gt_topic=options.gt_topic,
                               use_gt=options.use_gt)
        run = _run(options, source, topics, out)
        errors = [source.damage] if source.damage else []
        evaluation, samples = None, {}
        stamps = _sample_stamps(run["log"], options.samples)
        try:
            if run["label_space"] is None or not (out / "bag" / "metadata.yaml").is_file():
                raise BagError("the run ended before any output was recorded")
            with BagSource(out / "bag") as outputs:
                evaluation, samples = score_outputs(
                    source, topics, outputs, run["panoptic_topic"], run["label_space"],
                    processed=run["log"].processed_stamps(), coco_dir=out / "coco",
                    sample_stamps=set(stamps))
        except KeyboardInterrupt:
            errors.append("scoring interrupted (Ctrl-C): no scores")
            run["interrupted"] = True
        except BagError as exc:
            errors.append(f"scoring failed: {exc}")
        if source.damage and source.damage not in errors:  # damage found while scoring
            errors.insert(0, source.damage)
    report = {
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "bag": str(options.bag), "bag_file": str(source.file), "out": str(out),
        "image_topic": topics.image.name, "image_type": topics.image.msgtype,
        "gt_topic": topics.gt.name if topics.gt else None, "gt_ignored": not options.use_gt,
        "run": run["info"], "interrupted": run["interrupted"], "errors": errors,
        "figures": run["figures"], "evaluation": evaluation,
        "coco": _coco_paths(out, with_gt=evaluation is not None) if (out / "coco" / "pred.json").is_file() else None,
        "output_bag": {"path": str(out / "bag"), "messages": run["output_counts"]},
        "samples": [stamp_text(s) for s in stamps],
    }
    with _sigint_ignored():
        return write_report(out, report, samples, run["label_space"])


def _replay_cameras(options: ReplayOptions, source: BagSource, out: Path) -> dict:
    """Replay every camera of a multi-camera bag through one model; returns the report
    (:mod:`panoptic_ros.replay.multicamera`)."""
    if options.gt_topic is not None:
        raise ReplayError("--gt-topic names one camera's ground truth: give --image-topic too, or let a "
                          "multi-camera replay pair each camera with the ground truth in its namespace")
    if options.connect is not None:
        raise ReplayError("--connect: a multi-camera replay starts its own node (with the bag's cameras); "
                          "choose one camera with --image-topic to replay into a running node")
    cameras = replay_cameras(source, use_gt=options.use_gt)
    runner = _make_runner(options, None, out, cameras)
    progress = _Progress(options, sum(c.topics.image.count or 0 for c in cameras) or None)
    try:
        runner.start_cameras(live_inputs(cameras)) if options.mode == "live" else runner.start()
        logs, interrupted = run_cameras(runner, source, cameras, out, max_frames=options.max_frames,
                                        progress=progress)
    finally:
        with _sigint_ignored():
            progress.close()
            runner.close()
    errors = [source.damage] if source.damage else []
    scores, overall = {}, None
    try:
        scores, overall = score_cameras(source, cameras, logs, out, node_topic=runner.node_topic,
                                        label_space=runner.label_space)
    except BagError as exc:
        errors.append(f"scoring failed: {exc}")
    return camera_report(bag=str(options.bag), out=out, run_info=runner.info(), cameras=cameras, logs=logs,
                         scores=scores, overall=overall, wall_s=runner.wall_s, interrupted=interrupted,
                         errors=errors)


def _coco_paths(out: Path, *, with_gt: bool) -> dict:
    """Where the COCO exports are, and the ``panoptic-eval`` command that re-scores them."""
    coco = out / "coco"
    paths = {"pred_json": coco / "pred.json", "pred_folder": coco / "pred"}
    if not with_gt:
        return {k: str(v) for k, v in paths.items()}
    paths = {"gt_json": coco / "gt.json", "gt_folder": coco / "gt", **paths}
    command = "panoptic-eval " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in paths.items())
    return {**{k: str(v) for k, v in paths.items()}, "command": command}
