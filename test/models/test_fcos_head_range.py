"""FCOS box distances stay within float16 range (TensorRT fp16 engines)."""
import math

import torch

from panoptic_ros.models.fcos_head import FP16_SAFE_DISTANCE, FCOSHead, max_log_distance


def test_saturated_regression_stays_finite_in_float16():
    torch.manual_seed(0)
    head = FCOSHead(channels=8, num_classes=3, box_embed_channels=4, num_convs=1).eval()
    with torch.no_grad():
        head.bbox_pred.bias.fill_(50.0)            # a diverged network: exponents far too large
        feats = [torch.rand(1, 8, 64 // s, 64 // s) for s in (8, 16, 32, 64, 128)]
        outputs, _ = head([f if min(f.shape[2:]) else torch.rand(1, 8, 1, 1) for f in feats])
    reg = outputs["box_reg"]
    assert torch.isfinite(reg.half()).all()
    assert reg.max() <= FP16_SAFE_DISTANCE * (1 + 1e-6)
    # the largest stride saturates at the fp16-safe distance; below 6 px stride, exp(10) rules
    assert math.isclose(math.exp(max_log_distance(128)) * 128, FP16_SAFE_DISTANCE, rel_tol=1e-9)
    assert max_log_distance(1) == 10.0

