"""Discriminative loss for pixel embeddings (De Brabandere et al. 2017, as used by PanoNet).

For the C instances of one image, with mu_c the mean embedding of instance c (N_c pixels):

- variance: ``1/C sum_c 1/N_c sum_i [||mu_c - x_i|| - delta_v]_+^2`` pulls pixels to
  within ``delta_v`` of their instance mean;
- distance: ``1/(C(C-1)) sum_{a != b} [2 delta_d - ||mu_a - mu_b||]_+^2`` pushes means at
  least ``2 delta_d`` apart (ordered pairs, as the paper writes it: each pair twice);
- regularisation: ``1/C sum_c [||mu_c|| - delta_r]_+^2`` keeps the means within
  ``delta_r`` of the origin. The paper prints an extra ``1/N_c`` inside this sum; a
  per-cluster term has no pixel sum to normalise, and ``1/N_c`` would make the pull
  depend on the instance's size, so we read it as a typo and use the mean over
  instances of the squared hinge of the mean's norm.

Each term is averaged over the images of the batch that have at least one instance
(two for the distance term); images without instances contribute nothing, and a batch
without any instance gives exact zeros that still depend on the embedding.

Everything is computed for the whole batch at once, in fixed shapes: image b's instance
id i has slot ``b * slots + i`` (slot 0 of each image: its unlabelled pixels, ignored),
and sums per slot are ``index_add`` reductions. Nothing is read on the host but ``slots``
(one read, unless the caller knows it: the training collate puts it in the targets), so a
training step on a GPU does not wait for this loss.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _mean_over_images(per_image: Tensor, valid: Tensor) -> Tensor:
    """Mean of (B,) ``per_image`` over the ``valid`` images (0, with a graph, if none)."""
    return torch.where(valid, per_image, 0).sum() / valid.sum().clamp(min=1)


def instance_slots(instance: Tensor) -> int:
    """1 + the largest id of (B, h, w) ``instance`` (one host read).

    Raises:
        ValueError: a negative id.
    """
    low, high = torch.stack([instance.min(), instance.max()]).tolist() if instance.numel() else (0, 0)
    if low < 0:
        raise ValueError("instance ids must be >= 0 (0 = no instance)")
    return int(high) + 1


def discriminative_loss(
    embedding: Tensor,
    instance: Tensor,
    *,
    delta_v: float = 0.25,
    delta_d: float = 1.0,
    delta_r: float = 6.0,
    slots: int | None = None,
) -> dict[str, Tensor]:
    """Variance, distance and regularisation terms (unweighted) for a batch.

    Args:
        embedding: (B, E, h, w) pixel embeddings.
        instance: (B, h, w) int64 instance ids; 0 = not an instance (ignored), 1..N per image.
        delta_v: variance margin.
        delta_d: distance margin (means are pushed ``2 * delta_d`` apart).
        delta_r: regularisation margin on the norm of each mean.
        slots: more than the largest id (it must be, or images would mix); None: read
            from ``instance`` (:func:`instance_slots`, which also rejects negative ids).
    Returns:
        ``{"var", "dist", "reg"}`` scalar tensors.
    Raises:
        ValueError: shapes disagree or ids are negative.
    """
    b, e, h, w = embedding.shape
    if instance.shape != (b, h, w):
        raise ValueError(f"embedding {tuple(embedding.shape)} and instance {tuple(instance.shape)} "
                         "do not match (expected (B, E, h, w) and (B, h, w))")
    slots = instance_slots(instance) if slots is None else slots
    embedding = embedding.float()  # counts and sums in bf16 are exact only up to 256
    x = embedding.permute(0, 2, 3, 1).reshape(-1, e)                                         # (B*h*w, E)
    fg = (instance > 0).reshape(-1)
    slot = (instance + slots * torch.arange(b, device=instance.device).view(b, 1, 1)).reshape(-1)
    weight = fg.to(x.dtype)     # the unlabelled pixels (slot 0 of each image) count for nothing
    count = x.new_zeros(b * slots).index_add_(0, slot, weight)                                # (B*S,)
    present = count > 0                                                                      # background: 0
    mean = x.new_zeros(b * slots, e).index_add_(0, slot, x) / count.clamp(min=1).unsqueeze(1)  # (B*S, E)
    clusters = present.view(b, slots).sum(1)                                                 # (B,)

    pull = torch.relu(torch.linalg.vector_norm(mean.index_select(0, slot) - x, dim=1) - delta_v).square()
    pull = x.new_zeros(b * slots).index_add_(0, slot, pull * weight) / count.clamp(min=1)
    var = _mean_over_images(pull.view(b, slots).sum(1) / clusters.clamp(min=1), clusters > 0)

    reg = torch.where(present, (torch.linalg.vector_norm(mean, dim=1) - delta_r).clamp(min=0) ** 2, 0)
    reg = _mean_over_images(reg.view(b, slots).sum(1) / clusters.clamp(min=1), clusters > 0)

    means, alive = mean.view(b, slots, e), present.view(b, slots)
    pairs = alive.unsqueeze(2) & alive.unsqueeze(1) & ~torch.eye(slots, dtype=torch.bool, device=x.device)
    push = (2 * delta_d - torch.linalg.vector_norm(means.unsqueeze(2) - means.unsqueeze(1), dim=3)).clamp(min=0) ** 2
    push = torch.where(pairs, push, 0).sum((1, 2)) / (clusters * (clusters - 1)).clamp(min=1)  # ordered pairs
    return {"var": var, "dist": _mean_over_images(push, clusters > 1), "reg": reg}
