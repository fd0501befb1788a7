"""``panoptic-export``: a checkpoint as an ONNX model (input ``images``, outputs the
model's ``OUTPUT_NAMES``; post-processing stays outside the graph).

    panoptic-export --checkpoint weights/panonet_synthstreet --out panonet.onnx [--input-size 512x1024]
    panoptic-export --checkpoint weights/panonet_synthstreet --out panonet_int8.onnx --int8 --calibration 16

The graph is traced at one input size (default: the checkpoint's ``input_size``); after
writing it, the command runs the model and ONNX Runtime on one random image and prints
the largest difference per output (``--no-check`` skips this). ``--int8`` writes a static int8 (QDQ) graph instead, for
ONNX Runtime (``precision: int8``), its activation ranges calibrated on ``--calibration``
SynthStreet training frames (:mod:`panoptic_ros.inference.quantize`). Export runs on the CPU
(the graph does not depend on the device it was traced on), so there is no ``--device``.

Exit codes: 0 written; 2 bad input (checkpoint, opset, input size, unwritable ``--out``),
reported in one line naming it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from panoptic_ros.checkpoint import CheckpointError, load_checkpoint
from panoptic_ros.cli_common import parse_size
from panoptic_ros.eval.cli import EXIT_BAD_INPUT
from panoptic_ros.inference.export import MIN_OPSET, export_onnx, onnx_parity
from panoptic_ros.inference.quantize import (CALIBRATION_METHODS, Int8Settings, synthstreet_images,
                                             quantize_int8)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="panoptic-export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint (x, x.safetensors or x.json)")
    p.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--input-size", type=parse_size, help="HxW to trace at (default: the checkpoint's input_size)")
    p.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime parity check")
    p.add_argument("--int8", action="store_true", help="write a static int8 (QDQ) graph for ONNX Runtime")
    p.add_argument("--calibration", type=int, default=Int8Settings.calibration_frames, metavar="N",
                   help="SynthStreet training frames calibrating --int8 (default %(default)s)")
    p.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default=Int8Settings.method,
                   help="activation range estimate of --int8 (default %(default)s)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        loaded = load_checkpoint(args.checkpoint)
        size = args.input_size or tuple(loaded.model_config.input_size)
        settings = Int8Settings(calibration_frames=args.calibration, method=args.calibration_method)
        path = _export(loaded.model, args, size, settings if args.int8 else None)
    except (CheckpointError, ValueError) as exc:  # ValueError: opset or input size (named)
        return _bad_input(str(exc))
    except OSError as exc:  # e.g. --out in a folder that cannot be created
        return _bad_input(f"cannot write {args.out}: {exc.filename or args.out}: {exc.strerror or exc}")
    precision = f"int8, {args.calibration} calibration frames ({args.calibration_method})" if args.int8 else "fp32"
    print(f"{loaded.model_config.kind} -> {path} (input 1x3x{size[0]}x{size[1]}, opset {args.opset}, {precision})")
    if not args.no_check:
        images = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)) * 255
        for name, diff in onnx_parity(loaded.model, path, images).items():
            print(f"  {name}: max |torch - onnxruntime| = {diff:.3g}")
    return 0


def _export(model: torch.nn.Module, args: argparse.Namespace, size: tuple[int, int],
            int8: Int8Settings | None) -> Path:
    """Write the float graph to ``args.out``, or with ``int8`` settings its quantized
    version (the float graph then goes to a temporary folder)."""
    if int8 is None:
        return export_onnx(model, args.out, input_size=size, opset=args.opset)
    with tempfile.TemporaryDirectory(prefix="panoptic_export_") as tmp:
        float_path = export_onnx(model, Path(tmp) / "float.onnx", input_size=size, opset=args.opset)
        return quantize_int8(float_path, args.out, synthstreet_images(int8.calibration_frames, size), int8)


def _bad_input(message: str) -> int:
    print(f"panoptic-export: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
