"""init.backbone: torchvision / timm ImageNet ResNet files load into CIAE's backbone and
PanoNet's ICNet trunks tensor for tensor; wrong shapes and pickled code are refused."""
import re

import pytest
import torch
from safetensors.torch import save_file

from panoptic_ros.checkpoint import CheckpointError, save_checkpoint
from panoptic_ros.models.ciae import CIAE, CIAEConfig
from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
from panoptic_ros.training.backbone_init import load_backbone
from panoptic_ros.training.config import BackboneInit

from resnet_files import PARAMETERS, parameter_count, resnet_state_dict
from test_checkpoint_safety import one_thread, write_evil_files  # noqa: F401 (autouse fixture)

_BOTTLENECK = {"conv1": "reduce.0", "bn1": "reduce.1", "conv2": "conv.0", "bn2": "conv.1",
               "conv3": "expand.0", "bn3": "expand.1", "downsample.0": "shortcut.0", "downsample.1": "shortcut.1"}


def ciae_name(key: str) -> str:
    """torchvision ResNet key -> CIAE state key (written from resnet_fpn.py's layout)."""
    key = re.sub(r"^conv1\.", "stem.0.", key)
    key = re.sub(r"^bn1\.", "stem.1.", key)
    key = re.sub(r"^layer(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}.", key)
    key = re.sub(r"\.bn(\d)\.", r".norm\1.", key).replace(".downsample.", ".shortcut.")
    return "backbone.body." + key


def icnet_name(key: str, prefix: str) -> str:
    """torchvision ResNet-50 key -> ICNet trunk key (written from icnet.py's layout)."""
    if key.startswith(("conv1.", "bn1.")):
        return prefix + ("stem.0.0." if key.startswith("conv1.") else "stem.0.1.") + key.split(".", 1)[1]
    m = re.match(r"layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.\d)\.(\w+)$", key)
    layer, block, module, leaf = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    stage = {1: f"conv2.{block}", 3: f"conv4.{block}", 4: f"conv5.{block}"}.get(layer)
    if layer == 2:
        stage = "conv3_1.0" if block == 0 else f"conv3_rest.{block - 1}"
    return f"{prefix}{stage}.{_BOTTLENECK[module]}.{leaf}"


def backbone_keys(file_state, *, counters: bool):
    """The file's tensors a dense model takes: all but the classifier (and, for frozen
    BatchNorm, the step counters)."""
    return [k for k in file_state if not k.startswith("fc.") and (counters or not k.endswith("num_batches_tracked"))]


@pytest.fixture(scope="module")
def r50():
    return resnet_state_dict(50, seed=1)


def test_file_builder_has_torchvisions_parameter_counts():
    for depth, count in PARAMETERS.items():
        assert parameter_count(resnet_state_dict(depth)) == count
    assert len(resnet_state_dict(50)) == 320  # torchvision resnet50().state_dict() has 320 entries


@pytest.mark.parametrize("norm, fmt", [("frozen_bn", "torchvision"), ("bn", "timm")])
def test_ciae_takes_every_resnet50_tensor(tmp_path, r50, norm, fmt):
    if fmt == "torchvision":
        path = tmp_path / "resnet50-0676ba61.pth"
        torch.save(r50, path)
    else:
        path = tmp_path / "model.safetensors"
        save_file(r50, str(path))
    torch.manual_seed(0)
    model = CIAE(CIAEConfig(depth=50, norm=norm))
    lines = []
    report = load_backbone(model, BackboneInit(path=path, format=fmt), log=lines.append)
    state = model.state_dict()
    expected = backbone_keys(r50, counters=norm == "bn")
    for key in expected:
        torch.testing.assert_close(state[ciae_name(key)], r50[key].to(state[ciae_name(key)].dtype), rtol=0, atol=0)
    assert sorted(ciae_name(k) for k in expected) == sorted(k for k in state if k.startswith("backbone.body."))
    assert sorted(report.unused) == ["fc.bias", "fc.weight"]
    assert report.mapping == {ciae_name(k): k for k in expected}
    table = lines[0]
    assert re.search(rf"loaded\s+{len(expected)}\b", table) and re.search(r"unused\s+2\b", table)
    assert re.search(r"shape mismatch\s+0\b", table) and re.search(r"missing\s+0\b", table)


@pytest.mark.parametrize("depth", [18, 34, 101])
def test_ciae_other_depths(tmp_path, depth):
    file_state = resnet_state_dict(depth, seed=2)
    torch.save(file_state, tmp_path / "resnet.pth")
    model = CIAE(CIAEConfig(depth=depth, norm="frozen_bn", fpn_channels=32, seg_channels=16, box_embed_channels=8,
                            embed_dim=8, head_convs=1))
    report = load_backbone(model, BackboneInit(path=tmp_path / "resnet.pth"), log=None)
    state = model.state_dict()
    expected = backbone_keys(file_state, counters=False)
    for key in expected:
        assert torch.equal(state[ciae_name(key)], file_state[key])
    assert sorted(ciae_name(k) for k in expected) == sorted(k for k in state if k.startswith("backbone.body."))
    assert sorted(report.unused) == ["fc.bias", "fc.weight"] and not report.missing


