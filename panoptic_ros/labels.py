"""Label spaces: the Cityscapes and COCO panoptic categories, one source of truth.

A :class:`LabelSpace` lists the *evaluated* categories of a dataset in model output order
(the "train index" ``0..C-1``). Category ids are the dataset's official ids (Cityscapes
label ids, COCO panoptic category ids); they are what panoptic ids encode
(``category_id * LABEL_DIVISOR + instance``) and what the evaluator reports. Train
indices are what networks predict and what the ``semantic`` mono8 image carries
(``IGNORE_INDEX`` = void).

The tables are facts from the Cityscapes scripts (``labels.py``) and the COCO panoptic
API (``panoptic_coco_categories.json``); the tests check them against the installed
``cityscapesscripts``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import numpy as np

IGNORE_INDEX = 255
"""Train index (and mono8 semantic value) of VOID pixels."""

Color = tuple[int, int, int]


@dataclass(frozen=True)
class Category:
    """One evaluated category.

    Attributes:
        id: official category id (Cityscapes label id, COCO panoptic id), > 0.
        name: official name.
        is_thing: countable objects with instances (vs. amorphous stuff).
        color: RGB display colour.
        supercategory: the dataset's grouping (Cityscapes "category", COCO supercategory).
    """

    id: int
    name: str
    is_thing: bool
    color: Color
    supercategory: str = ""


@dataclass(frozen=True)
class CityscapesLabel:
    """One row of the full Cityscapes label table (34 label ids)."""

    name: str
    id: int
    train_id: int
    category: str
    category_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: Color


class LabelSpace:
    """An ordered set of evaluated categories with vectorised id lookups.

    Args:
        name: short name (``cityscapes``, ``coco``).
        categories: the evaluated categories in train-index order.
    """

    def __init__(self, name: str, categories: Iterable[Category]):
        self.name = name
        self.categories: tuple[Category, ...] = tuple(categories)
        ids = [c.id for c in self.categories]
        if len(set(ids)) != len(ids) or min(ids) <= 0:
            raise ValueError(f"label space {name!r}: category ids must be unique and > 0")
        self._index = {c.id: i for i, c in enumerate(self.categories)}

    def __repr__(self) -> str:
        return f"LabelSpace({self.name!r}, {len(self)} categories)"

    def __len__(self) -> int:
        return len(self.categories)

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def category(self, category_id: int) -> Category:
        """The category with this official id (KeyError names the id if unknown)."""
        try:
            return self.categories[self._index[int(category_id)]]
        except KeyError:
            raise KeyError(f"category id {category_id} is not in label space {self.name!r}") from None

    def __contains__(self, category_id: object) -> bool:
        return isinstance(category_id, (int, np.integer)) and int(category_id) in self._index

    def train_index(self, category_id: int) -> int:
        """Train index of an official category id."""
        self.category(category_id)
        return self._index[int(category_id)]

    @cached_property
    def ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.categories)

    @cached_property
    def thing_ids(self) -> frozenset[int]:
        return frozenset(c.id for c in self.categories if c.is_thing)

    @cached_property
    def stuff_ids(self) -> frozenset[int]:
        return frozenset(c.id for c in self.categories if not c.is_thing)

    @cached_property
    def thing_train_indices(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.categories) if c.is_thing)

    @cached_property
    def stuff_train_indices(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.categories) if not c.is_thing)

    @cached_property
    def category_id_of_train_index(self) -> np.ndarray:
        """(256,) int32 lookup: train index -> category id; 0 (void) for IGNORE_INDEX."""
        lut = np.zeros(256, dtype=np.int32)
        lut[: len(self)] = self.ids
        return lut

    @cached_property
    def train_index_of_category_id(self) -> np.ndarray:
        """(max_id + 1,) uint8 lookup: category id -> train index; IGNORE_INDEX elsewhere."""
        lut = np.full(max(self.ids) + 1, IGNORE_INDEX, dtype=np.uint8)
        lut[list(self.ids)] = np.arange(len(self), dtype=np.uint8)
        return lut

    @cached_property
    def is_thing_of_category_id(self) -> np.ndarray:
        """(max_id + 1,) bool lookup: category id -> is a thing class."""
        lut = np.zeros(max(self.ids) + 1, dtype=bool)
        lut[list(self.thing_ids)] = True
        return lut

    @cached_property
    def palette(self) -> np.ndarray:
        """(256, 3) uint8 colours indexed by train index (black for the rest)."""
        pal = np.zeros((256, 3), dtype=np.uint8)
        pal[: len(self)] = [c.color for c in self.categories]
        return pal

    def coco_categories(self) -> list[dict]:
        """Categories in the COCO panoptic JSON form (``id, name, isthing, color, supercategory``)."""
        return [
            {"id": c.id, "name": c.name, "isthing": int(c.is_thing), "color": list(c.color),
             "supercategory": c.supercategory}
            for c in self.categories
        ]


# name, id, trainId, category, catId, hasInstances, ignoreInEval, color
CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = tuple(CityscapesLabel(*row) for row in (
    ("unlabeled", 0, 255, "void", 0, False, True, (0, 0, 0)),
    ("ego vehicle", 1, 255, "void", 0, False, True, (0, 0, 0)),
    ("rectification border", 2, 255, "void", 0, False, True, (0, 0, 0)),
    ("out of roi", 3, 255, "void", 0, False, True, (0, 0, 0)),
    ("static", 4, 255, "void", 0, False, True, (0, 0, 0)),
    ("dynamic", 5, 255, "void", 0, False, True, (111, 74, 0)),
    ("ground", 6, 255, "void", 0, False, True, (81, 0, 81)),
    ("road", 7, 0, "flat", 1, False, False, (128, 64, 128)),
    ("sidewalk", 8, 1, "flat", 1, False, False, (244, 35, 232)),
    ("parking", 9, 255, "flat", 1, False, True, (250, 170, 160)),
    ("rail track", 10, 255, "flat", 1, False, True, (230, 150, 140)),
    ("building", 11, 2, "construction", 2, False, False, (70, 70, 70)),
    ("wall", 12, 3, "construction", 2, False, False, (102, 102, 156)),
    ("fence", 13, 4, "construction", 2, False, False, (190, 153, 153)),
    ("guard rail", 14, 255, "construction", 2, False, True, (180, 165, 180)),
    ("bridge", 15, 255, "construction", 2, False, True, (150, 100, 100)),
    ("tunnel", 16, 255, "construction", 2, False, True, (150, 120, 90)),
    ("pole", 17, 5, "object", 3, False, False, (153, 153, 153)),
    ("polegroup", 18, 255, "object", 3, False, True, (153, 153, 153)),
    ("traffic light", 19, 6, "object", 3, False, False, (250, 170, 30)),
    ("traffic sign", 20, 7, "object", 3, False, False, (220, 220, 0)),
    ("vegetation", 21, 8, "nature", 4, False, False, (107, 142, 35)),
    ("terrain", 22, 9, "nature", 4, False, False, (152, 251, 152)),
    ("sky", 23, 10, "sky", 5, False, False, (70, 130, 180)),
    ("person", 24, 11, "human", 6, True, False, (220, 20, 60)),
    ("rider", 25, 12, "human", 6, True, False, (255, 0, 0)),
    ("car", 26, 13, "vehicle", 7, True, False, (0, 0, 142)),
    ("truck", 27, 14, "vehicle", 7, True, False, (0, 0, 70)),
    ("bus", 28, 15, "vehicle", 7, True, False, (0, 60, 100)),
    ("caravan", 29, 255, "vehicle", 7, True, True, (0, 0, 90)),
    ("trailer", 30, 255, "vehicle", 7, True, True, (0, 0, 110)),
    ("train", 31, 16, "vehicle", 7, True, False, (0, 80, 100)),
    ("motorcycle", 32, 17, "vehicle", 7, True, False, (0, 0, 230)),
    ("bicycle", 33, 18, "vehicle", 7, True, False, (119, 11, 32)),
))

CITYSCAPES_LABEL_BY_ID: dict[int, CityscapesLabel] = {lab.id: lab for lab in CITYSCAPES_LABELS}

CITYSCAPES = LabelSpace("cityscapes", (
    Category(lab.id, lab.name, lab.has_instances, lab.color, lab.category)
    for lab in sorted(CITYSCAPES_LABELS, key=lambda lab: lab.train_id)
    if not lab.ignore_in_eval
))
"""The 19 evaluated Cityscapes classes, train ids 0..18, ids = Cityscapes label ids."""


def cityscapes_label_id_to_train_index() -> np.ndarray:
    """(256,) uint8 lookup from any Cityscapes label id (0..33) to its train index (255 = void)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for lab in CITYSCAPES_LABELS:
        if not lab.ignore_in_eval:
            lut[lab.id] = lab.train_id
    return lut


