"""PanoNet: parameter budget, outputs in train and eval mode, coordinates, config."""
import pytest
import torch

from panoptic_ros.checkpoint import load_checkpoint, save_checkpoint
from panoptic_ros.config import ConfigError, from_dict
from panoptic_ros.kinds import build_model, model_config_from_dict
from panoptic_ros.models.icnet import guidance_size, resize
from panoptic_ros.models.panonet import TRAIN_OUTPUT_NAMES, PanoNet, PanoNetConfig

TINY = dict(width=0.125, blocks=(1, 1, 1, 1))


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_default_config_is_within_20_percent_of_the_papers_12m_parameters():
    count = n_params(PanoNet(PanoNetConfig()))
    assert 0.8 * 12e6 <= count <= 1.2 * 12e6


def test_small_and_shared_variants_are_smaller():
    full = n_params(PanoNet(PanoNetConfig()))
    shared = PanoNet(PanoNetConfig(share_weights=True))
    assert n_params(shared) < 0.6 * full
    assert {k.split(".")[0] for k in shared.state_dict()} == {"trunk", "semantic_head", "instance_head"}
    assert n_params(PanoNet(PanoNetConfig(width=0.25))) < 1e6


@pytest.mark.parametrize("size", [(509, 1021), (64, 96)])
def test_train_mode_returns_three_guidance_scales_of_both_branches(size):
    model = PanoNet(PanoNetConfig(**TINY)).train()
    out = model(torch.rand(1, 3, *size) * 255)
    assert tuple(out) == TRAIN_OUTPUT_NAMES
    for s in (4, 8, 16):
        assert out[f"semantic_logits_{s}"].shape == (1, 19, *guidance_size(*size, s))
        assert out[f"embedding_{s}"].shape == (1, 12, *guidance_size(*size, s))


@pytest.mark.parametrize("size,label_space,classes", [((1024, 2048), "cityscapes", 19), ((67, 99), "coco", 133)])
def test_eval_outputs(size, label_space, classes):
    torch.manual_seed(0)
    model = PanoNet(PanoNetConfig(**TINY, embedding_dim=8, label_space=label_space)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, *size) * 255)
    assert tuple(out) == PanoNet.OUTPUT_NAMES
    assert out["semantic"].shape == (1, *size) and out["semantic"].dtype == torch.uint8
    assert out["semantic_logits"].shape == (1, classes, *guidance_size(*size, 4))
    assert out["embedding"].shape == (1, 8, *guidance_size(*size, 4))
    upsampled = resize(out["semantic_logits"], size)
    top2 = upsampled.topk(2, dim=1).values
    clear = top2[:, 0] - top2[:, 1] > 1e-5       # rounding may flip exact near-ties only
    assert clear.float().mean() > 0.9
    assert torch.equal(out["semantic"].long()[clear], upsampled.argmax(1)[clear])


def test_instance_branch_uses_the_coordinates():
    torch.manual_seed(0)
    model = PanoNet(PanoNetConfig(**TINY)).eval()
    assert model.instance.trunk.stem[0][0].in_channels == 5
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        before = model(images)["embedding"]
        for conv in (model.instance.trunk.stem[0][0], model.instance.trunk.sub1[0][0]):
            conv.weight[:, 3:] = 0
        after = model(images)["embedding"]
    assert (before - after).abs().max() > 1e-4
    assert PanoNet(PanoNetConfig(**TINY, use_coords=False)).instance.trunk.stem[0][0].in_channels == 3


def test_normalisation_happens_inside_forward():
    torch.manual_seed(0)
    config = PanoNetConfig(**TINY, pixel_mean=(10.0, 20.0, 30.0), pixel_std=(2.0, 4.0, 5.0))
    model = PanoNet(config).eval()
    images = torch.rand(1, 3, 32, 48) * 255
    normalised = (images - torch.tensor(config.pixel_mean).view(1, 3, 1, 1)) / torch.tensor(config.pixel_std).view(1, 3, 1, 1)
    with torch.no_grad():
        (expected,) = model.semantic(normalised)
        torch.testing.assert_close(model(images)["semantic_logits"], expected)


def test_config_is_strict_and_validated():
    config = model_config_from_dict({"kind": "panonet", "width": 0.5, "blocks": [1, 2, 2, 1]})
    assert isinstance(config, PanoNetConfig) and config.blocks == (1, 2, 2, 1)
    with pytest.raises(ConfigError, match="model.depth"):
        model_config_from_dict({"kind": "panonet", "depth": 3})
    with pytest.raises(ConfigError, match="width"):
        from_dict(PanoNetConfig, {"width": 0.0})
    with pytest.raises(ConfigError, match="blocks"):
        from_dict(PanoNetConfig, {"blocks": [3, 0, 6, 3]})
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        PanoNet(PanoNetConfig(**TINY))(torch.zeros(1, 4, 32, 32))


def test_checkpoint_round_trip(tmp_path):
    config = PanoNetConfig(**TINY, input_size=(64, 96))
    model = build_model(config).eval()
    save_checkpoint(tmp_path / "pn", model, config, postprocess={"bandwidths": {"car": 0.6}})
    loaded = load_checkpoint(tmp_path / "pn")
    assert loaded.model_config == config and loaded.postprocess == {"bandwidths": {"car": 0.6}}
    images = torch.rand(1, 3, 64, 96) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(images)["embedding"], model(images)["embedding"])
