"""Tiny models of every kind, the one definition the tests and the benchmarks share.

Random-weight models of a few hundred thousand parameters that build and run in well
under a second on a CPU: what a test or a benchmark needs when it measures the code
around a model (node, replay, export, data path), not the model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from panoptic_ros.checkpoint import save_checkpoint
from panoptic_ros.kinds import build_model, model_config_from_dict

TINY_MODELS: Mapping[str, Mapping[str, Any]] = {
    "panonet": {"kind": "panonet", "width": 0.125, "blocks": [1, 1, 1, 1]},
    "ciae": {"kind": "ciae", "depth": 18, "base_channels": 8, "fpn_channels": 32, "seg_channels": 16,
             "box_embed_channels": 8, "head_convs": 1, "embed_dim": 8},
}
"""kind -> model config section (architecture only: the label space and the input size
are the caller's)."""
TINY_POSTPROCESS: Mapping[str, Mapping[str, Any]] = {
    "panonet": {"min_area": 4},
    "ciae": {"score_threshold": 0.05, "max_instances": 4, "pre_nms_top_k": 50, "stuff_min_area": 16},
}
"""kind -> post-processing settings under which random weights still produce thing segments."""
TINY_INPUT_SIZE = (128, 192)


def tiny_model_section(kind: str, input_size: tuple[int, int] = TINY_INPUT_SIZE,
                       label_space: str = "cityscapes") -> dict[str, Any]:
    """The model config section of the tiny ``kind`` model at ``input_size`` (H, W)."""
    return {**TINY_MODELS[kind], "label_space": label_space, "input_size": list(input_size)}


def write_tiny_checkpoint(directory: Path, kind: str, *, input_size: tuple[int, int] = TINY_INPUT_SIZE,
                          seed: int = 0) -> Path:
    """A seeded random-weight checkpoint of the tiny ``kind`` model, with
    :data:`TINY_POSTPROCESS`; returns its stem (``<directory>/<kind>_tiny``)."""
    torch.manual_seed(seed)
    config = model_config_from_dict(tiny_model_section(kind, input_size))
    stem = Path(directory) / f"{kind}_tiny"
    save_checkpoint(stem, build_model(config).eval(), config, postprocess=dict(TINY_POSTPROCESS[kind]))
    return stem
