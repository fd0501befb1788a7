"""Two-stage PanoNet initialisation: semantic -> instance copy, and coordinate widening."""
import pytest
import torch
from torch import nn

from panoptic_ros.checkpoint import CheckpointError, save_checkpoint
from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
from panoptic_ros.training.panonet_stages import (PREDICTION_LAYERS, add_coordinate_channels, apply_init,
                                                   init_instance_from_semantic)

TINY = dict(width=0.125, blocks=(1, 1, 1, 1))


def randomised(config: PanoNetConfig, seed: int) -> PanoNet:
    """A model whose weights and BN statistics all differ from a fresh one."""
    torch.manual_seed(seed)
    model = PanoNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.dim() == 1 else 0.0))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.8, 1.2)
    return model.eval()


@pytest.mark.parametrize("share", [False, True])
def test_stage2_starts_exactly_where_stage1_ended(share):
    stage1 = randomised(PanoNetConfig(**TINY, use_coords=False, share_weights=share), seed=0)
    stage2 = PanoNet(PanoNetConfig(**TINY, use_coords=True, share_weights=share)).eval()
    widened = add_coordinate_channels(stage1.state_dict(), stage2)
    trunk = "trunk" if share else "instance.trunk"
    assert sorted(widened) == sorted([f"{trunk}.sub1.0.0.weight", f"{trunk}.stem.0.0.weight"])
    images = torch.rand(2, 3, 61, 83, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        before, after = stage1(images), stage2(images)
    for name in PanoNet.OUTPUT_NAMES:
        torch.testing.assert_close(after[name], before[name], atol=1e-6, rtol=0)
    assert stage2.config.use_coords


def test_add_coordinate_channels_rejects_mismatches():
    stage1 = PanoNet(PanoNetConfig(**TINY, use_coords=False)).state_dict()
    with pytest.raises(ValueError, match="use_coords=False"):
        add_coordinate_channels(stage1, PanoNet(PanoNetConfig(**TINY, use_coords=False)))
    with pytest.raises(ValueError, match="do not match"):
        add_coordinate_channels(stage1, PanoNet(PanoNetConfig(**TINY, use_coords=True, share_weights=True)))
    with pytest.raises(ValueError, match="does not fit"):
        add_coordinate_channels(stage1, PanoNet(PanoNetConfig(width=0.25, blocks=(1, 1, 1, 1))))


@pytest.mark.parametrize("share,coords", [(False, False), (True, False), (False, True)])
def test_init_instance_from_semantic(share, coords):
    source = randomised(PanoNetConfig(**TINY), seed=2).state_dict()
    model = PanoNet(PanoNetConfig(**TINY, use_coords=coords, share_weights=share))
    reinit = init_instance_from_semantic(model, source)
    state = model.state_dict()
    head = "instance_head." if share else "instance.head."
    assert sorted(reinit) == sorted(k for k in state if k.startswith(head) and k[len(head) - 5:].startswith(PREDICTION_LAYERS))
    assert len(reinit) == 6  # weight and bias of three classifiers
    for key, value in state.items():
        if key in reinit:
            continue
        inner = key.split(".", 1)[1]
        if share:
            src = source["semantic." + ("trunk." + inner if key.startswith("trunk.") else "head." + inner)]
        else:
            src = source["semantic." + inner]
        if value.shape != src.shape:  # the input convs with coordinate filters
            assert coords and value.shape[1] == src.shape[1] + 2
            assert torch.equal(value[:, :3], src) and value[:, 3:].eq(0).all()
        else:
            assert torch.equal(value, src), key
    # Re-initialised classifiers start small (std 0.01), not copied.
    classifier = state[head + "classifier.weight"]
    assert classifier.shape[0] == 12 and classifier.abs().max() < 0.1


def test_apply_init_reads_checkpoints(tmp_path):
    semantic = randomised(PanoNetConfig(**TINY), seed=3)
    save_checkpoint(tmp_path / "semantic", semantic, semantic.config)
    stage1 = PanoNet(PanoNetConfig(**TINY, use_coords=False))
    assert len(apply_init(stage1, mode="semantic_to_instance", checkpoint=str(tmp_path / "semantic"))) == 6
    torch.testing.assert_close(stage1.instance.trunk.stem[0][0].weight, semantic.semantic.trunk.stem[0][0].weight)
    save_checkpoint(tmp_path / "stage1", stage1, stage1.config)
    stage2 = PanoNet(PanoNetConfig(**TINY))
    assert len(apply_init(stage2, mode="add_coords", checkpoint=str(tmp_path / "stage1.json"))) == 2
    with pytest.raises(CheckpointError, match="missing"):
        apply_init(stage2, mode="add_coords", checkpoint=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="init.mode"):
        apply_init(stage2, mode="nonsense", checkpoint=str(tmp_path / "stage1"))
    with pytest.raises(ValueError, match="PanoNet"):
        apply_init(nn.Linear(2, 2), mode="add_coords", checkpoint=str(tmp_path / "stage1"))
