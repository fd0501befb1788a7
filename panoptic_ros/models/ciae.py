"""CIAE: FCOS + category- and instance-aware pixel embedding (Gao et al.).

``images (B, 3, H, W) RGB 0..255`` -> normalise -> ResNet-FPN (P2..P7) ->

- the shared FCOS head on P3..P7 (:mod:`panoptic_ros.models.fcos_head`): box classes,
  center-ness, (l, t, r, b) and a box embedding per location;
- the embedding branch on P2..P5: per level (3x3 conv, GN, ReLU, 2x bilinear up) until
  1/4 scale (one conv and no upsampling for P2; CoordConv for the P5 convs), summed, 1x1
  conv -> P'; the box embeddings of P3..P7 bilinearly resized to 1/4, summed, 3x3 conv ->
  P''. The network returns the 1/4-scale map ``P' + P''`` unnormalised. The paper's
  ``P = L2norm(upsample4x(P' + P''))`` is completed by whoever consumes it: the
  post-processing (upsample 4x, then normalise, at inference) and the loss (normalise at
  1/4 scale, where the training targets live, which keeps CPU training cheap).

The category memory embeddings (``category_memory`` buffer, (C_st + 1, E): the stuff
classes in label-space order, then the merged "thing" class) are saved in checkpoints,
updated by :func:`panoptic_ros.training.losses.ciae.ciae_losses` and exported: the stuff
rows are an eval output.

Presets (YAML; every other key keeps its default)::

    # COCO, ResNet-50 (paper): 133 classes, shorter side 800
    {kind: ciae, label_space: coco, input_size: [800, 1333], depth: 50}
    # Cityscapes / SynthStreet: 19 classes
    {kind: ciae, label_space: cityscapes, input_size: [1024, 2048], depth: 50}
    # tiny CPU demo
    {kind: ciae, label_space: cityscapes, input_size: [512, 1024], depth: 18,
     base_channels: 16, fpn_channels: 64, seg_channels: 64, box_embed_channels: 16}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from panoptic_ros.labels import get_label_space
from panoptic_ros.models.common import IMAGENET_MEAN, IMAGENET_STD, check_image_fields, with_coordinate_channels
from panoptic_ros.models.fcos_head import FCOSHead, level_locations
from panoptic_ros.models.resnet_fpn import ResNetFPN, make_norm

HEAD_STRIDES = (8, 16, 32, 64, 128)
EMBED_STRIDE = 4
"""Stride of the embedding output (P2); its pixel (u, v) stands for input pixel (4u + 2, 4v + 2)."""


@dataclass(frozen=True)
class CIAEConfig:
    """CIAE architecture.

    Attributes:
        kind: always ``"ciae"``.
        label_space: ``cityscapes`` (11 stuff + 8 thing classes) or ``coco`` (53 + 80).
        input_size: default inference size (H, W).
        pixel_mean: RGB mean on the 0..255 scale.
        pixel_std: RGB standard deviation on the 0..255 scale.
        depth: ResNet depth (18, 34, 50, 101).
        base_channels: ResNet stem width (64 = standard; smaller for tiny CPU models).
        norm: backbone normalisation; ``gn`` by default because this project trains from
            scratch (``frozen_bn`` is for ImageNet-pretrained weights).
        fpn_channels: FPN and FCOS-tower width (256 in FCOS).
        p6_from: input of P6, ``p5`` (FCOS) or ``c5`` (RetinaNet).
        head_convs: convs per FCOS tower (4).
        box_embed_channels: channels of the FCOS box embedding.
        seg_channels: width of the embedding branch (128, Panoptic FPN's semantic branch).
        embed_dim: pixel embedding dimension E (32 in the paper).
        coord_conv: CoordConv in the P5 path of the embedding branch.
        fuse_box_embeddings: add P'' (the paper's default; off = the ablation P = f(P')).
    """

    kind: Literal["ciae"] = "ciae"
    label_space: Literal["cityscapes", "coco"] = "cityscapes"
    input_size: tuple[int, int] = (512, 1024)
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    depth: Literal[18, 34, 50, 101] = 50
    base_channels: int = 64
    norm: Literal["frozen_bn", "gn", "bn"] = "gn"
    fpn_channels: int = 256
    p6_from: Literal["p5", "c5"] = "p5"
    head_convs: int = 4
    box_embed_channels: int = 32
    seg_channels: int = 128
    embed_dim: int = 32
    coord_conv: bool = True
    fuse_box_embeddings: bool = True

    def __post_init__(self) -> None:
        check_image_fields(self, kind="ciae", min_side=32)
        for name in ("base_channels", "fpn_channels", "head_convs", "box_embed_channels", "seg_channels", "embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")


class _ConvUp(nn.Module):
    """3x3 conv + GN + ReLU, optionally CoordConv input, then bilinear resize to a size."""

    def __init__(self, cin: int, cout: int, coord: bool):
        super().__init__()
        self.coord = coord
        self.conv = nn.Conv2d(cin + 2 * coord, cout, 3, padding=1, bias=False)
        self.norm = make_norm("gn", cout)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(with_coordinate_channels(x) if self.coord else x)))
        return x if size is None else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class EmbeddingBranch(nn.Module):
    """P2..P5 (+ box embeddings of P3..P7) -> unnormalised 1/4-scale embeddings P' + P''.

    Args:
        in_channels: FPN channels.
        channels: branch width.
        embed_dim: output dimension E.
        box_embed_channels: channels of the FCOS box embeddings.
        coord_conv: CoordConv for the P5 convolutions.
        fuse_box_embeddings: add P''.
    """

    def __init__(self, *, in_channels: int, channels: int, embed_dim: int, box_embed_channels: int,
                 coord_conv: bool, fuse_box_embeddings: bool):
        super().__init__()
        self.paths = nn.ModuleList()
        for level in range(4):  # P2..P5: max(1, level) conv stages, the first from the FPN width
            coord = coord_conv and level == 3
            stages = [_ConvUp(in_channels if k == 0 else channels, channels, coord) for k in range(max(1, level))]
            self.paths.append(nn.ModuleList(stages))
        self.predictor = nn.Conv2d(channels, embed_dim, 1)
        self.box_fusion = nn.Conv2d(box_embed_channels, embed_dim, 3, padding=1) if fuse_box_embeddings else None

    def forward(self, feats: list[torch.Tensor], box_embeds: list[torch.Tensor]) -> torch.Tensor:
        """Args:
            feats: P2..P5, each (B, C, h_l, w_l).
            box_embeds: box embeddings of P3..P7, each (B, C_box, h_l, w_l).
        Returns:
            (B, E, h_2, w_2) unnormalised embeddings at the P2 (1/4) resolution.
        """
        sizes = [tuple(f.shape[-2:]) for f in feats]
        total = None
        for level, (x, stages) in enumerate(zip(feats, self.paths)):
            for k, stage in enumerate(stages):
                # each stage goes one level finer: P5 -> P4 -> P3 -> P2 sizes
                x = stage(x, sizes[level - k - 1] if level > 0 else None)
            total = x if total is None else total + x
        out = self.predictor(total)
        if self.box_fusion is not None:
            fused = sum(F.interpolate(e, size=sizes[0], mode="bilinear", align_corners=False) for e in box_embeds)
            out = out + self.box_fusion(fused)
        return out


class CIAE(nn.Module):
    """The CIAE network (see the module docstring).

    Train-mode ``forward`` returns (N = locations over P3..P7, (h, w) = P2 size):
        ``cls_logits`` (B, N, C_th), ``centerness_logits`` (B, N), ``box_reg`` (B, N, 4)
        (l, t, r, b) input pixels, ``locations`` (N, 2) (x, y) input pixels,
        ``embeddings`` (B, E, h, w) unnormalised, and ``category_memory`` (C_st + 1, E):
        the buffer itself (same storage), which the loss updates in place.

    Eval-mode ``forward`` returns ``OUTPUT_NAMES`` (in order):
        ``cls_scores`` (B, N, C_th) sigmoid, ``centerness`` (B, N) sigmoid, ``boxes``
        (B, N, 4) x0, y0, x1, y1 input pixels, ``locations`` (B, N, 2), ``embeddings``
        (B, E, h, w) unnormalised, ``stuff_memory`` (B, C_st, E) L2-normalised,
        ``image_size`` (B, 2) int64 (H, W) of the input.
    """

    OUTPUT_NAMES = ("cls_scores", "centerness", "boxes", "locations", "embeddings", "stuff_memory", "image_size")

    def __init__(self, config: CIAEConfig):
        super().__init__()
        self.config = config
        labels = get_label_space(config.label_space)
        self.num_stuff = len(labels.stuff_train_indices)
        self.num_things = len(labels.thing_train_indices)
        self.backbone = ResNetFPN(depth=config.depth, base_channels=config.base_channels, norm=config.norm,
                                  fpn_channels=config.fpn_channels, extra_from=config.p6_from)
        self.head = FCOSHead(channels=config.fpn_channels, num_classes=self.num_things,
                             box_embed_channels=config.box_embed_channels, strides=HEAD_STRIDES,
                             num_convs=config.head_convs)
        self.embedding = EmbeddingBranch(
            in_channels=config.fpn_channels, channels=config.seg_channels, embed_dim=config.embed_dim,
            box_embed_channels=config.box_embed_channels, coord_conv=config.coord_conv,
            fuse_box_embeddings=config.fuse_box_embeddings)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)
        # Random unit vectors (paper, Sec. III-C); rows: stuff classes, then merged "thing".
        memory = F.normalize(torch.randn(self.num_stuff + 1, config.embed_dim), dim=1)
        self.register_buffer("category_memory", memory)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args:
            images: (B, 3, H, W) float32 RGB in [0, 255].
        """
        if not torch.jit.is_tracing() and (images.dim() != 4 or images.shape[1] != 3):
            raise ValueError(f"images: expected (B, 3, H, W), got {tuple(images.shape)}")
        feats = self.backbone((images - self.pixel_mean) / self.pixel_std)
        dense, box_embeds = self.head(feats[1:])
        embeddings = self.embedding(feats[:4], box_embeds)
        sizes = [tuple(f.shape[-2:]) for f in feats[1:]]
        locations = level_locations(sizes, HEAD_STRIDES, device=images.device)
        if self.training:
            return {**dense, "locations": locations, "embeddings": embeddings,
                    "category_memory": self.category_memory}
        return self._inference_outputs(images, dense, locations, embeddings)

    def _inference_outputs(self, images: torch.Tensor, dense: dict[str, torch.Tensor], locations: torch.Tensor,
                           embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        b = images.shape[0]
        ltrb = dense["box_reg"]
        loc = locations.unsqueeze(0)
        boxes = torch.cat([loc - ltrb[..., :2], loc + ltrb[..., 2:]], dim=-1)
        stuff = F.normalize(self.category_memory[: self.num_stuff], dim=1)
        size = torch._shape_as_tensor(images)[2:]  # traced as an ONNX Shape op, right for any size
        return {
            "cls_scores": torch.sigmoid(dense["cls_logits"]),
            "centerness": torch.sigmoid(dense["centerness_logits"]),
            "boxes": boxes,
            "locations": loc.expand(b, -1, -1),
            "embeddings": embeddings,
            "stuff_memory": stuff.unsqueeze(0).expand(b, -1, -1),
            "image_size": size.view(1, 2).expand(b, 2),
        }