def paper_panonet(**kw):
    torch.manual_seed(0)
    return PanoNet(PanoNetConfig(width=2.0, stem="resnet", input_size=(64, 128), **kw))


@pytest.mark.parametrize("share", [False, True])
def test_panonet_trunks_take_every_resnet50_tensor(tmp_path, r50, share):
    torch.save(r50, tmp_path / "r50.pth")
    model = paper_panonet(use_coords=False, share_weights=share)
    report = load_backbone(model, BackboneInit(path=tmp_path / "r50.pth"), log=None)
    state = model.state_dict()
    prefixes = ["trunk."] if share else ["semantic.trunk.", "instance.trunk."]
    for prefix in prefixes:
        for key in backbone_keys(r50, counters=True):
            assert torch.equal(state[icnet_name(key, prefix)], r50[key]), key
    assert sorted(report.unused) == ["fc.bias", "fc.weight"]
    assert len(report.mapping) == len(prefixes) * len(backbone_keys(r50, counters=True))
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 128) * 255)
    assert out["semantic_logits"].shape == (1, 19, 16, 32)


def test_panonet_coordinate_branch_gets_zero_filters(tmp_path, r50):
    torch.save(r50, tmp_path / "r50.pth")
    model = paper_panonet(use_coords=True)
    report = load_backbone(model, BackboneInit(path=tmp_path / "r50.pth"), log=None)
    stem = model.state_dict()["instance.trunk.stem.0.0.weight"]
    assert stem.shape == (64, 5, 7, 7)
    assert torch.equal(stem[:, :3], r50["conv1.weight"]) and not stem[:, 3:].any()
    assert report.widened == ["instance.trunk.stem.0.0.weight"]


def test_deep_stem_leaves_the_file_stem_unused_and_strict_refuses(tmp_path, r50):
    torch.save(r50, tmp_path / "r50.pth")
    torch.manual_seed(0)
    model = PanoNet(PanoNetConfig(width=2.0, stem="deep", use_coords=False, input_size=(64, 128)))
    before = model.state_dict()["semantic.trunk.conv2.0.reduce.0.weight"].clone()
    with pytest.raises(CheckpointError, match=r"shape mismatch.*conv2\.0\.reduce\.0\.weight.*layer1\.0\.conv1\.weight"):
        load_backbone(model, BackboneInit(path=tmp_path / "r50.pth"), log=None)
    assert torch.equal(model.state_dict()["semantic.trunk.conv2.0.reduce.0.weight"], before)  # nothing copied
    report = load_backbone(model, BackboneInit(path=tmp_path / "r50.pth", strict=False), log=None)
    assert {"conv1.weight", "bn1.weight"} <= set(report.unused)
    assert torch.equal(model.state_dict()["semantic.trunk.conv2.1.reduce.0.weight"], r50["layer1.1.conv1.weight"])


