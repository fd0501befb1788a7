"""``make demo``: the node on a generated street bag, live, with both shipped models.

1. Writes a SynthStreet bag into ``out/demo/synthstreet_bag``: 100 frames of 512x1024 at
   10 Hz (raw rgb8 camera, camera info, 32SC1 panoptic ground truth), seed 1000 (scenes the
   shipped weights never trained on). An existing bag with the same settings is reused.
2. Replays it live through ``panoptic_node`` (reliable input, so every frame reaches the
   node and drops come only from its latest-frame-only slot) with the shipped PanoNet weights, then CIAE:
   frames published at the recorded rate, the node's outputs recorded, scored against the
   ground truth; ``out/demo/<model>/`` gets the output bag, ``report.html``, ``report.json``,
   COCO exports and overlay PNGs.
3. Prints a short summary per model (the backend and precision the node ran, PQ, latency
   p50/p99, throughput, dropped frames).

DDS discovery stays on this host, in a domain of its own unless ``ROS_DOMAIN_ID`` is set,
so the demo neither sees nor disturbs other ROS systems.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import yaml

DEMO_DIR = Path("out/demo")
BAG_NAME = "synthstreet_bag"
FRAMES, HEIGHT, WIDTH, RATE_HZ, SEED = 100, 512, 1024, 10.0, 1000
MODELS = ("panonet", "ciae")


def missing_weights() -> list[Path]:
    """The shipped checkpoint files that are not there."""
    from panoptic_ros.checkpoint import checkpoint_paths
    from panoptic_ros.resources import default_weights

    return [p for kind in MODELS for p in checkpoint_paths(default_weights(kind)) if not p.is_file()]


def _bag_is_current(path: Path) -> bool:
    """A bag written earlier by the demo with today's settings (frames, size, rate)."""
    meta = path / "metadata.yaml"
    if not meta.is_file():
        return False
    try:
        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        custom = info.get("custom_data") or {}
    except (yaml.YAMLError, KeyError, TypeError):
        return False
    return custom.get("panoptic_demo") == _bag_key()


def _bag_key() -> str:
    return f"synthstreet seed={SEED} frames={FRAMES} size={HEIGHT}x{WIDTH} rate={RATE_HZ:g}"


def write_demo_bag(path: Path) -> float:
    """Write (or reuse) the demo bag; returns the seconds spent."""
    from panoptic_ros.synthstreet.bag import write_bag
    from panoptic_ros.synthstreet.scene import generate_scene

    start = time.perf_counter()
    if _bag_is_current(path):
        print(f"reusing {path} ({_bag_key()})")
        return 0.0
    shutil.rmtree(path, ignore_errors=True)
    scenes = (generate_scene(SEED, i, height=HEIGHT, width=WIDTH) for i in range(FRAMES))
    write_bag(path, scenes, rate_hz=RATE_HZ)
    _mark_bag(path)
    seconds = time.perf_counter() - start
    print(f"wrote {path}: {FRAMES} SynthStreet frames {HEIGHT}x{WIDTH} at {RATE_HZ:g} Hz with ground truth "
          f"({seconds:.0f} s)")
    return seconds


def _mark_bag(path: Path) -> None:
    """Record the demo settings in the bag's metadata (rosbag2 ``custom_data``)."""
    meta = path / "metadata.yaml"
    data = yaml.safe_load(meta.read_text())
    data["rosbag2_bagfile_information"]["custom_data"] = {"panoptic_demo": _bag_key()}
    meta.write_text(yaml.safe_dump(data, sort_keys=False))


def main() -> int:
    from panoptic_ros.replay.cli import user_errors

    try:
        return _demo()
    except user_errors() as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130


def _demo() -> int:
    if missing_weights():
        names = ", ".join(str(p) for p in missing_weights())
        print(f"demo: the shipped demo weights are missing ({names}).\n"
              f"They are part of the repository (weights/); restore them with `git checkout -- weights` or "
              f"train them with the recipes in training/configs/ (see the README).", file=sys.stderr)
        return 1
    from panoptic_ros.ros.environment import private_dds_environment

    private_dds_environment()
    from panoptic_ros.replay.cli import summary_lines
    from panoptic_ros.replay.run import ReplayOptions, replay

    start = time.perf_counter()
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    bag = DEMO_DIR / BAG_NAME
    write_demo_bag(bag)
    summaries = []
    for kind in MODELS:
        print(f"\n== {kind}: live replay through panoptic_node at the recorded {RATE_HZ:g} Hz")
        report = replay(ReplayOptions(bag=bag, mode="live", model=kind, out=DEMO_DIR / kind, force=True))
        summaries.append(summary_lines(report))
        print("\n".join(summaries[-1]))
    print(f"\n== demo summary ({time.perf_counter() - start:.0f} s, ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']})")
    for lines in summaries:
        print("\n".join(line for line in lines if "report:" not in line))
    print(f"reports: {', '.join(str(DEMO_DIR / k / 'report.html') for k in MODELS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
