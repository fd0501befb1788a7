"""``panoptic-replay``: replay a ROS 2 bag through the panoptic node and report.

Examples::

    panoptic-replay my_bag --model panonet --live                 # the node at the recorded rate
    panoptic-replay my_bag --model ciae --live --as-fast-as-possible
    panoptic-replay my_bag --model panonet --offline --out runs/replay_panonet
    panoptic-replay my_bag --live --connect /panoptic_node        # a node that is already running
    panoptic-replay rig_bag --model panonet --offline             # every camera of a multi-camera bag

A bag with several camera topics replays every camera through one model (live: one node
with a cameras parameter) unless --image-topic picks one; each camera is scored on the
32SC1 ground truth in its namespace, and the report gives per-camera and overall figures.

Exit codes: 0 done; 1 unusable options, bag, model or node; 2 a path that cannot be used
(``--out`` under a file or not writable: nothing is replayed), or results written but the
bag is damaged or the scoring failed; 130 interrupted (results up to then are written).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from panoptic_ros.cli_common import int_at_least, positive_float
from panoptic_ros.inference.auto import BACKEND_SETTINGS
from panoptic_ros.kinds import MODEL_KINDS

EXIT_ERROR, EXIT_PARTIAL, EXIT_INTERRUPTED = 1, 2, 130
EXIT_BAD_PATH = 2  # as every other console script exits on a path it cannot use


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="panoptic-replay", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", type=Path, help="rosbag2 folder (mcap or sqlite3) or .mcap file")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--live", action="store_true", help="through the real node over DDS")
    mode.add_argument("--offline", action="store_true", help="the node's Predictor directly, as fast as possible")
    p.add_argument("--model", choices=MODEL_KINDS, help="model (required unless --connect)")
    p.add_argument("--weights", type=Path, help="checkpoint (default: the shipped demo weights of --model)")
    p.add_argument("--out", type=Path, help="output folder (default replay_<bag>_<model>_<mode>)")
    p.add_argument("--force", action="store_true", help="replace the results of an earlier replay in --out")
    p.add_argument("--image-topic", help="replay this camera topic only (default: the bag's camera, or every "
                                         "camera of a multi-camera bag through one model)")
    gt = p.add_mutually_exclusive_group()
    gt.add_argument("--gt-topic", help="32SC1 panoptic ground-truth topic (default: auto-detected)")
    gt.add_argument("--no-gt", action="store_true", help="ignore any ground truth (no scores)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=positive_float, default=1.0,
                      help="live: speed factor on the recorded timing (default 1.0)")
    pace.add_argument("--as-fast-as-possible", action="store_true",
                      help="live: send the next frame when the previous frame's output is back")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--backend", choices=BACKEND_SETTINGS, default="auto",
                   help="inference backend (default auto: the one measured fastest on the device)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="inference precision (torch autocast; default fp32)")
    p.add_argument("--num-threads", type=int_at_least(0), default=0, help="CPU inference threads (0 = default)")
    p.add_argument("--max-frames", type=int_at_least(1), help="replay at most this many frames")
    p.add_argument("--connect", metavar="NAMESPACE/NODE",
                   help="live: use this running node instead of starting one (e.g. /panoptic_node)")
    p.add_argument("--node-name", default="panoptic_node", help="name of the started node (default panoptic_node)")
    p.add_argument("--qos", choices=("reliable", "best_effort"),
                   help="live: input reliability of the started node. Default reliable (queue of 10): a replay "
                        "must deliver every recorded frame, so frames are dropped only by the node's "
                        "latest-frame-only slot. best_effort is the node's own default (sensor data, depth 1); "
                        "Fast DDS then loses many large raw frames when the node is busy (each is sent in 64 KB "
                        "fragments and one lost fragment loses the frame)")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="live: a parameter of the started node, e.g. qos.output_depth:=5 (repeatable)")
    p.add_argument("--frame-timeout", type=positive_float, default=30.0,
                   help="live: longest wait for one frame's output, and for the node to finish at the end "
                        "(default 30)")
    p.add_argument("--startup-timeout", type=positive_float, default=180.0,
                   help="live: seconds for the node to load its model (default 180)")
    p.add_argument("--samples", type=int_at_least(0), default=4, help="sample frames in the report (default 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def summary_lines(report: dict) -> list[str]:
    """A short human summary of a report."""
    from panoptic_ros.replay.report import drop_text

    f, ev, run = report["figures"], report["evaluation"], report["run"]
    lat, model = f["latency_ms"], f["model_ms"] or {}

    def ms(v):
        return "-" if v is None else f"{v:.0f} ms"

    fps = "-" if f["throughput_fps"] is None else f"{f['throughput_fps']:.2f} fps"
    lines = [f"{run.get('model') or '?'} {run['mode']} ({_backend_text(run)}): {f['frames_sent']} frames sent, "
             f"{f['frames_out']} outputs, "
             f"{f['dropped']} dropped; latency p50 {ms(lat['p50'])} p99 {ms(lat['p99'])}, model p50 "
             f"{ms(model.get('p50'))}, {fps}"]
    drops = drop_text(report)
    if drops:
        lines.append(f"  {drops}")
    if ev is not None:
        pq = ev["pq"]
        miou = "-" if ev["miou"] is None else f"{100 * ev['miou']:.1f}"
        lines.append(f"  PQ {100 * pq['All']['pq']:.1f} (things {100 * pq['Things']['pq']:.1f}, stuff "
                     f"{100 * pq['Stuff']['pq']:.1f}), mIoU {miou} over {ev['frames_evaluated']} frames")
    elif report["gt_ignored"]:
        lines.append("  ground truth ignored (--no-gt): no scores")
    elif report["gt_topic"] is None:
        lines.append("  no ground truth in the bag: no scores")
    lines += [f"  warning: {e}" for e in report["errors"]]
    lines.append(f"  report: {Path(report['out']) / 'report.html'}")
    return lines


def _backend_text(run: dict) -> str:
    """``onnxruntime fp32, auto``: the backend and precision that ran, and what was asked
    for when the backend was chosen by ``auto``."""
    text = f"{run.get('backend') or '?'} {run.get('precision') or '?'}"
    return f"{text}, auto" if run.get("backend_requested") == "auto" else text


def user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean unusable options, bag, model or node (reported in one line)."""
    from panoptic_ros.checkpoint import CheckpointError
    from panoptic_ros.config import ConfigError
    from panoptic_ros.inference.backends import BackendError
    from panoptic_ros.replay.bag import BagError
    from panoptic_ros.replay.nodeproc import NodeError
    from panoptic_ros.replay.run import ReplayError

    return ReplayError, BagError, ConfigError, CheckpointError, BackendError, NodeError, OSError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from panoptic_ros.config import ConfigError
    from panoptic_ros.paths import check_output
    from panoptic_ros.replay.run import ReplayOptions, replay

    try:
        options = ReplayOptions(
            bag=args.bag, mode="live" if args.live else "offline", model=args.model, weights=args.weights,
            out=args.out, image_topic=args.image_topic, gt_topic=args.gt_topic, use_gt=not args.no_gt,
            rate=args.rate, as_fast_as_possible=args.as_fast_as_possible, device=args.device,
            backend=args.backend, precision=args.precision, num_threads=args.num_threads,
            max_frames=args.max_frames, connect=args.connect,
            node_name=args.node_name, node_params=tuple(args.param), input_qos=args.qos,
            frame_timeout=args.frame_timeout,
            startup_timeout=args.startup_timeout, samples=args.samples, force=args.force, progress=not args.no_progress)
    except user_errors() as exc:
        print(f"panoptic-replay: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        check_output(options.out_dir, folder=True, what="--out folder")
    except ConfigError as exc:
        print(f"panoptic-replay: error: {exc}", file=sys.stderr)
        return EXIT_BAD_PATH
    try:
        print(f"panoptic-replay: {options.mode} replay of {args.bag} into {options.out_dir}", file=sys.stderr,
              flush=True)
        report = replay(options)
    except user_errors() as exc:
        print(f"panoptic-replay: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("panoptic-replay: interrupted before the replay started", file=sys.stderr)
        return EXIT_INTERRUPTED
    from panoptic_ros.replay.multicamera import camera_summary_lines

    print("\n".join(camera_summary_lines(report) if "cameras" in report else summary_lines(report)))
    if report["interrupted"]:
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