def test_wrong_shape_is_refused_by_name(tmp_path, r50):
    bad = dict(r50)
    bad["layer3.2.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    torch.save(bad, tmp_path / "bad.pth")
    model = CIAE(CIAEConfig(depth=50, norm="frozen_bn"))
    before = model.state_dict()["backbone.body.stem.0.weight"].clone()
    lines = []
    expected = (r"bad\.pth.*backbone\.body\.stages\.2\.2\.conv2\.weight \[256, 256, 3, 3\] "
                r"<- layer3\.2\.conv2\.weight \[256, 256, 1, 1\]")
    with pytest.raises(CheckpointError, match=expected):
        load_backbone(model, BackboneInit(path=tmp_path / "bad.pth"), log=lines.append)
    assert "layer3.2.conv2.weight" in lines[0] and re.search(r"shape mismatch\s+1\b", lines[0])
    assert torch.equal(model.state_dict()["backbone.body.stem.0.weight"], before)
    report = load_backbone(model, BackboneInit(path=tmp_path / "bad.pth", strict=False), log=None)
    assert [m[1] for m in report.mismatched] == ["layer3.2.conv2.weight"]
    assert torch.equal(model.state_dict()["backbone.body.stem.0.weight"], r50["conv1.weight"])


def test_wrong_depth_is_refused_naming_missing_and_unused(tmp_path):
    torch.save(resnet_state_dict(101), tmp_path / "r101.pth")
    model = CIAE(CIAEConfig(depth=50, norm="frozen_bn"))
    with pytest.raises(CheckpointError, match=r"unused besides the classifier \(layer3\.6\.conv1\.weight"):
        load_backbone(model, BackboneInit(path=tmp_path / "r101.pth"), log=None)


def test_pickled_code_is_refused_without_running(tmp_path):
    marker, files = write_evil_files(tmp_path)
    model = CIAE(CIAEConfig(depth=18, norm="frozen_bn", fpn_channels=16, seg_channels=16, box_embed_channels=8,
                            embed_dim=8, head_convs=1))
    for path in files:
        target = path.with_suffix(".pth")
        path.rename(target)
        with pytest.raises(CheckpointError, match=f"{target.name}.*refused"):
            load_backbone(model, BackboneInit(path=target), log=None)
    assert not marker.exists()


def test_missing_file_says_where_to_get_it(tmp_path):
    model = CIAE(CIAEConfig(depth=18, norm="frozen_bn", fpn_channels=16, seg_channels=16, box_embed_channels=8,
                            embed_dim=8, head_convs=1))
    with pytest.raises(CheckpointError, match=r"nope\.pth: backbone weights file not found; download torchvision's "
                                              r".*https://download\.pytorch\.org/models/resnet50-0676ba61\.pth"):
        load_backbone(model, BackboneInit(path=tmp_path / "nope.pth"), log=None)


def test_ours_format_takes_a_trained_models_backbone(tmp_path):
    config = CIAEConfig(depth=18, norm="frozen_bn", fpn_channels=16, seg_channels=16, box_embed_channels=8,
                        embed_dim=8, head_convs=1)
    torch.manual_seed(1)
    trained = CIAE(config)
    save_checkpoint(tmp_path / "run", trained, config)
    torch.manual_seed(2)
    fresh = CIAE(config)
    report = load_backbone(fresh, BackboneInit(path=tmp_path / "run.safetensors", format="ours"), log=None)
    theirs, ours = trained.state_dict(), fresh.state_dict()
    body = {k for k in ours if k.startswith("backbone.body.")}
    assert all(torch.equal(ours[k], theirs[k]) for k in body)
    assert not torch.equal(ours["backbone.fpn.lateral.0.weight"], theirs["backbone.fpn.lateral.0.weight"])
    assert set(report.mapping) == body and report.unused  # the heads of the file stay unused, allowed for ours


def test_backbone_lr_multiplier_applies_to_the_loaded_layers_only():
    from panoptic_ros.training.backbone_init import backbone_prefixes
    from panoptic_ros.training.optim import OptimizerConfig, ScheduleConfig, build_optimizer, set_learning_rate

    model = CIAE(CIAEConfig(depth=18, norm="bn", fpn_channels=16, seg_channels=16, box_embed_channels=8,
                            embed_dim=8, head_convs=1))
    same = build_optimizer(model, OptimizerConfig(lr=0.01), backbone_prefixes(model))
    assert len(same.param_groups) == 2 and all("lr_mult" not in g for g in same.param_groups)
    opt = build_optimizer(model, OptimizerConfig(lr=0.01, backbone_lr_mult=0.1), backbone_prefixes(model))
    set_learning_rate(opt, 0, 0.01, ScheduleConfig(policy="constant"))
    ids = {id(p): name for name, p in model.named_parameters()}
    for group in opt.param_groups:
        in_body = {ids[id(p)].startswith("backbone.body.") for p in group["params"]}
        assert len(in_body) == 1  # a group is all backbone or all head
        assert group["lr"] == pytest.approx(0.001 if in_body.pop() else 0.01)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="backbone_lr_mult"):
        OptimizerConfig(backbone_lr_mult=-1.0)


@pytest.mark.parametrize("recipe, name", [("ciae_coco", ciae_name), ("ciae_cityscapes", ciae_name),
                                          ("panonet_cityscapes_semantic", icnet_name)])
def test_recipe_models_take_an_in_memory_state_dict(r50, recipe, name):
    """What a torchvision ``resnet50().state_dict()`` does to the recipes' models."""
    from pathlib import Path

    from panoptic_ros.kinds import build_model
    from panoptic_ros.training.backbone_init import BackboneReport, apply_backbone
    from panoptic_ros.training.config import load_train_config

    configs = Path(__file__).resolve().parents[2] / "training" / "configs"
    model = build_model(load_train_config(configs / f"{recipe}.yaml").model)
    report = apply_backbone(model, r50, BackboneReport("resnet50()", "torchvision", ""), log=None)
    state = model.state_dict()
    counters = recipe.startswith("panonet")  # trained BatchNorm keeps its step counter
    pairs = [(name(k) if name is ciae_name else name(k, p), k) for k in backbone_keys(r50, counters=counters)
             for p in (("semantic.trunk.", "instance.trunk.") if name is icnet_name else ("",))]
    assert report.mapping == dict(pairs)
    for target, key in pairs:
        assert torch.equal(state[target], r50[key]), target
    assert sorted(report.unused) == ["fc.bias", "fc.weight"]


def test_panonet_resnet101_trunk(tmp_path):
    r101 = resnet_state_dict(101, seed=3)
    torch.save(r101, tmp_path / "r101.pth")
    model = paper_panonet(use_coords=False, share_weights=True, blocks=(3, 4, 23, 3))
    report = load_backbone(model, BackboneInit(path=tmp_path / "r101.pth"), log=None)
    state = model.state_dict()
    for key in backbone_keys(r101, counters=True):
        assert torch.equal(state[icnet_name(key, "trunk.")], r101[key]), key
    assert sorted(report.unused) == ["fc.bias", "fc.weight"] and not report.missing
