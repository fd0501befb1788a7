"""Pretrained backbone weights (``init.backbone``): ImageNet ResNets into CIAE and PanoNet.

Both papers start from ImageNet: CIAE's ResNet-50-FPN backbone is ImageNet-initialised,
and PanoNet's ICNet has a ResNet-50 trunk. The files users have name their tensors as
torchvision's ``ResNet`` does (timm's ResNets use the same names):

- ``conv1``, ``bn1``: the 7x7 stem;
- ``layer{1..4}.{j}``: the residual blocks, each ``conv1``/``bn1``, ``conv2``/``bn2``
  (+ ``conv3``/``bn3`` in bottlenecks) and, where the shape changes, ``downsample.0``
  (1x1 conv) / ``downsample.1`` (norm);
- ``fc``: the ImageNet classifier, which has no place in a dense-prediction network.

:func:`module_map` pairs every backbone module of our models with its file name, block for
block: CIAE's ``backbone.body`` (``stem.0``/``stem.1``, ``stages.i.j.{convK,normK,
shortcut}``) and each ICNet trunk of PanoNet (``conv2`` = layer1, ``conv3_1`` +
``conv3_rest`` = layer2, ``conv4`` = layer3, ``conv5`` = layer4; ``reduce``/``conv``/
``expand``/``shortcut``). ICNet's dilated ``conv4``/``conv5`` have the same weights as
ResNet's strided layer3/layer4. Its deep stem (three 3x3 convs) has no ImageNet
counterpart and stays random; ``stem: resnet`` gives the trunk a loadable 7x7 stem.

A ``.pth``/``.pt``/``.bin`` file is read with ``torch.load(weights_only=True)``, which
refuses (never runs) pickled code; ``.safetensors`` with safetensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from panoptic_ros.checkpoint import CheckpointError, sha256_file
from panoptic_ros.training.config import BackboneInit
from panoptic_ros.training.init import read_init_tensors
from panoptic_ros.training.panonet_stages import fit_tensor

CLASSIFIER = "fc."
"""Prefix of the ImageNet classifier in torchvision/timm files: the only tensors a
complete file leaves unused."""
_COUNTER = ".num_batches_tracked"
WHERE_TO_GET = {
    "torchvision": "download torchvision's ImageNet weights, e.g. ResNet-50 (IMAGENET1K_V1): "
                   "https://download.pytorch.org/models/resnet50-0676ba61.pth (ResNet-18: resnet18-f37072fd.pth, "
                   "34: resnet34-b627a593.pth, 101: resnet101-63fe2227.pth, same folder)",
    "timm": "download model.safetensors of a timm ResNet, e.g. https://huggingface.co/timm/resnet50.tv_in1k",
    "ours": "use a model written by panoptic-train (<run>/model.safetensors)",
}
_BLOCK_NAMES = {  # our block child -> torchvision block child
    "conv1": "conv1", "norm1": "bn1", "conv2": "conv2", "norm2": "bn2", "conv3": "conv3", "norm3": "bn3",
    "reduce.0": "conv1", "reduce.1": "bn1", "conv.0": "conv2", "conv.1": "bn2", "expand.0": "conv3",
    "expand.1": "bn3", "shortcut.0": "downsample.0", "shortcut.1": "downsample.1",
}


def _resnet_modules(prefix: str, body: nn.Module) -> dict[str, str]:
    """CIAE's ResNet (``models/resnet_fpn.ResNet``) under ``prefix``."""
    mapping = {f"{prefix}stem.0": "conv1", f"{prefix}stem.1": "bn1"}
    for i, stage in enumerate(body.stages):
        for j in range(len(stage)):
            mapping.update({f"{prefix}stages.{i}.{j}.{ours}": f"layer{i + 1}.{j}.{theirs}"
                            for ours, theirs in _BLOCK_NAMES.items()})
    return mapping


