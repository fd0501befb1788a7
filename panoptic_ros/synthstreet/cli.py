"""``panoptic-synth``: write SynthStreet scenes as a Cityscapes-layout data set, a COCO
panoptic data set, or a ROS 2 bag.

Examples::

    panoptic-synth --out data/synth --format cityscapes --count 500 --seed 0 --split train
    panoptic-synth --out data/synth_coco --format coco --count 100 --seed 1 --split val
    panoptic-synth --out bags/synth --format bag --count 300 --rate 10 --compressed
    panoptic-synth --out bags/rig --format bag --count 100 --cameras 3

With ``--cameras N`` a bag holds N cameras (front, left, right, ...), each with its own
scene stream (camera c of N draws scenes ``start_index + N * k + c``), camera info and
ground truth, under ``/<camera>/``.

Default image size: 1024x2048 (Cityscapes' own) for ``cityscapes``, 512x1024 for ``coco``
and ``bag``. Scene i of a run is ``generate_scene(seed, start_index + i)``, so the same
arguments give byte-identical files whatever ``--workers`` is.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
from functools import partial
from pathlib import Path

from panoptic_ros.cli_common import non_negative_int, parse_size, positive_float, positive_int
from panoptic_ros.synthstreet.bag import (CAMERA_NAMES, STORAGES, BagWriteError, camera_names, write_bag,
                                         write_multicamera_bag)
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.synthstreet.writers import (
    WriterError, check_name, cityscapes_stem, coco_paths, write_cityscapes_sample, write_coco, write_png)

DEFAULT_SIZES = {"cityscapes": (1024, 2048), "coco": (512, 1024), "bag": (512, 1024)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="panoptic-synth", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (for bag: the new bag folder)")
    p.add_argument("--format", required=True, choices=sorted(DEFAULT_SIZES), help="what to write")
    p.add_argument("--count", required=True, type=positive_int, help="number of scenes")
    p.add_argument("--seed", type=non_negative_int, default=0, help="scene stream seed (default 0)")
    p.add_argument("--start-index", type=non_negative_int, default=0, help="first scene index (default 0)")
    p.add_argument("--size", type=parse_size, default=None,
                   help="HEIGHTxWIDTH (default 1024x2048 for cityscapes, 512x1024 for coco and bag)")
    p.add_argument("--split", default="train", help="split name for cityscapes/coco (default train)")
    p.add_argument("--city", default="synth", help="city folder/name prefix for cityscapes (default synth)")
    p.add_argument("--mirror", action="store_true", help="mirror each scene's left half onto its right half")
    p.add_argument("--compressed", action="store_true", help="bag: JPEG CompressedImage instead of raw rgb8")
    p.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="bag storage (default mcap)")
    p.add_argument("--rate", type=positive_float, default=10.0, help="bag frame rate in Hz (default 10)")
    p.add_argument("--cameras", type=positive_int, default=1,
                   help=f"bag: cameras, each with its own scene stream and ground truth under /<camera>/ "
                        f"({', '.join(CAMERA_NAMES)}; at most {len(CAMERA_NAMES)}); default 1: /camera/")
    p.add_argument("--workers", type=positive_int, default=1, help="processes drawing scenes (default 1)")
    return p


def _scene(index: int, *, seed, size, mirror):
    return generate_scene(seed, index, height=size[0], width=size[1], mirror=mirror)


def _cityscapes_job(index: int, *, seed, size, mirror, root, split, city) -> str:
    stem = cityscapes_stem(city, seed, index)
    write_cityscapes_sample(root, split, city, stem, _scene(index, seed=seed, size=size, mirror=mirror))
    return stem


def _coco_job(index: int, *, seed, size, mirror, image_dir):
    sample = _scene(index, seed=seed, size=size, mirror=mirror)
    write_png(Path(image_dir) / f"{sample.image_id}.png", sample.image)
    return sample


def _map(func, indices, workers: int):
    """Ordered results of ``func`` over ``indices`` in ``workers`` processes (lazily)."""
    if workers == 1:
        yield from map(func, indices)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(func, indices, chunksize=1)


def run(args: argparse.Namespace) -> str:
    """Write what ``args`` asks for; returns the summary line."""
    size = args.size or DEFAULT_SIZES[args.format]
    indices = range(args.start_index, args.start_index + args.count)
    scene = dict(seed=args.seed, size=size, mirror=args.mirror)
    what = f"{args.count} SynthStreet scenes {size[0]}x{size[1]} (seed {args.seed}, indices " \
           f"{indices.start}..{indices.stop - 1}{', mirrored' if args.mirror else ''})"
    if args.format == "cityscapes":
        check_name("--split", args.split)
        check_name("--city", args.city)
        job = partial(_cityscapes_job, **scene, root=args.out, split=args.split, city=args.city)
        stems = list(_map(job, indices, args.workers))
        return (f"wrote {what} in the Cityscapes layout: {args.out}/leftImg8bit/{args.split}/{args.city}/ and "
                f"{args.out}/gtFine/{args.split}/{args.city}/ ({stems[0]} .. {stems[-1]}); convert with "
                f"csCreatePanopticImgs --dataset-folder {args.out}/gtFine --set-names {args.split}")
    if args.format == "coco":
        json_path, png_dir, image_dir = coco_paths(args.out, args.split)
        job = partial(_coco_job, **scene, image_dir=image_dir)
        write_coco(args.out, _map(job, indices, args.workers), split=args.split, write_images=False)
        return f"wrote {what} as COCO panoptic: {json_path}, {png_dir}/, images in {image_dir}/"
    image = "image_raw/compressed" if args.compressed else "image_raw"
    if args.cameras > 1:
        return _multicamera_bag(args, scene, what, image)
    frames = write_bag(args.out, _map(partial(_scene, **scene), indices, args.workers), rate_hz=args.rate,
                       compressed=args.compressed, storage=args.storage)
    return (f"wrote {what} as a ROS 2 bag ({args.storage}) at {args.out}: {frames} frames at {args.rate:g} Hz "
            f"on /camera/{image}, /camera/camera_info, /camera/panoptic_gt")


def _multicamera_bag(args: argparse.Namespace, scene: dict, what: str, image: str) -> str:
    """Write the ``--cameras N`` bag: time step k holds scenes ``start + N k + c``."""
    names = camera_names(args.cameras)
    n = len(names)
    scenes = _map(partial(_scene, **scene), range(args.start_index, args.start_index + n * args.count),
                  args.workers)
    steps = (list(step) for step in zip(*[iter(scenes)] * n))
    frames = write_multicamera_bag(args.out, steps, cameras=names, rate_hz=args.rate,
                                   compressed=args.compressed, storage=args.storage)
    what = what.replace(f"{args.count} SynthStreet scenes", f"{n} x {args.count} SynthStreet scenes")
    what = what.replace(f"indices {args.start_index}..{args.start_index + args.count - 1}",
                        f"indices {args.start_index}..{args.start_index + n * args.count - 1}")
    return (f"wrote {what} as a ROS 2 bag ({args.storage}) at {args.out}: {frames} frames per camera at "
            f"{args.rate:g} Hz, cameras {', '.join(names)}: /<camera>/{image}, /<camera>/camera_info, "
            f"/<camera>/panoptic_gt")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.format == "bag" and args.out.exists():
        parser.exit(2, f"panoptic-synth: error: {args.out} already exists; a bag is written to a new folder\n")
    try:
        print(run(args))
    except (WriterError, BagWriteError, ValueError, OSError) as exc:
        parser.exit(2, f"panoptic-synth: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
