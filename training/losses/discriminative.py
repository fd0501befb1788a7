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

Everything is computed for the whole batch at once: instance ids are offset per image,
renumbered with ``torch.unique`` and reduced with ``index_add`` / ``bincount``.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _per_image_mean(values: Tensor, image_of: Tensor, denom: Tensor, valid: Tensor) -> Tensor:
    """Sum ``values`` per image, divide by ``denom`` per image, average the valid images."""
    per_image = torch.zeros(denom.shape, dtype=values.dtype, device=values.device)
    per_image = per_image.index_add(0, image_of, values) / denom.clamp(min=1).to(values.dtype)
    return per_image[valid].mean()


def discriminative_loss(
    embedding: Tensor,
    instance: Tensor,
    *,
    delta_v: float = 0.25,
    delta_d: float = 1.0,
    delta_r: float = 6.0,
) -> dict[str, Tensor]:
    """Variance, distance and regularisation terms (unweighted) for a batch.

    Args:
        embedding: (B, E, h, w) pixel embeddings.
        instance: (B, h, w) int64 instance ids; 0 = not an instance (ignored), 1..N per image.
        delta_v: variance margin.
        delta_d: distance margin (means are pushed ``2 * delta_d`` apart).
        delta_r: regularisation margin on the norm of each mean.
    Returns:
        ``{"var", "dist", "reg"}`` scalar tensors.
    Raises:
        ValueError: shapes disagree or ids are negative.
    """
    b, e, h, w = embedding.shape
    if instance.shape != (b, h, w):
        raise ValueError(f"embedding {tuple(embedding.shape)} and instance {tuple(instance.shape)} "
                         "do not match (expected (B, E, h, w) and (B, h, w))")
    embedding = embedding.float()  # counts and sums in bf16 are exact only up to 256
    zero = embedding.sum() * 0.0
    ids = instance.reshape(-1)
    if bool((ids < 0).any()):
        raise ValueError("instance ids must be >= 0 (0 = no instance)")
    fg = ids > 0
    if not bool(fg.any()):
        return {"var": zero, "dist": zero, "reg": zero}
    x = embedding.permute(0, 2, 3, 1).reshape(-1, e)[fg]                         # (N, E)
    image = torch.arange(b, device=ids.device).repeat_interleave(h * w)[fg]       # (N,)
    stride = int(ids.max()) + 1
    keys, cluster = torch.unique(image * stride + ids[fg], return_inverse=True)  # K clusters
    image_of = keys // stride                                                     # (K,)
    count = torch.bincount(cluster, minlength=len(keys)).to(x.dtype)             # (K,)
    mean = torch.zeros(len(keys), e, dtype=x.dtype, device=x.device).index_add(0, cluster, x)
    mean = mean / count[:, None]                                                  # (K, E)
    clusters_per_image = torch.bincount(image_of, minlength=b)                    # (B,)

    pull = (torch.linalg.vector_norm(mean[cluster] - x, dim=1) - delta_v).clamp(min=0) ** 2
    pull = torch.zeros_like(count).index_add(0, cluster, pull) / count          # (K,)
    var = _per_image_mean(pull, image_of, clusters_per_image, clusters_per_image > 0)

    reg = (torch.linalg.vector_norm(mean, dim=1) - delta_r).clamp(min=0) ** 2    # (K,)
    reg = _per_image_mean(reg, image_of, clusters_per_image, clusters_per_image > 0)

    pairs = clusters_per_image > 1
    if not bool(pairs.any()):
        return {"var": var, "dist": zero, "reg": reg}
    same = image_of[:, None] == image_of[None, :]
    same.fill_diagonal_(False)
    a, c = same.nonzero(as_tuple=True)                                            # ordered pairs
    push = (2 * delta_d - torch.linalg.vector_norm(mean[a] - mean[c], dim=1)).clamp(min=0) ** 2
    n_pairs = clusters_per_image * (clusters_per_image - 1)
    dist = _per_image_mean(push, image_of[a], n_pairs, pairs)
    return {"var": var, "dist": dist, "reg": reg}