def _icnet_modules(prefix: str, trunk: nn.Module) -> dict[str, str]:
    """An ICNet trunk (``models/icnet.ICNetTrunk``) under ``prefix``."""
    mapping = {}
    if len(trunk.stem) == 2:  # the 7x7 'resnet' stem: ConvBN + max-pool
        mapping = {f"{prefix}stem.0.0": "conv1", f"{prefix}stem.0.1": "bn1"}
    layer2 = [f"conv3_1.{j}" for j in range(len(trunk.conv3_1))]
    if isinstance(trunk.conv3_rest, nn.Sequential):
        layer2 += [f"conv3_rest.{j}" for j in range(len(trunk.conv3_rest))]
    layers = [[f"conv2.{j}" for j in range(len(trunk.conv2))], layer2,
              [f"conv4.{j}" for j in range(len(trunk.conv4))], [f"conv5.{j}" for j in range(len(trunk.conv5))]]
    for i, blocks in enumerate(layers):
        for j, block in enumerate(blocks):
            mapping.update({f"{prefix}{block}.{ours}": f"layer{i + 1}.{j}.{theirs}"
                            for ours, theirs in _BLOCK_NAMES.items()})
    return mapping


def module_map(model: nn.Module) -> dict[str, str]:
    """Our backbone module names -> torchvision ResNet module names (modules that do not
    exist in ``model``, e.g. ``norm3`` of a basic block, are dropped by :func:`tensor_map`).

    Raises:
        CheckpointError: ``model`` has no ResNet backbone this module knows.
    """
    model = getattr(model, "module", model)
    kind = getattr(getattr(model, "config", None), "kind", None)
    if kind == "ciae":
        return _resnet_modules("backbone.body.", model.backbone.body)
    if kind == "panonet":
        if model.config.share_weights:
            return _icnet_modules("trunk.", model.trunk)
        return {**_icnet_modules("semantic.trunk.", model.semantic.trunk),
                **_icnet_modules("instance.trunk.", model.instance.trunk)}
    raise CheckpointError(f"init.backbone: no ResNet backbone mapping for a {type(model).__name__}")


def tensor_map(model: nn.Module, fmt: str) -> dict[str, str]:
    """Our backbone state keys -> the file's tensor names, in state-dict order.

    ``ours`` maps every backbone key to itself; ``torchvision`` and ``timm`` to the
    ResNet names (the same in both projects).
    """
    modules = module_map(model)
    mapping = {}
    for key in getattr(model, "module", model).state_dict():
        owner, _, leaf = key.rpartition(".")
        if owner in modules:
            mapping[key] = key if fmt == "ours" else f"{modules[owner]}.{leaf}"
    return mapping


def backbone_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Parameter name prefixes of the layers a backbone file fills (the layers that
    ``optimizer.backbone_lr_mult`` applies to); empty for a model without a mapping."""
    try:
        return tuple(f"{name}." for name in module_map(model))
    except CheckpointError:
        return ()


@dataclass
class BackboneReport:
    """What :func:`load_backbone` did; ``mapping``: our key -> file key of every loaded
    tensor."""

    path: str
    format: str
    sha256: str
    mapping: dict[str, str] = field(default_factory=dict)
    widened: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str, tuple, tuple]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    counters: int = 0

    def table(self) -> str:
        """The printed table: one line per outcome with its count, then every tensor
        that was not loaded, by name."""
        rows = [f"backbone weights {self.path} ({self.format}, sha256 {self.sha256[:12]})",
                f"  {'loaded':<15}{len(self.mapping):>6}" + (f"  ({len(self.widened)} widened with zero "
                                                               "coordinate filters)" if self.widened else ""),
                f"  {'shape mismatch':<15}{len(self.mismatched):>6}",
                f"  {'missing':<15}{len(self.missing):>6}",
                f"  {'unused':<15}{len(self.unused):>6}"]
        rows += [f"    shape mismatch: {ours} {list(a)} <- {theirs} {list(b)}"
                 for ours, theirs, a, b in self.mismatched]
        rows += [f"    missing: {ours} (file has no {theirs})" for ours, theirs in self.missing]
        rows += [f"    unused: {name}" for name in self.unused]
        if self.counters:
            rows.append(f"  ({self.counters} BatchNorm num_batches_tracked counters not needed by the model)")
        return "\n".join(rows)

    def metadata(self) -> dict:
        """JSON-ready record for the run's metadata."""
        return {"path": self.path, "format": self.format, "sha256": self.sha256, "loaded": len(self.mapping),
                "mapping": dict(self.mapping), "widened": list(self.widened),
                "shape_mismatch": [[o, t, list(a), list(b)] for o, t, a, b in self.mismatched],
                "missing": [[o, t] for o, t in self.missing], "unused": list(self.unused)}


