"""PanoNet: a semantic ICNet and a position-sensitive instance-embedding ICNet.

The semantic branch is a plain ICNet with ``num_classes`` outputs. The instance branch is
an ICNet whose input is the normalised RGB image plus two coordinate channels (x then
y, each ``linspace(-1, 1)`` over the pixel centres: -1 at the first column/row, +1 at
the last) and whose output is a ``embedding_dim``-channel pixel embedding (12 in the
paper). The coordinates are generated inside ``forward`` from the input size, so the
network is position-sensitive without any extra input. ``use_coords=False`` gives the
stage-1 network of the paper's two-stage training (see ``training/panonet_stages.py``).

``share_weights=True`` is the paper's compression ablation: one trunk (all three ICNet
branches up to the CFF units) is shared; each task keeps its own last three layers along
the prediction path (the two CFF units and the classifier, plus their guidance
classifiers). The shared trunk then sees the coordinate channels for both tasks.

Outputs (``forward(images)``, images (B, 3, H, W) float RGB in [0, 255], normalised
inside with ``pixel_mean`` / ``pixel_std``):

- eval mode, :attr:`PanoNet.OUTPUT_NAMES` (also the ONNX output names):
  ``semantic`` (B, H, W) uint8 train indices at the *input* resolution (argmax of the
  1/4 logits upsampled bilinearly, as ICNet does at inference); ``semantic_logits``
  (B, C, H/4, W/4) and ``embedding`` (B, E, H/4, W/4) at 1/4. Post-processing needs
  full-resolution labels but only 1/4 embeddings and probabilities: clustering 1/4
  embeddings is 16x less work on the CPU, and the instance label of a pixel is taken
  from its 1/4 cell.
- train mode, :data:`TRAIN_OUTPUT_NAMES`: ``semantic_logits_{4,8,16}`` (B, C, H/s, W/s)
  and ``embedding_{4,8,16}`` (B, E, H/s, W/s), the three cascade-guidance scales of both
  branches, for ``training/losses/panonet.py``. Sizes round up: ``ceil(H / s)``.

Default config (width 1.0, Cityscapes): 13.4M parameters (6.7M per branch; the paper
reports 12M). ``width: 0.25`` with ``blocks: [1, 1, 2, 1]`` is the small CPU variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from panoptic_ros.labels import get_label_space
from panoptic_ros.models.common import IMAGENET_MEAN, IMAGENET_STD, check_image_fields, with_coordinate_channels
from panoptic_ros.models.icnet import (GUIDANCE_STRIDES, OUTPUT_STRIDE, ICNet, ICNetHead, ICNetTrunk, guidance_size,
                                       init_weights, resize)

TRAIN_OUTPUT_NAMES = tuple(f"{name}_{s}" for name in ("semantic_logits", "embedding") for s in GUIDANCE_STRIDES)
"""Train-mode output keys, one per branch and guidance stride (4, 8, 16)."""


@dataclass(frozen=True)
class PanoNetConfig:
    """PanoNet architecture.

    Attributes:
        kind: always ``"panonet"``.
        label_space: ``cityscapes`` or ``coco``; sets the number of semantic classes.
        input_size: (H, W) default inference size (export, predictor).
        pixel_mean: RGB mean on the 0..255 scale.
        pixel_std: RGB standard deviation on the 0..255 scale.
        width: channel multiplier of both ICNets (1.0 = released ICNet).
        blocks: bottlenecks per ResNet stage (conv2..conv5), each >= 1.
        psp_bins: pyramid pooling grids.
        embedding_dim: instance embedding channels.
        use_coords: feed the two coordinate channels to the instance branch.
        share_weights: share the trunk between the branches (paper's ablation).
        stem: ``deep`` (the released ICNet's three 3x3 convs) or ``resnet`` (a 7x7 conv,
            the only stem an ImageNet ResNet file can fill; see ``models/icnet.py``).
    """

    kind: Literal["panonet"] = "panonet"
    label_space: Literal["cityscapes", "coco"] = "cityscapes"
    input_size: tuple[int, int] = (1024, 2048)
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    width: float = 1.0
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    psp_bins: tuple[int, ...] = (1, 2, 3, 6)
    embedding_dim: int = 12
    use_coords: bool = True
    share_weights: bool = False
    stem: Literal["deep", "resnet"] = "deep"

    def __post_init__(self) -> None:
        check_image_fields(self, kind="panonet", min_side=1)
        if not 0 < self.width <= 4:
            raise ValueError(f"width: must be in (0, 4], got {self.width}")
        if min(self.blocks) < 1:
            raise ValueError(f"blocks: every stage needs >= 1 bottleneck, got {self.blocks}")
        if not self.psp_bins or min(self.psp_bins) < 1:
            raise ValueError(f"psp_bins: need one or more grid sizes >= 1, got {self.psp_bins}")
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim: must be >= 1, got {self.embedding_dim}")

    @property
    def num_classes(self) -> int:
        return get_label_space(self.label_space).num_classes

    @property
    def instance_in_channels(self) -> int:
        return 5 if self.use_coords else 3


class PanoNet(nn.Module):
    """PanoNet (see the module docstring for inputs and outputs)."""

    OUTPUT_NAMES = ("semantic", "semantic_logits", "embedding")

    def __init__(self, config: PanoNetConfig):
        super().__init__()
        self.config = config
        c = config
        common = dict(width=c.width)
        trunk = dict(blocks=c.blocks, psp_bins=c.psp_bins, stem=c.stem)
        if c.share_weights:
            self.trunk = ICNetTrunk(in_channels=c.instance_in_channels, **trunk, **common)
            self.semantic_head = ICNetHead(in_channels=self.trunk.out_channels,
                                           num_outputs=c.num_classes, **common)
            self.instance_head = ICNetHead(in_channels=self.trunk.out_channels,
                                           num_outputs=c.embedding_dim, **common)
        else:
            self.semantic = ICNet(in_channels=3, num_outputs=c.num_classes, **trunk, **common)
            self.instance = ICNet(in_channels=c.instance_in_channels, num_outputs=c.embedding_dim,
                                  **trunk, **common)
        init_weights(self)
        # Not persistent: they come from the config, which the checkpoint stores.
        self.register_buffer("pixel_mean", torch.tensor(c.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(c.pixel_std).view(1, 3, 1, 1), persistent=False)

    def branches(self, images: Tensor, *, with_guidance: bool) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Raw branch outputs: (semantic logits, embeddings), each at 1/4 [, 1/8, 1/16].

        Args:
            images: (B, 3, H, W) RGB in [0, 255].
            with_guidance: also compute the 1/8 and 1/16 guidance outputs.
        """
        b, _, h, w = images.shape
        x = (images - self.pixel_mean) / self.pixel_std
        xi = with_coordinate_channels(x) if self.config.use_coords else x
        if self.config.share_weights:
            feats = self.trunk(xi)
            size_4 = guidance_size(h, w, OUTPUT_STRIDE)
            semantic = self.semantic_head(feats, size_4=size_4, with_guidance=with_guidance)
            embedding = self.instance_head(feats, size_4=size_4, with_guidance=with_guidance)
        else:
            semantic = self.semantic(x, with_guidance=with_guidance)
            embedding = self.instance(xi, with_guidance=with_guidance)
        return semantic, embedding

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) RGB in [0, 255] -> OUTPUT_NAMES (eval) or TRAIN_OUTPUT_NAMES (train)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected (B, 3, H, W), got {tuple(images.shape)}")
        semantic, embedding = self.branches(images, with_guidance=self.training)
        if self.training:
            outputs = {f"semantic_logits_{s}": t for s, t in zip(GUIDANCE_STRIDES, semantic)}
            outputs.update({f"embedding_{s}": t for s, t in zip(GUIDANCE_STRIDES, embedding)})
            return outputs
        # Channels-last makes the class axis contiguous: torch's CPU argmax over it is ~4x
        # faster than over the strided NCHW class axis (ONNX ignores the memory format).
        logits = semantic[0].contiguous(memory_format=torch.channels_last)
        labels = resize(logits, images.shape[-2:]).argmax(1).to(torch.uint8)        # (B, H, W)
        return {"semantic": labels, "semantic_logits": semantic[0], "embedding": embedding[0]}