# id, name, isthing, color, supercategory
_COCO_ROWS = (
    (1, "person", 1, (220, 20, 60), "person"),
    (2, "bicycle", 1, (119, 11, 32), "vehicle"),
    (3, "car", 1, (0, 0, 142), "vehicle"),
    (4, "motorcycle", 1, (0, 0, 230), "vehicle"),
    (5, "airplane", 1, (106, 0, 228), "vehicle"),
    (6, "bus", 1, (0, 60, 100), "vehicle"),
    (7, "train", 1, (0, 80, 100), "vehicle"),
    (8, "truck", 1, (0, 0, 70), "vehicle"),
    (9, "boat", 1, (0, 0, 192), "vehicle"),
    (10, "traffic light", 1, (250, 170, 30), "outdoor"),
    (11, "fire hydrant", 1, (100, 170, 30), "outdoor"),
    (13, "stop sign", 1, (220, 220, 0), "outdoor"),
    (14, "parking meter", 1, (175, 116, 175), "outdoor"),
    (15, "bench", 1, (250, 0, 30), "outdoor"),
    (16, "bird", 1, (165, 42, 42), "animal"),
    (17, "cat", 1, (255, 77, 255), "animal"),
    (18, "dog", 1, (0, 226, 252), "animal"),
    (19, "horse", 1, (182, 182, 255), "animal"),
    (20, "sheep", 1, (0, 82, 0), "animal"),
    (21, "cow", 1, (120, 166, 157), "animal"),
    (22, "elephant", 1, (110, 76, 0), "animal"),
    (23, "bear", 1, (174, 57, 255), "animal"),
    (24, "zebra", 1, (199, 100, 0), "animal"),
    (25, "giraffe", 1, (72, 0, 118), "animal"),
    (27, "backpack", 1, (255, 179, 240), "accessory"),
    (28, "umbrella", 1, (0, 125, 92), "accessory"),
    (31, "handbag", 1, (209, 0, 151), "accessory"),
    (32, "tie", 1, (188, 208, 182), "accessory"),
    (33, "suitcase", 1, (0, 220, 176), "accessory"),
    (34, "frisbee", 1, (255, 99, 164), "sports"),
    (35, "skis", 1, (92, 0, 73), "sports"),
    (36, "snowboard", 1, (133, 129, 255), "sports"),
    (37, "sports ball", 1, (78, 180, 255), "sports"),
    (38, "kite", 1, (0, 228, 0), "sports"),
    (39, "baseball bat", 1, (174, 255, 243), "sports"),
    (40, "baseball glove", 1, (45, 89, 255), "sports"),
    (41, "skateboard", 1, (134, 134, 103), "sports"),
    (42, "surfboard", 1, (145, 148, 174), "sports"),
    (43, "tennis racket", 1, (255, 208, 186), "sports"),
    (44, "bottle", 1, (197, 226, 255), "kitchen"),
    (46, "wine glass", 1, (171, 134, 1), "kitchen"),
    (47, "cup", 1, (109, 63, 54), "kitchen"),
    (48, "fork", 1, (207, 138, 255), "kitchen"),
    (49, "knife", 1, (151, 0, 95), "kitchen"),
    (50, "spoon", 1, (9, 80, 61), "kitchen"),
    (51, "bowl", 1, (84, 105, 51), "kitchen"),
    (52, "banana", 1, (74, 65, 105), "food"),
    (53, "apple", 1, (166, 196, 102), "food"),
    (54, "sandwich", 1, (208, 195, 210), "food"),
    (55, "orange", 1, (255, 109, 65), "food"),
    (56, "broccoli", 1, (0, 143, 149), "food"),
    (57, "carrot", 1, (179, 0, 194), "food"),
    (58, "hot dog", 1, (209, 99, 106), "food"),
    (59, "pizza", 1, (5, 121, 0), "food"),
    (60, "donut", 1, (227, 255, 205), "food"),
    (61, "cake", 1, (147, 186, 208), "food"),
    (62, "chair", 1, (153, 69, 1), "furniture"),
    (63, "couch", 1, (3, 95, 161), "furniture"),
    (64, "potted plant", 1, (163, 255, 0), "furniture"),
    (65, "bed", 1, (119, 0, 170), "furniture"),
    (67, "dining table", 1, (0, 182, 199), "furniture"),
    (70, "toilet", 1, (0, 165, 120), "furniture"),
    (72, "tv", 1, (183, 130, 88), "electronic"),
    (73, "laptop", 1, (95, 32, 0), "electronic"),
    (74, "mouse", 1, (130, 114, 135), "electronic"),
    (75, "remote", 1, (110, 129, 133), "electronic"),
    (76, "keyboard", 1, (166, 74, 118), "electronic"),
    (77, "cell phone", 1, (219, 142, 185), "electronic"),
    (78, "microwave", 1, (79, 210, 114), "appliance"),
    (79, "oven", 1, (178, 90, 62), "appliance"),
    (80, "toaster", 1, (65, 70, 15), "appliance"),
    (81, "sink", 1, (127, 167, 115), "appliance"),
    (82, "refrigerator", 1, (59, 105, 106), "appliance"),
    (84, "book", 1, (142, 108, 45), "indoor"),
    (85, "clock", 1, (196, 172, 0), "indoor"),
    (86, "vase", 1, (95, 54, 80), "indoor"),
    (87, "scissors", 1, (128, 76, 255), "indoor"),
    (88, "teddy bear", 1, (201, 57, 1), "indoor"),
    (89, "hair drier", 1, (246, 0, 122), "indoor"),
    (90, "toothbrush", 1, (191, 162, 208), "indoor"),
    (92, "banner", 0, (255, 255, 128), "textile"),
    (93, "blanket", 0, (147, 211, 203), "textile"),
    (95, "bridge", 0, (150, 100, 100), "building"),
    (100, "cardboard", 0, (168, 171, 172), "raw-material"),
    (107, "counter", 0, (146, 112, 198), "furniture-stuff"),
    (109, "curtain", 0, (210, 170, 100), "textile"),
    (112, "door-stuff", 0, (92, 136, 89), "furniture-stuff"),
    (118, "floor-wood", 0, (218, 88, 184), "floor"),
    (119, "flower", 0, (241, 129, 0), "plant"),
    (122, "fruit", 0, (217, 17, 255), "food-stuff"),
    (125, "gravel", 0, (124, 74, 181), "ground"),
    (128, "house", 0, (70, 70, 70), "building"),
    (130, "light", 0, (255, 228, 255), "furniture-stuff"),
    (133, "mirror-stuff", 0, (154, 208, 0), "furniture-stuff"),
    (138, "net", 0, (193, 0, 92), "structural"),
    (141, "pillow", 0, (76, 91, 113), "textile"),
    (144, "platform", 0, (255, 180, 195), "ground"),
    (145, "playingfield", 0, (106, 154, 176), "ground"),
    (147, "railroad", 0, (230, 150, 140), "ground"),
    (148, "river", 0, (60, 143, 255), "water"),
    (149, "road", 0, (128, 64, 128), "ground"),
    (151, "roof", 0, (92, 82, 55), "building"),
    (154, "sand", 0, (254, 212, 124), "ground"),
    (155, "sea", 0, (73, 77, 174), "water"),
    (156, "shelf", 0, (255, 160, 98), "furniture-stuff"),
    (159, "snow", 0, (255, 255, 255), "ground"),
    (161, "stairs", 0, (104, 84, 109), "furniture-stuff"),
    (166, "tent", 0, (169, 164, 131), "building"),
    (168, "towel", 0, (225, 199, 255), "textile"),
    (171, "wall-brick", 0, (137, 54, 74), "wall"),
    (175, "wall-stone", 0, (135, 158, 223), "wall"),
    (176, "wall-tile", 0, (7, 246, 231), "wall"),
    (177, "wall-wood", 0, (107, 255, 200), "wall"),
    (178, "water-other", 0, (58, 41, 149), "water"),
    (180, "window-blind", 0, (183, 121, 142), "window"),
    (181, "window-other", 0, (255, 73, 97), "window"),
    (184, "tree-merged", 0, (107, 142, 35), "plant"),
    (185, "fence-merged", 0, (190, 153, 153), "structural"),
    (186, "ceiling-merged", 0, (146, 139, 141), "ceiling"),
    (187, "sky-other-merged", 0, (70, 130, 180), "sky"),
    (188, "cabinet-merged", 0, (134, 199, 156), "furniture-stuff"),
    (189, "table-merged", 0, (209, 226, 140), "furniture-stuff"),
    (190, "floor-other-merged", 0, (96, 36, 108), "floor"),
    (191, "pavement-merged", 0, (96, 96, 96), "ground"),
    (192, "mountain-merged", 0, (64, 170, 64), "solid"),
    (193, "grass-merged", 0, (152, 251, 152), "plant"),
    (194, "dirt-merged", 0, (208, 229, 228), "ground"),
    (195, "paper-merged", 0, (206, 186, 171), "raw-material"),
    (196, "food-other-merged", 0, (152, 161, 64), "food-stuff"),
    (197, "building-other-merged", 0, (116, 112, 0), "building"),
    (198, "rock-merged", 0, (0, 114, 143), "solid"),
    (199, "wall-other-merged", 0, (102, 102, 156), "wall"),
    (200, "rug-merged", 0, (250, 141, 255), "textile"),
)

COCO_PANOPTIC = LabelSpace("coco", (
    Category(cid, name, bool(isthing), color, sup) for cid, name, isthing, color, sup in _COCO_ROWS
))
"""The 133 COCO panoptic categories (80 things, 53 stuff), in official id order."""

LABEL_SPACES: dict[str, LabelSpace] = {"cityscapes": CITYSCAPES, "coco": COCO_PANOPTIC}


def get_label_space(name: str) -> LabelSpace:
    """The label space called ``name`` (``cityscapes`` or ``coco``)."""
    try:
        return LABEL_SPACES[name]
    except KeyError:
        raise ValueError(f"unknown label space {name!r}; choose one of {sorted(LABEL_SPACES)}") from None
