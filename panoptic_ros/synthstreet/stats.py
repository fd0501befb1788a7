"""Statistics of panoptic samples, measured from what a model sees (image + ground truth):
instances per image, identical twins, instances in several pieces, class and crowd shares.

Used by ``bench/synthstreet_stats.py`` and the SynthStreet tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from panoptic_ros.labels import LabelSpace
from panoptic_ros.sample import Sample


def pieces(mask: np.ndarray) -> int:
    """Number of 8-connected components of a boolean mask."""
    count, _ = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    return count - 1


def twin_ids(sample: Sample) -> set[int]:
    """Ids of thing instances that have an exact twin: another instance of the same class
    whose mask is the same shape moved elsewhere and whose pixels are the same colours."""
    pan, img = sample.target.panoptic, sample.image
    things = [s for s in sample.target.segments if s.is_thing and not s.iscrowd]
    crops = {}
    for s in things:
        x, y, w, h = s.bbox
        mask = pan[y:y + h, x:x + w] == s.id
        crops[s.id] = (s.category_id, mask, np.where(mask[..., None], img[y:y + h, x:x + w], 0))
    found: set[int] = set()
    for i, a in enumerate(things):
        for b in things[i + 1:]:
            ca, cb = crops[a.id], crops[b.id]
            if ca[0] == cb[0] and a.bbox[2:] == b.bbox[2:] and a.area == b.area \
                    and np.array_equal(ca[1], cb[1]) and np.array_equal(ca[2], cb[2]):
                found |= {a.id, b.id}
    return found


@dataclass
class SynthStats:
    """Running statistics over samples of one label space."""

    label_space: LabelSpace
    images: int = 0
    instances: list[int] = field(default_factory=list)
    twins: int = 0
    split: int = 0
    crowd_images: int = 0
    pixels: np.ndarray | None = None
    present: np.ndarray | None = None
    void_pixels: int = 0
    crowd_pixels: int = 0
    total_pixels: int = 0
    smallest: int | None = None

    def add(self, sample: Sample) -> None:
        n = len(self.label_space)
        if self.pixels is None:
            self.pixels, self.present = np.zeros(n, np.int64), np.zeros(n, np.int64)
        target = sample.target
        sem = target.semantic_map(self.label_space)
        counts = np.bincount(sem.ravel(), minlength=256)
        self.pixels += counts[:n]
        self.present += counts[:n] > 0
        self.void_pixels += int(counts[255])
        self.total_pixels += sem.size
        things = [s for s in target.segments if s.is_thing and not s.iscrowd]
        self.instances.append(len(things))
        self.twins += len(twin_ids(sample))
        self.split += sum(pieces(target.panoptic == s.id) > 1 for s in things)
        crowd = [s for s in target.segments if s.iscrowd]
        self.crowd_images += bool(crowd)
        self.crowd_pixels += sum(s.area for s in crowd)
        for s in things:
            self.smallest = s.area if self.smallest is None else min(self.smallest, s.area)
        self.images += 1

    def missing_classes(self) -> list[str]:
        return [c.name for c, k in zip(self.label_space.categories, self.present) if k == 0]

    def report(self) -> list[str]:
        """Printable lines."""
        inst = np.asarray(self.instances)
        total = max(int(inst.sum()), 1)
        lines = [
            f"images: {self.images}",
            f"instances per image: min {inst.min()} mean {inst.mean():.1f} max {inst.max()}; "
            f"smallest instance {self.smallest} px",
            f"instances with an identical twin: {self.twins / total:.1%} ({self.twins} of {total})",
            f"instances in several pieces (occluded apart): {self.split / total:.1%} ({self.split})",
            f"images with a crowd region: {self.crowd_images / self.images:.1%}; crowd pixels "
            f"{self.crowd_pixels / self.total_pixels:.2%}; VOID pixels {self.void_pixels / self.total_pixels:.1%}",
            f"{'class':<15}{'pixel share':>12}{'images':>9}",
        ]
        for c, px, k in zip(self.label_space.categories, self.pixels, self.present):
            lines.append(f"{c.name:<15}{px / self.total_pixels:>12.2%}{k / self.images:>9.0%}")
        return lines
