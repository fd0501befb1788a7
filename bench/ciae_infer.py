"""CIAE inference latency per stage.

Times, for one image (batch 1): backbone + FPN, the FCOS head, the embedding branch, the
whole network, and the post-processing stages: proposal selection (score threshold, top-k,
class-wise NMS), embedding upsampling + L2 norm, the similarity matmul (with box
filtering), the per-pixel argmax, and building the PanopticResult; then the whole
``postprocess_ciae`` (and, for comparison, with ``resolution="quarter"``). Prints median
milliseconds and each stage's share of the end-to-end time.

With random weights every location scores about sqrt(0.01 * 0.5) = 0.07, so the default
``--score-threshold 0.05`` sends the full ``pre_nms_top_k`` (1000) candidates through NMS and
keeps ``max_instances`` (100): the post-processing's worst case. ``--checkpoint`` times a
trained model instead.

Usage:
    .venv/bin/python bench/ciae_infer.py                        # COCO R50 at 800 x 1333
    .venv/bin/python bench/ciae_infer.py --preset tiny --size 512 1024 --threads 2
    .venv/bin/python bench/ciae_infer.py --config training/configs/ciae_synthstreet.yaml --threads 2
    .venv/bin/python bench/ciae_infer.py --device cuda
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F

from panoptic_ros.checkpoint import load_checkpoint
from panoptic_ros.config import ConfigError, read_yaml
from panoptic_ros.kinds import build_model, model_config_from_dict
from panoptic_ros.labels import get_label_space
from panoptic_ros.postprocess.ciae import (CIAEPostprocessConfig, panoptic_from_assignment, pixel_embeddings,
                                           postprocess_ciae, select_proposals, similarity)

PRESETS = {
    "coco-r50": {"kind": "ciae", "label_space": "coco", "input_size": [800, 1333], "depth": 50},
    "cityscapes-r50": {"kind": "ciae", "label_space": "cityscapes", "input_size": [1024, 2048], "depth": 50},
    "tiny": {"kind": "ciae", "label_space": "cityscapes", "input_size": [512, 1024], "depth": 18,
             "base_channels": 16, "fpn_channels": 64, "seg_channels": 64, "box_embed_channels": 16},
}


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, object]:
    """Median milliseconds of ``fn`` over ``repeats`` runs after one warm-up, and its result."""
    result = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def network_stages(model, images: torch.Tensor, repeats: int, device: torch.device) -> dict[str, float]:
    x = (images - model.pixel_mean) / model.pixel_std
    out = {}
    out["backbone+FPN"], feats = timed(lambda: model.backbone(x), repeats, device)
    out["FCOS head"], (_, box_embeds) = timed(lambda: model.head(feats[1:]), repeats, device)
    out["embedding branch"], _ = timed(lambda: model.embedding(feats[:4], box_embeds), repeats, device)
    return out


def postprocess_stages(outputs: dict, config: CIAEPostprocessConfig, label_space, repeats: int,
                       device: torch.device) -> tuple[dict[str, float], int, int]:
    height, width = (int(v) for v in outputs["image_size"][0])
    out = {}
    out["proposals: threshold+top-k+NMS"], proposals = timed(lambda: select_proposals(outputs, config), repeats,
                                                             device)
    out["upsample 4x + L2 norm"], pixels = timed(lambda: pixel_embeddings(outputs["embeddings"], (height, width)),
                                                 repeats, device)
    loc = proposals.locations.long()
    queries = torch.cat([F.normalize(outputs["stuff_memory"][0], dim=1),
                         pixels[loc[:, 1].clamp(0, height - 1), loc[:, 0].clamp(0, width - 1)]])
    boxes = proposals.boxes.float()
    out["matmul S = P V^T (+ box filter)"], sim = timed(lambda: similarity(pixels, queries, boxes, (0, height)),
                                                       repeats, device)
    out["argmax"], (best, labels) = timed(lambda: sim.max(dim=1), repeats, device)
    out["panoptic map + segments"], _ = timed(
        lambda: panoptic_from_assignment(labels.view(height, width), best.view(height, width), proposals,
                                         label_space=label_space, config=config), repeats, device)
    return out, len(proposals.scores), queries.shape[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="coco-r50")
    parser.add_argument("--checkpoint", help="time this trained model instead of a preset")
    parser.add_argument("--config", help="time the model section of this training YAML (random weights)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="input size (default: the config's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--score-threshold", type=float, default=0.05)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, device).model
        config = model.config
    else:
        try:
            data = read_yaml(args.config).get("model", {}) if args.config else PRESETS[args.preset]
            config = model_config_from_dict(data)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        model = build_model(config).to(device).eval()
    height, width = args.size or config.input_size
    label_space = get_label_space(config.label_space)
    post_config = CIAEPostprocessConfig(score_threshold=args.score_threshold, max_similarity_elements=1 << 31)
    params = sum(p.numel() for p in model.parameters())
    print(f"CIAE {args.checkpoint or args.config or args.preset}: ResNet-{config.depth}, {params / 1e6:.2f} M parameters, "
          f"input {height} x {width}, device {device}, {torch.get_num_threads()} CPU threads")
    images = torch.rand(1, 3, height, width, device=device) * 255
    with torch.inference_mode():
        stages = network_stages(model, images, args.repeats, device)
        stages["network total (forward)"], outputs = timed(lambda: model(images), args.repeats, device)
        post, kept, num_queries = postprocess_stages(outputs, post_config, label_space, args.repeats, device)
        post["post-processing total"], result = timed(
            lambda: postprocess_ciae(outputs, config=post_config, label_space=label_space), args.repeats, device)
        quarter = replace(post_config, resolution="quarter")
        quarter_ms, _ = timed(lambda: postprocess_ciae(outputs, config=quarter, label_space=label_space),
                              args.repeats, device)
    print(f"{kept} proposals after NMS, {num_queries} queries, {len(result.segments)} segments")
    total = stages["network total (forward)"] + post["post-processing total"]
    for name, ms in {**stages, **post}.items():
        print(f"  {name:34s} {ms:9.1f} ms  {100 * ms / total:5.1f} %")
    print(f"  {'end to end':34s} {total:9.1f} ms  ({1000 / total:.2f} images/s)")
    print(f"  {'post-processing, resolution=quarter':34s} {quarter_ms:9.1f} ms  "
          f"({post['post-processing total'] / quarter_ms:.1f}x faster than input resolution)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
