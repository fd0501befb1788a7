"""``panoptic-export``: a checkpoint as an ONNX model (input ``images``, outputs the
model's ``OUTPUT_NAMES``; post-processing stays outside the graph).

    panoptic-export --checkpoint weights/panonet_synthstreet --out panonet.onnx [--input-size 512x1024]

The graph is traced at one input size (default: the checkpoint's ``input_size``); after
writing it, the command runs the model and ONNX Runtime on one random image and prints
the largest difference per output (``--no-check`` skips this). Export runs on the CPU
(the graph does not depend on the device it was traced on), so there is no ``--device``.

Exit codes: 0 written; 2 bad input (checkpoint, opset, input size, unwritable ``--out``),
reported in one line naming it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from panoptic_ros.checkpoint import CheckpointError, load_checkpoint
from panoptic_ros.cli_common import parse_size
from panoptic_ros.eval.cli import EXIT_BAD_INPUT
from panoptic_ros.inference.export import MIN_OPSET, export_onnx, onnx_parity


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="panoptic-export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint (x, x.safetensors or x.json)")
    p.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--input-size", type=parse_size, help="HxW to trace at (default: the checkpoint's input_size)")
    p.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime parity check")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        loaded = load_checkpoint(args.checkpoint)
        size = args.input_size or tuple(loaded.model_config.input_size)
        path = export_onnx(loaded.model, args.out, input_size=size, opset=args.opset)
    except (CheckpointError, ValueError) as exc:  # ValueError: opset or input size (named)
        return _bad_input(str(exc))
    except OSError as exc:  # e.g. --out in a folder that cannot be created
        return _bad_input(f"cannot write {args.out}: {exc.filename or args.out}: {exc.strerror or exc}")
    print(f"{loaded.model_config.kind} -> {path} (input 1x3x{size[0]}x{size[1]}, opset {args.opset})")
    if not args.no_check:
        images = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)) * 255
        for name, diff in onnx_parity(loaded.model, path, images).items():
            print(f"  {name}: max |torch - onnxruntime| = {diff:.3g}")
    return 0


def _bad_input(message: str) -> int:
    print(f"panoptic-export: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
