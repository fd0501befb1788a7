"""The training config: one YAML file per recipe, validated into frozen dataclasses.

Sections: ``model`` (the model's own config, picked by ``model.kind``), ``data``,
``loss`` and ``postprocess`` (the model kind's configs), ``optimizer``, ``schedule``,
``init`` (initial weights, PanoNet training stage), ``eval`` and ``runtime``. Unknown
keys and wrong types are errors that name the key (``panoptic_ros.config``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Optional

from panoptic_ros.config import ConfigError, apply_overrides, from_dict, read_yaml, to_dict
from panoptic_ros.kinds import model_config_from_dict
from panoptic_ros.training.kinds import loss_config_from_dict, postprocess_config_from_dict
from panoptic_ros.training.optim import OptimizerConfig, ScheduleConfig

Dataset = Literal["synthstreet", "cityscapes", "coco"]


@dataclass(frozen=True)
class SynthSplit:
    """A generated SynthStreet split: scenes ``0 .. count - 1`` of the stream ``seed``;
    with ``mirror`` every scene has its left half mirrored onto the right (each thing on
    the right is a mirrored twin of one on the left). ``isolated_twins`` is the share of
    scenes (drawn per index from the seed) replaced by two copies of their largest thing on
    a plain background (``synthstreet/twins.py``): copies that only their position tells
    apart, which only a network with coordinate channels can separate."""

    seed: int = 0
    count: int = 100
    mirror: bool = False
    isolated_twins: float = 0.0

    def __post_init__(self) -> None:
        if self.seed < 0 or self.count < 1:
            raise ValueError(f"seed must be >= 0 and count >= 1, got {self.seed}, {self.count}")
        if not 0.0 <= self.isolated_twins <= 1.0:
            raise ValueError(f"isolated_twins must be a share in [0, 1], got {self.isolated_twins}")


@dataclass(frozen=True)
class DataConfig:
    """Training and validation data.

    Attributes:
        dataset: ``synthstreet`` (generated), ``cityscapes`` or ``coco`` (read from ``root``).
        root: dataset folder (Cityscapes / COCO).
        train_split, val_split: split names of the real datasets.
        synth_train, synth_val: SynthStreet splits (different stream seeds).
        scene_size: SynthStreet scene size (H, W).
        cache_dir: keep drawn SynthStreet scenes here (see ``training/data.py``).
        crop_size: training crop (H, W).
        min_scale, max_scale: random rescaling before the crop.
        color_jitter: photometric augmentation.
        batch_size: images per micro-batch per process.
        workers: DataLoader worker processes per process.
    """

    dataset: Dataset = "synthstreet"
    root: Optional[Path] = None
    train_split: str = "train"
    val_split: str = "val"
    synth_train: SynthSplit = field(default_factory=lambda: SynthSplit(0, 1000))
    synth_val: SynthSplit = field(default_factory=lambda: SynthSplit(1000, 20))
    scene_size: tuple[int, int] = (512, 1024)
    cache_dir: Optional[Path] = None
    crop_size: tuple[int, int] = (256, 512)
    min_scale: float = 0.5
    max_scale: float = 2.0
    color_jitter: bool = True
    batch_size: int = 4
    workers: int = 2

    def __post_init__(self) -> None:
        if self.dataset != "synthstreet" and self.root is None:
            raise ValueError(f"root: required for dataset {self.dataset!r}")
        if min(self.crop_size) < 32 or min(self.scene_size) < 32:
            raise ValueError("crop_size and scene_size must be at least 32 pixels")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")
        if self.batch_size < 1 or self.workers < 0:
            raise ValueError("batch_size must be >= 1 and workers >= 0")
        if self.dataset == "synthstreet" and self.synth_train.seed == self.synth_val.seed:
            raise ValueError("synth_train.seed and synth_val.seed must differ (disjoint scenes)")


@dataclass(frozen=True)
class BackboneInit:
    """ImageNet (or other) backbone weights loaded into a fresh model
    (``training/backbone_init.py``).

    Attributes:
        path: the weights file: ``.pth``/``.pt``/``.bin`` (read with
            ``weights_only=True``) or ``.safetensors``.
        format: tensor names of the file: ``torchvision`` (``conv1``, ``bn1``,
            ``layer1.0.conv1``, ..., ``fc``), ``timm`` (the same names for ResNets) or
            ``ours`` (this project's own names, e.g. a ``panoptic-train`` checkpoint).
        strict: refuse a file with mismatched shapes or missing backbone tensors (and,
            for torchvision/timm, tensors other than the classifier left unused);
            ``false`` loads what fits and goes on.
    """

    path: Path
    format: Literal["torchvision", "timm", "ours"] = "torchvision"
    strict: bool = True


@dataclass(frozen=True)
class InitConfig:
    """Initial weights.

    Attributes:
        checkpoint: weights to start from: a panoptic_ros checkpoint, a safetensors or a
            ``.pt``/``.pth`` state dict (read with ``weights_only=True``).
        mode: ``none`` copies every tensor whose name and shape match; the PanoNet
            two-stage recipe (``training/panonet_stages.py``) uses
            ``semantic_to_instance`` (stage 1: both branches from a trained semantic
            ICNet, instance prediction layers re-initialised) and ``add_coords``
            (stage 2: stage-1 weights plus zero filters for the coordinate channels).
        backbone: pretrained backbone weights for a fresh model (:class:`BackboneInit`);
            ``null`` trains from random initialisation.
    """

    checkpoint: Optional[Path] = None
    mode: Literal["none", "semantic_to_instance", "add_coords"] = "none"
    backbone: Optional[BackboneInit] = None

    def __post_init__(self) -> None:
        if self.mode != "none" and self.checkpoint is None:
            raise ValueError(f"init.checkpoint: required for init.mode {self.mode!r}")
        if self.backbone is not None and self.checkpoint is not None:
            raise ValueError("init.backbone and init.checkpoint: choose one (a checkpoint already "
                             "holds its backbone)")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation during and after training (rank 0, on the validation split).

    Attributes:
        every: evaluate every this many steps (0 = only at the end).
        count: validation images used (0 = all).
        images: panoptic overlays logged to TensorBoard per evaluation.
    """

    every: int = 0
    count: int = 0
    images: int = 2

    def __post_init__(self) -> None:
        if self.every < 0 or self.count < 0 or self.images < 0:
            raise ValueError("every, count and images must be >= 0")


@dataclass(frozen=True)
class RuntimeConfig:
    """Execution settings.

    Attributes:
        seed: seeds python, numpy, torch and the data order / augmentation.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        amp: autocast dtype of the forward pass: ``auto`` = bf16 on a CPU with native
            bf16 (AVX512-BF16/AMX), the GPU's choice on CUDA, float32 elsewhere
            (:mod:`panoptic_ros.precision`); ``off``, ``bf16`` or ``fp16`` force one.
        sync_bn: convert BatchNorm to SyncBatchNorm under DDP (CUDA only).
        log_every: log loss terms every this many steps.
        checkpoint_every: write a resumable checkpoint every this many steps.
        keep_checkpoints: newest checkpoints kept.
        tensorboard: write TensorBoard event files.
        threads: torch CPU threads (0 = torch's default).
    """

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    sync_bn: bool = False
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    tensorboard: bool = True
    threads: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0 or self.log_every < 1 or self.checkpoint_every < 1 or self.keep_checkpoints < 1:
            raise ValueError("seed must be >= 0; log_every, checkpoint_every, keep_checkpoints >= 1")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training recipe. ``model``, ``loss`` and ``postprocess`` hold the config
    dataclasses of the model kind (built by :func:`train_config_from_dict`)."""

    model: Any
    data: DataConfig = field(default_factory=DataConfig)
    loss: Any = None
    postprocess: Any = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    init: InitConfig = field(default_factory=InitConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        if self.init.mode != "none" and self.model.kind != "panonet":
            raise ValueError(f"init.mode: {self.init.mode!r} is a PanoNet stage; use 'none' for {self.model.kind}")
        if self.init.backbone is not None and getattr(self.model, "norm", "bn") == "gn":
            raise ValueError("init.backbone: model.norm is 'gn', where ImageNet BatchNorm statistics have no "
                             "place; use model.norm: frozen_bn (FCOS/RetinaNet practice) or bn")

    def to_dict(self) -> dict:
        return to_dict(self)


def train_config_from_dict(data: dict) -> TrainConfig:
    """Validate plain data into a :class:`TrainConfig` (errors name the key)."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {type(data).__name__}")
    model = model_config_from_dict(data.get("model"), "model")
    sections = {
        "model": model,
        "loss": loss_config_from_dict(model.kind, _section(data, "loss")),
        "postprocess": postprocess_config_from_dict(model.kind, _section(data, "postprocess")),
    }
    # ``Any`` fields take the already validated objects as they are.
    return from_dict(TrainConfig, {**data, **sections})


def _section(data: dict, name: str) -> dict:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
    return value


def load_train_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a training YAML, apply ``key=value`` overrides, validate; errors name the file."""
    data = apply_overrides(read_yaml(path), overrides)
    try:
        return train_config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