def read_backbone_file(path: Path, fmt: str) -> dict[str, torch.Tensor]:
    """The file's tensors (a leading ``module.`` of a DDP save is dropped).

    Raises:
        CheckpointError: file absent (saying where to get one), unreadable or refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: backbone weights file not found; {WHERE_TO_GET[fmt]} to that path, "
                              "or set init.backbone=null to train from scratch "
                              "(docs/training.md, 'Reproducing the papers')")
    tensors = read_init_tensors(path)
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def match_tensors(model: nn.Module, tensors: Mapping[str, torch.Tensor], report: BackboneReport) -> dict:
    """Sort every backbone tensor of ``model`` into loaded / widened / mismatched /
    missing (filled into ``report``); returns {our key: tensor to copy}, shaped like
    ours. A coordinate branch's first conv has two more input channels than the file's:
    they get zero filters, so the branch starts as if it saw no coordinates."""
    own = getattr(model, "module", model).state_dict()
    mapping = tensor_map(model, report.format)
    values = {}
    for ours, theirs in mapping.items():
        source, target = tensors.get(theirs), own[ours]
        if source is None:
            report.missing.append((ours, theirs))
            continue
        try:
            values[ours], widened = fit_tensor(source, target, ours)
        except ValueError:
            report.mismatched.append((ours, theirs, tuple(target.shape), tuple(source.shape)))
            continue
        report.mapping[ours] = theirs
        if widened:
            report.widened.append(ours)
    used = set(mapping.values())
    mapped_modules = {name.rpartition(".")[0] for name in used}
    for name in tensors:
        if name in used:
            continue
        if name.endswith(_COUNTER) and name[: -len(_COUNTER)] in mapped_modules:
            report.counters += 1  # FrozenBatchNorm2d keeps no step counter
        else:
            report.unused.append(name)
    return values


def _refusal(report: BackboneReport) -> str | None:
    """Why a strict load must stop (None: it may go on)."""
    foreign = [n for n in report.unused if report.format != "ours" and not n.startswith(CLASSIFIER)]
    problems = [f"{len(report.mismatched)} shape mismatches ("
                + ", ".join(f"{o} {list(a)} <- {t} {list(b)}" for o, t, a, b in report.mismatched[:4]) + ")"
                if report.mismatched else "",
                f"{len(report.missing)} missing (" + ", ".join(t for _, t in report.missing[:4]) + ")"
                if report.missing else "",
                f"{len(foreign)} unused besides the classifier (" + ", ".join(foreign[:4]) + ")" if foreign else ""]
    problems = [p for p in problems if p]
    return "; ".join(problems) if problems else None


def load_backbone(model: nn.Module, config: BackboneInit, log: Callable[[str], None] | None = print) -> BackboneReport:
    """Load the file ``config.path`` into the backbone of ``model`` (in place); see
    :func:`apply_backbone` (``log``, return value and refusals)."""
    tensors = read_backbone_file(config.path, config.format)
    report = BackboneReport(str(config.path), config.format, sha256_file(Path(config.path)))
    return apply_backbone(model, tensors, report, strict=config.strict, log=log)


def apply_backbone(model: nn.Module, tensors: Mapping[str, torch.Tensor], report: BackboneReport, *,
                   strict: bool = True, log: Callable[[str], None] | None = print) -> BackboneReport:
    """Copy a state dict (e.g. torchvision's ``resnet50().state_dict()``) into the backbone
    of ``model`` and print the table.

    Args:
        model: a freshly built CIAE or PanoNet (or a DDP wrapper of one).
        tensors: the file's tensors, by name.
        report: an empty report naming the source and ``format`` (``torchvision``,
            ``timm``, ``ours``); filled in and returned (its ``metadata()`` goes into the
            run's metadata).
        strict: refuse any shape mismatch, missing backbone tensor or (torchvision/timm)
            unused tensor other than the classifier; the model is then left unchanged.
        log: where the table goes (None: nowhere, e.g. on ranks other than 0).
    Raises:
        CheckpointError: naming the tensors, when ``strict`` refuses or (in any mode) no
            tensor fits.
    """
    values = match_tensors(model, tensors, report)
    if log is not None:
        log(report.table())
    why = _refusal(report)
    if not values:
        raise CheckpointError(f"{report.path}: no tensor fits the model's backbone under {report.format} names "
                              f"({why or 'nothing to load'})")
    if why and strict:
        raise CheckpointError(f"{report.path}: refused ({report.format}): {why}; "
                              "set init.backbone.strict=false to load what fits")
    own = getattr(model, "module", model).state_dict()
    with torch.no_grad():
        for key, value in values.items():
            own[key].copy_(value)
    return report
