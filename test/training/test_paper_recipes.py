"""The papers' Cityscapes recipes start from an ImageNet backbone: without the file they
stop at once saying where to get it; with a torchvision-layout file they train a few
steps on a Cityscapes-layout SynthStreet set (panoptic-synth, then csCreatePanopticImgs)
and record the key mapping in the run's metadata."""
import json
import re
from pathlib import Path

import pytest
import torch
from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

from panoptic_ros.synthstreet import cli as synth_cli
from panoptic_ros.training import train as train_cli
from panoptic_ros.training.config import load_train_config

from resnet_files import resnet_state_dict
from test_checkpoint_safety import one_thread  # noqa: F401 (autouse fixture)

CONFIGS = Path(train_cli.__file__).parent / "configs"
BACKBONE_RECIPES = ["ciae_cityscapes", "ciae_coco", "panonet_cityscapes_semantic"]
# A few steps at a tiny size: the recipes' models are the papers' (ResNet-50 widths).
TINY = ["data.crop_size=[64,128]", "data.batch_size=1", "data.workers=0", "schedule.total_steps=2",
        "schedule.warmup_steps=0", "eval.count=1", "eval.every=0", "runtime.amp='off'", "runtime.log_every=1",
        "runtime.checkpoint_every=2", "runtime.tensorboard=false", "model.input_size=[64,128]"]


@pytest.fixture(scope="module")
def cityscapes_set(tmp_path_factory):
    """2 train + 1 val SynthStreet scenes in the Cityscapes layout, converted by the
    official createPanopticImgs; and a ResNet-50 file in torchvision's layout."""
    root = tmp_path_factory.mktemp("cs")
    for split, seed, count in (("train", 0, 2), ("val", 1000, 1)):
        assert synth_cli.main(["--out", str(root / "cs"), "--format", "cityscapes", "--count", str(count),
                               "--size", "64x128", "--split", split, "--seed", str(seed)]) == 0
    convert2panoptic(str(root / "cs" / "gtFine"), str(root / "cs" / "gtFine"), setNames=["train", "val"])
    torch.save(resnet_state_dict(50), root / "resnet50-0676ba61.pth")
    return root


def test_recipes_name_the_backbone_file_and_paper_defaults():
    for name in BACKBONE_RECIPES:
        config = load_train_config(CONFIGS / f"{name}.yaml")
        assert config.init.backbone.path == Path("weights/imagenet/resnet50-0676ba61.pth")
        assert (config.init.backbone.format, config.init.backbone.strict) == ("torchvision", True)
        assert config.optimizer.backbone_lr_mult == 1.0
    for name in ("ciae_cityscapes", "ciae_coco"):
        assert load_train_config(CONFIGS / f"{name}.yaml").model.norm == "frozen_bn"
    for name in ("panonet_cityscapes_semantic", "panonet_cityscapes_stage1", "panonet_cityscapes"):
        model = load_train_config(CONFIGS / f"{name}.yaml").model
        assert (model.width, model.stem) == (2.0, "resnet")


@pytest.mark.parametrize("name", BACKBONE_RECIPES)
def test_without_the_file_the_recipe_stops_at_once(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # the placeholder path is relative: certainly absent here
    code = train_cli.main(["--config", str(CONFIGS / f"{name}.yaml"), "--out", str(tmp_path / "run"),
                           "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("panoptic-train: error: weights/imagenet/resnet50-0676ba61.pth: backbone weights file "
                          "not found; download torchvision's")
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in err and "init.backbone=null" in err
    assert not (tmp_path / "run").exists()


def test_gn_backbone_with_imagenet_weights_is_refused(capsys):
    code = train_cli.main(["--config", str(CONFIGS / "ciae_cityscapes.yaml"), "model.norm=gn"])
    err = capsys.readouterr().err
    assert code == 2 and "init.backbone: model.norm is 'gn'" in err


def train_tiny(name: str, root: Path, out: Path, capsys, *overrides: str):
    """Run recipe ``name`` for two tiny steps on ``root``; returns what it printed."""
    code = train_cli.main(["--config", str(CONFIGS / f"{name}.yaml"), f"data.root={root}", *TINY, *overrides,
                           "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    return printed


def check_backbone_run(out: Path, printed, loaded: int, our_key: str) -> None:
    """The table printed, the mapping in the model's metadata, two training steps logged."""
    assert re.search(rf"loaded\s+{loaded}\n\s+shape mismatch\s+0\n\s+missing\s+0\n\s+unused\s+2\n", printed.out)
    meta = json.loads((out / "model.json").read_text())["metadata"]["init_backbone"]
    assert meta["loaded"] == loaded and sorted(meta["unused"]) == ["fc.bias", "fc.weight"]
    assert meta["mapping"][our_key] == "layer4.2.bn3.running_var"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2]


def test_ciae_cityscapes_trains_from_a_backbone_file(cityscapes_set, tmp_path, capsys):
    printed = train_tiny("ciae_cityscapes", cityscapes_set / "cs", tmp_path / "run", capsys,
                         f"init.backbone.path={cityscapes_set / 'resnet50-0676ba61.pth'}")
    check_backbone_run(tmp_path / "run", printed, 265, "backbone.body.stages.3.2.norm3.running_var")


def test_panonet_stages_continue_from_the_imagenet_semantic_run(cityscapes_set, tmp_path, capsys):
    """semantic (ImageNet trunk) -> stage 1 -> stage 2, each recipe as shipped but tiny."""
    root = cityscapes_set / "cs"
    printed = train_tiny("panonet_cityscapes_semantic", root, tmp_path / "sem", capsys,
                         f"init.backbone.path={cityscapes_set / 'resnet50-0676ba61.pth'}")
    check_backbone_run(tmp_path / "sem", printed, 2 * 318, "semantic.trunk.conv5.2.expand.1.running_var")
    printed = train_tiny("panonet_cityscapes_stage1", root, tmp_path / "st1", capsys,
                         f"init.checkpoint={tmp_path / 'sem' / 'model'}")
    assert "semantic_to_instance from" in printed.err + printed.out
    printed = train_tiny("panonet_cityscapes", root, tmp_path / "st2", capsys,
                         f"init.checkpoint={tmp_path / 'st1' / 'model'}")
    assert "add_coords from" in printed.err + printed.out
    assert json.loads((tmp_path / "st2" / "model.json").read_text())["model"]["stem"] == "resnet"


def test_a_wrong_shape_stops_the_run_in_one_line_naming_the_tensor(cityscapes_set, tmp_path, capsys):
    bad = resnet_state_dict(50)
    bad["layer2.1.bn2.running_var"] = torch.ones(64)
    torch.save(bad, tmp_path / "bad.pth")
    code = train_cli.main(["--config", str(CONFIGS / "ciae_cityscapes.yaml"), f"data.root={cityscapes_set / 'cs'}",
                           f"init.backbone.path={tmp_path / 'bad.pth'}", *TINY, "--out", str(tmp_path / "run"),
                           "--device", "cpu"])
    printed = capsys.readouterr()
    assert code == 2 and printed.err.count("\n") == 1
    assert ("backbone.body.stages.1.1.norm2.running_var [128] <- layer2.1.bn2.running_var [64]" in printed.err
            and "init.backbone.strict=false" in printed.err)
    assert re.search(r"shape mismatch\s+1\n", printed.out)  # the table came first
