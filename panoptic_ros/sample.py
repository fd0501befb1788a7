"""The one sample type every dataset yields (SynthStreet scenes and the training readers)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from panoptic_ros.types import PanopticResult


@dataclass
class Sample:
    """One annotated image.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        target: ground-truth panoptic segmentation of the same size; crowd regions are
            thing segments with instance 0 (``Segment.iscrowd``), VOID pixels are id 0.
        image_id: dataset-unique name (used for file names and COCO ``image_id``).
    """

    image: np.ndarray
    target: PanopticResult
    image_id: str

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"{self.image_id}: image must be (H, W, 3) uint8, got "
                             f"{self.image.dtype} {self.image.shape}")
        if self.image.shape[:2] != self.target.panoptic.shape:
            raise ValueError(f"{self.image_id}: image {self.image.shape[:2]} and panoptic target "
                             f"{self.target.panoptic.shape} differ in size")
