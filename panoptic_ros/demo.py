"""``make demo``: the node on a generated street bag, live, with both shipped models.

1. Writes a SynthStreet bag into ``out/demo/synthstreet_bag``: 100 frames of 512x1024 at
   10 Hz (raw rgb8 camera, camera info, 32SC1 panoptic ground truth), seed 1000 (scenes the
   shipped weights never trained on). An existing bag with the same settings is reused.
2. Replays it live through ``panoptic_node`` (reliable input, so every frame reaches the
   node and drops come only from its latest-frame-only slot) with the shipped PanoNet weights, then CIAE:
   frames published at the recorded rate, the node's outputs recorded, scored against the
   ground truth; ``out/demo/<model>/`` gets the output bag, ``report.html``, ``report.json``,
   COCO exports and overlay PNGs.
3. Writes (or reuses) a 3-camera bag (front, left, right: 40 time steps of 256x512 each at
   10 Hz, each camera its own scenes and ground truth, seed 2000) and replays it live
   through one PanoNet node serving all three cameras with one model, batched
   (``out/demo/panonet_3cameras/``).
4. Prints a short summary per run (the backend and precision the node ran, PQ, latency
   p50/p99, throughput, dropped frames; per camera and overall for the 3-camera run).

DDS discovery stays on this host, in a domain of its own unless ``ROS_DOMAIN_ID`` is set,
so the demo neither sees nor disturbs other ROS systems.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from dataclasses import dataclass

import yaml

DEMO_DIR = Path("out/demo")
BAG_NAME = "synthstreet_bag"
FRAMES, HEIGHT, WIDTH, RATE_HZ, SEED = 100, 512, 1024, 10.0, 1000
MODELS = ("panonet", "ciae")
MULTICAMERA_MODEL = "panonet"


@dataclass(frozen=True)
class DemoBag:
    """A SynthStreet bag the demo writes (camera c of N draws scenes ``N k + c``)."""

    name: str
    frames: int
    height: int
    width: int
    seed: int
    cameras: int = 1

    def key(self) -> str:
        cameras = f" cameras={self.cameras}" if self.cameras > 1 else ""
        return f"synthstreet seed={self.seed} frames={self.frames} size={self.height}x{self.width} " \
               f"rate={RATE_HZ:g}{cameras}"


SINGLE_CAMERA_BAG = DemoBag(BAG_NAME, FRAMES, HEIGHT, WIDTH, SEED)
MULTICAMERA_BAG = DemoBag("synthstreet_3cameras_bag", 40, 256, 512, 2000, cameras=3)


def missing_weights() -> list[Path]:
    """The shipped checkpoint files that are not there."""
    from panoptic_ros.checkpoint import checkpoint_paths
    from panoptic_ros.resources import default_weights

    return [p for kind in MODELS for p in checkpoint_paths(default_weights(kind)) if not p.is_file()]


def _bag_is_current(path: Path, spec: DemoBag) -> bool:
    """A bag written earlier by the demo with today's settings (frames, size, rate, cameras)."""
    meta = path / "metadata.yaml"
    if not meta.is_file():
        return False
    try:
        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        custom = info.get("custom_data") or {}
    except (yaml.YAMLError, KeyError, TypeError):
        return False
    return custom.get("panoptic_demo") == spec.key()


def write_demo_bag(path: Path, spec: DemoBag = SINGLE_CAMERA_BAG) -> float:
    """Write (or reuse) a demo bag; returns the seconds spent."""
    from panoptic_ros.synthstreet.bag import camera_names, write_bag, write_multicamera_bag
    from panoptic_ros.synthstreet.scene import generate_scene

    start = time.perf_counter()
    if _bag_is_current(path, spec):
        print(f"reusing {path} ({spec.key()})")
        return 0.0
    shutil.rmtree(path, ignore_errors=True)
    n = spec.cameras
    scenes = (generate_scene(spec.seed, i, height=spec.height, width=spec.width) for i in range(n * spec.frames))
    if n == 1:
        write_bag(path, scenes, rate_hz=RATE_HZ)
    else:
        write_multicamera_bag(path, (list(step) for step in zip(*[scenes] * n)), cameras=camera_names(n),
                              rate_hz=RATE_HZ)
    _mark_bag(path, spec)
    seconds = time.perf_counter() - start
    cameras = f" x {n} cameras" if n > 1 else ""
    print(f"wrote {path}: {spec.frames} SynthStreet frames{cameras} {spec.height}x{spec.width} at {RATE_HZ:g} Hz "
          f"with ground truth ({seconds:.0f} s)")
    return seconds


def _mark_bag(path: Path, spec: DemoBag) -> None:
    """Record the demo settings in the bag's metadata (rosbag2 ``custom_data``)."""
    meta = path / "metadata.yaml"
    data = yaml.safe_load(meta.read_text())
    data["rosbag2_bagfile_information"]["custom_data"] = {"panoptic_demo": spec.key()}
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
    from panoptic_ros.replay.multicamera import camera_summary_lines
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
    multi_start = time.perf_counter()
    multi = DEMO_DIR / MULTICAMERA_BAG.name
    write_demo_bag(multi, MULTICAMERA_BAG)
    print(f"\n== {MULTICAMERA_MODEL}, {MULTICAMERA_BAG.cameras} cameras: live replay through one panoptic_node "
          f"(cameras front, left, right; one model, batched) at the recorded {RATE_HZ:g} Hz")
    out = DEMO_DIR / f"{MULTICAMERA_MODEL}_{MULTICAMERA_BAG.cameras}cameras"
    report = replay(ReplayOptions(bag=multi, mode="live", model=MULTICAMERA_MODEL, out=out, force=True))
    summaries.append(camera_summary_lines(report))
    summaries[-1][0] += f" ({time.perf_counter() - multi_start:.0f} s with its bag)"
    print("\n".join(summaries[-1]))
    print(f"\n== demo summary ({time.perf_counter() - start:.0f} s, ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']})")
    for lines in summaries:
        print("\n".join(line for line in lines if "report:" not in line))
    print(f"reports: {', '.join(str(DEMO_DIR / k / 'report.html') for k in MODELS)}, {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
