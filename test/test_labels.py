import numpy as np
import pytest
from cityscapesscripts.helpers import labels as cs

from panoptic_ros.labels import (
    CITYSCAPES, CITYSCAPES_LABELS, COCO_PANOPTIC, IGNORE_INDEX, cityscapes_label_id_to_train_index,
    get_label_space)


def test_cityscapes_table_equals_official_scripts():
    official = {lab.id: lab for lab in cs.labels if lab.id >= 0}
    assert len(CITYSCAPES_LABELS) == 34 == len(official)
    for ours in CITYSCAPES_LABELS:
        ref = official[ours.id]
        assert (ours.name, ours.train_id, ours.category, ours.category_id, ours.has_instances,
                ours.ignore_in_eval, ours.color) == (
            ref.name, ref.trainId, ref.category, ref.categoryId, ref.hasInstances,
            ref.ignoreInEval, tuple(ref.color))


def test_cityscapes_label_space_is_the_19_train_classes():
    assert len(CITYSCAPES) == 19
    assert [c.name for c in CITYSCAPES.categories[:3]] == ["road", "sidewalk", "building"]
    assert CITYSCAPES.thing_ids == {24, 25, 26, 27, 28, 31, 32, 33}
    assert CITYSCAPES.train_index(26) == 13
    assert CITYSCAPES.category_id_of_train_index[13] == 26
    assert CITYSCAPES.category_id_of_train_index[IGNORE_INDEX] == 0
    lut = cityscapes_label_id_to_train_index()
    assert lut[7] == 0 and lut[33] == 18 and lut[29] == IGNORE_INDEX and lut[0] == IGNORE_INDEX


def test_coco_panoptic_has_80_things_53_stuff():
    assert len(COCO_PANOPTIC) == 133
    assert len(COCO_PANOPTIC.thing_ids) == 80 and len(COCO_PANOPTIC.stuff_ids) == 53
    assert max(COCO_PANOPTIC.thing_ids) == 90 and min(COCO_PANOPTIC.stuff_ids) == 92
    assert COCO_PANOPTIC.category(200).name == "rug-merged"
    assert COCO_PANOPTIC.train_index_of_category_id[1] == 0
    assert COCO_PANOPTIC.train_index_of_category_id[12] == IGNORE_INDEX  # not a panoptic id


def test_lookups_and_errors():
    assert get_label_space("coco") is COCO_PANOPTIC
    with pytest.raises(ValueError, match="unknown label space 'kitti'"):
        get_label_space("kitti")
    with pytest.raises(KeyError, match="category id 5"):
        CITYSCAPES.category(5)
    assert 26 in CITYSCAPES and 5 not in CITYSCAPES
    cats = CITYSCAPES.coco_categories()
    assert cats[13] == {"id": 26, "name": "car", "isthing": 1, "color": [0, 0, 142], "supercategory": "vehicle"}
    assert np.array_equal(CITYSCAPES.palette[13], [0, 0, 142])
