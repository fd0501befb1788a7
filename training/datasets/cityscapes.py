"""Cityscapes panoptic reader: what cityscapesscripts' ``createPanopticImgs`` writes.

``createPanopticImgs`` (``convert2panoptic``) turns every ``gtFine/<split>/<city>/
*_gtFine_instanceIds.png`` into COCO panoptic format under ``root/gtFine``::

    root/gtFine/cityscapes_panoptic_<split>.json
    root/gtFine/cityscapes_panoptic_<split>/<city>_<seq>_<frame>_gtFine_panoptic.png
    root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png   (the images)

Facts about its output this reader relies on:

* ``image_id`` is ``<city>_<seq>_<frame>``; the ``images`` entries name the image
  ``..._gtFine_leftImg8bit.png``, which is not the real file name, so the image path is
  derived from ``image_id`` instead.
* Category ids are Cityscapes label ids (road = 7, car = 26), or train ids 0..18 with
  ``--use-train-id`` (file names get a ``_trainId`` suffix; pass ``use_train_id=True``).
  ``ignoreInEval`` labels (caravan, trailer, ego vehicle, ...) are left out of the PNG
  (VOID).
* Segment ids in the PNG are the ``instanceIds`` values: ``label_id * 1000 + k`` for
  thing instances (k from 0) and ``label_id`` for stuff and crowd regions; crowd regions
  of thing classes carry ``iscrowd = 1``.

``PanopticResult.from_coco`` numbers the instances of a category 1, 2, ... in ascending
segment id, i.e. instance k of ``instanceIds`` becomes instance k + 1 whenever k runs
0..n-1 without gaps (as SynthStreet and the Cityscapes annotations write them).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from panoptic_ros.eval.coco_format import CocoFormatError, CocoImage
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.training.datasets.coco_panoptic import PanopticFolderDataset

__all__ = ["CityscapesPanoptic"]


class CityscapesPanoptic(PanopticFolderDataset):
    """Cityscapes panoptic (19 evaluated classes) as written by ``createPanopticImgs``.

    Args:
        root: the Cityscapes root holding ``gtFine/`` and ``leftImg8bit/``.
        split: ``train``, ``val`` or ``test``.
        json_path: default ``root/gtFine/cityscapes_panoptic_<split>[_trainId].json``.
        panoptic_dir: default ``root/gtFine/cityscapes_panoptic_<split>[_trainId]``.
        image_dir: default ``root/leftImg8bit/<split>`` (images lie in per-city folders).
        use_train_id: the JSON was written with ``--use-train-id`` (category ids are train
            ids 0..18; they are mapped back to label ids).
    """

    def __init__(self, root: str | Path, split: str = "train", *, json_path: str | Path | None = None,
                 panoptic_dir: str | Path | None = None, image_dir: str | Path | None = None,
                 use_train_id: bool = False):
        root = Path(root)
        stem = f"cityscapes_panoptic_{split}" + ("_trainId" if use_train_id else "")
        self.use_train_id = use_train_id
        super().__init__(
            json_path=json_path or root / "gtFine" / f"{stem}.json",
            panoptic_dir=panoptic_dir or root / "gtFine" / stem,
            image_dir=image_dir or root / "leftImg8bit" / split,
            label_space=CITYSCAPES)

    def image_path(self, entry: CocoImage) -> Path:
        """``image_dir/<city>/<image_id>_leftImg8bit.png``."""
        image_id = str(entry.image_id)
        parts = image_id.rsplit("_", 2)
        if len(parts) != 3 or not parts[0]:
            raise CocoFormatError(f"{self.json_path}: image_id {image_id!r} is not <city>_<seq>_<frame>")
        return self.image_dir / parts[0] / f"{image_id}_leftImg8bit.png"

    def prepare_entry(self, entry: CocoImage) -> CocoImage:
        """Map train-id categories back to label ids when ``use_train_id``."""
        if not self.use_train_id:
            return entry
        infos = []
        for info in entry.segments_info:
            train_id = int(info["category_id"])
            if not 0 <= train_id < len(CITYSCAPES):
                raise CocoFormatError(f"{self.json_path}: segment {info['id']} of {entry.file_name} has "
                                      f"train id {train_id}, outside 0..{len(CITYSCAPES) - 1}")
            infos.append({**info, "category_id": CITYSCAPES.ids[train_id]})
        return dataclasses.replace(entry, segments_info=infos)
