"""The CIAE network: configs, output contract, location order, memory buffer."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from panoptic_ros.config import ConfigError
from panoptic_ros.kinds import build_model, model_config_from_dict
from panoptic_ros.models.ciae import CIAE, HEAD_STRIDES
from panoptic_ros.training.targets import fcos_locations

TINY = {"kind": "ciae", "label_space": "cityscapes", "input_size": [64, 96], "depth": 18, "base_channels": 8,
        "fpn_channels": 16, "seg_channels": 16, "box_embed_channels": 8, "embed_dim": 8}


def _tiny(**overrides) -> CIAE:
    torch.manual_seed(0)
    return build_model(model_config_from_dict({**TINY, **overrides}))


def test_eval_outputs_follow_the_contract():
    model = _tiny().eval()
    h, w = 70, 100  # not multiples of 32
    with torch.no_grad():
        out = model(torch.rand(2, 3, h, w) * 255)
    assert tuple(out) == CIAE.OUTPUT_NAMES
    n = sum(math.ceil(h / s) * math.ceil(w / s) for s in HEAD_STRIDES)
    assert out["cls_scores"].shape == (2, n, 8)  # Cityscapes: 8 thing classes
    assert out["centerness"].shape == (2, n)
    assert out["boxes"].shape == (2, n, 4)
    assert out["embeddings"].shape == (2, 8, math.ceil(h / 4), math.ceil(w / 4))
    assert out["stuff_memory"].shape == (2, 11, 8)
    assert out["image_size"].tolist() == [[h, w], [h, w]]
    assert ((out["cls_scores"] >= 0) & (out["cls_scores"] <= 1)).all()
    torch.testing.assert_close(out["stuff_memory"][0], F.normalize(model.category_memory[:11], dim=1))


def test_locations_match_the_training_targets_order():
    model = _tiny().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 70, 100) * 255)
    points, _ = fcos_locations(70, 100)
    np.testing.assert_array_equal(out["locations"][0].numpy(), points)


def test_train_outputs_and_box_decoding_agree_with_eval():
    model = _tiny()
    images = torch.rand(1, 3, 64, 96) * 255
    train = model.train()(images)
    assert set(train) == {"cls_logits", "centerness_logits", "box_reg", "locations", "embeddings", "category_memory"}
    assert train["category_memory"].data_ptr() == model.category_memory.data_ptr()  # the buffer itself
    assert (train["box_reg"] > 0).all()
    with torch.no_grad():
        ev = model.eval()(images)
    loc = train["locations"]
    ltrb = train["box_reg"][0].detach()
    expected = torch.cat([loc - ltrb[:, :2], loc + ltrb[:, 2:]], dim=1)
    torch.testing.assert_close(ev["boxes"][0], expected)
    torch.testing.assert_close(ev["cls_scores"], torch.sigmoid(train["cls_logits"].detach()))


def test_initialisation_follows_fcos():
    model = _tiny().eval()
    prior = -math.log(0.99 / 0.01)
    assert torch.allclose(model.head.cls_logits.bias, torch.full((8,), prior))
    assert model.head.scales.shape == (5,) and model.head.scales.requires_grad
    with torch.no_grad():
        scores = model(torch.rand(1, 3, 64, 96) * 255)["cls_scores"]
    assert 0.005 < scores.mean().item() < 0.02  # everything starts as background (p ~ 0.01)
    memory = model.category_memory
    torch.testing.assert_close(memory.norm(dim=1), torch.ones(12))
    assert "category_memory" in model.state_dict() and "pixel_mean" not in model.state_dict()


def test_coordconv_and_box_fusion_options():
    model = _tiny()
    assert model.embedding.paths[3][0].conv.in_channels == 16 + 2  # P5 path sees x, y
    assert model.embedding.paths[2][0].conv.in_channels == 16
    assert [len(p) for p in model.embedding.paths] == [1, 1, 2, 3]
    plain = _tiny(coord_conv=False, fuse_box_embeddings=False)
    assert plain.embedding.paths[3][0].conv.in_channels == 16 and plain.embedding.box_fusion is None


def test_embeddings_depend_on_box_embeddings():
    model = _tiny().eval()
    images = torch.rand(1, 3, 64, 96) * 255
    with torch.no_grad():
        before = model(images)["embeddings"].clone()
        model.head.box_embed.weight.add_(0.5)
        after = model(images)["embeddings"]
    assert not torch.allclose(before, after)


PRESETS = """
coco: {kind: ciae, label_space: coco, input_size: [800, 1333], depth: 50}
cityscapes: {kind: ciae, label_space: cityscapes, input_size: [1024, 2048], depth: 50}
tiny: {kind: ciae, label_space: cityscapes, input_size: [512, 1024], depth: 18, base_channels: 16,
       fpn_channels: 64, seg_channels: 64, box_embed_channels: 16}
"""


def test_yaml_presets_build():
    presets = yaml.safe_load(PRESETS)
    coco = build_model(model_config_from_dict(presets["coco"]))
    assert coco.num_things == 80 and coco.num_stuff == 53
    assert coco.head.cls_logits.out_channels == 80
    params = sum(p.numel() for p in coco.parameters())
    assert 30e6 < params < 40e6  # FCOS R50 (~32M) + embedding branch
    city = model_config_from_dict(presets["cityscapes"])
    assert build_model(city).category_memory.shape == (12, 32)
    tiny = build_model(model_config_from_dict(presets["tiny"]))
    assert sum(p.numel() for p in tiny.parameters()) < 3e6


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.depth"):
        model_config_from_dict({**TINY, "depth": 20})
    with pytest.raises(ConfigError, match="model.embedding_dim: unknown key"):
        model_config_from_dict({**TINY, "embedding_dim": 8})
    with pytest.raises(ConfigError, match="embed_dim"):
        model_config_from_dict({**TINY, "embed_dim": 0})
    with pytest.raises(ConfigError, match="input_size"):
        model_config_from_dict({**TINY, "input_size": [16, 16]})


def test_bad_image_shape_raises():
    with pytest.raises(ValueError, match="images"):
        _tiny()(torch.zeros(1, 4, 64, 64))


def test_r50_forward_at_coco_scale_on_cpu():
    model = build_model(model_config_from_dict({"kind": "ciae", "label_space": "coco", "depth": 50})).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 800, 1333) * 255)
    n = sum(math.ceil(800 / s) * math.ceil(1333 / s) for s in HEAD_STRIDES)
    assert out["cls_scores"].shape == (1, n, 80)
    assert out["embeddings"].shape == (1, 32, 200, 334)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_checkpoint_round_trip_keeps_the_memory(tmp_path):
    from panoptic_ros.checkpoint import load_checkpoint, save_checkpoint

    model = _tiny().eval()
    with torch.no_grad():
        model.category_memory.copy_(F.normalize(torch.randn(12, 8), dim=1))
    save_checkpoint(tmp_path / "ciae", model, model.config, postprocess={"score_threshold": 0.4})
    loaded = load_checkpoint(tmp_path / "ciae")
    assert torch.equal(loaded.model.category_memory, model.category_memory)
    images = torch.rand(1, 3, 64, 96) * 255
    with torch.no_grad():
        a, b = model(images), loaded.model(images)
    for name in CIAE.OUTPUT_NAMES:
        torch.testing.assert_close(a[name], b[name])
    assert loaded.postprocess == {"score_threshold": 0.4}
