"""Post-processing of a batch: B images' eval-mode outputs -> B results.

The network runs the batch at once; the post-processing then runs each image on its own
slice of the outputs (``v[i:i + 1]``: views, no copies), so a batch result is by
construction the single-image result of the same outputs. PanoNet's grouped mean-shift
and CIAE's assignment have data-dependent sizes per image (modes, proposals), which a
padded batch would waste work on; the per-image pass keeps each image's cost its own.
"""
from __future__ import annotations

from typing import Callable, Mapping

from torch import Tensor

from panoptic_ros.types import PanopticResult


def batch_size(outputs: Mapping[str, Tensor]) -> int:
    """B of outputs that all carry the batch first.

    Raises:
        ValueError: no outputs, or outputs of different batch sizes.
    """
    sizes = {int(v.shape[0]) for v in outputs.values()}
    if len(sizes) != 1:
        raise ValueError(f"outputs disagree on the batch size: {sorted(sizes)} (have {sorted(outputs)})")
    return sizes.pop()


def image_outputs(outputs: Mapping[str, Tensor], index: int) -> dict[str, Tensor]:
    """Image ``index`` of batched outputs as a batch of one: every (B, ...) -> (1, ...) view."""
    return {name: value[index:index + 1] for name, value in outputs.items()}


def postprocess_batch(postprocess: Callable[..., PanopticResult], outputs: Mapping[str, Tensor], *,
                      config: object, label_space: object) -> list[PanopticResult]:
    """One result per image of a batch.

    Args:
        postprocess: a single-image post-processing function (``postprocess_panonet``,
            ``postprocess_ciae``), called as ``postprocess(outputs, config=, label_space=)``.
        outputs: eval-mode outputs, each (B, ...).
        config, label_space: passed on.
    Returns:
        B results at the model input resolution, in batch order.
    """
    return [postprocess(image_outputs(outputs, i), config=config, label_space=label_space)
            for i in range(batch_size(outputs))]
