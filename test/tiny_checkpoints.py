"""Tiny random-weight checkpoints of both models for tests (seeded, built in a second)."""
from __future__ import annotations

from pathlib import Path

import torch

from panoptic_ros.checkpoint import save_checkpoint
from panoptic_ros.kinds import build_model, model_config_from_dict

# kind -> (model config, post-processing settings). The thresholds make random weights
# still produce thing segments.
TINY_MODELS = {
    "ciae": ({"kind": "ciae", "label_space": "cityscapes", "input_size": [128, 192], "depth": 18,
              "base_channels": 8, "fpn_channels": 32, "seg_channels": 16, "box_embed_channels": 8,
              "head_convs": 1, "embed_dim": 8},
             {"score_threshold": 0.05, "max_instances": 4, "pre_nms_top_k": 50, "stuff_min_area": 16}),
    "panonet": ({"kind": "panonet", "label_space": "cityscapes", "input_size": [128, 192], "width": 0.125,
                 "blocks": [1, 1, 1, 1]}, {"min_area": 4}),
}


def write_tiny_checkpoint(directory: Path, kind: str, *, input_size: tuple[int, int] | None = None,
                          seed: int = 0) -> Path:
    """A random-weight checkpoint of a tiny ``kind`` model; returns its stem."""
    model_dict, postprocess = TINY_MODELS[kind]
    if input_size is not None:
        model_dict = {**model_dict, "input_size": list(input_size)}
    torch.manual_seed(seed)
    config = model_config_from_dict(model_dict)
    stem = Path(directory) / f"{kind}_tiny"
    save_checkpoint(stem, build_model(config).eval(), config, postprocess=postprocess)
    return stem
