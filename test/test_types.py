import re

import numpy as np
import pytest

from panoptic_ros.labels import CITYSCAPES, COCO_PANOPTIC
from panoptic_ros.types import PanopticFormatError, PanopticResult, Segment, encode_id, id2rgb, rgb2id


def _scene() -> np.ndarray:
    """(6, 8) map: road, sky, two cars (one split in two parts), a crowd of persons, void."""
    pan = np.full((6, 8), 7000, np.int32)
    pan[0, :] = 23000
    pan[2:4, 1:3] = 26001
    pan[2:4, 6:8] = 26001           # second, non-connected part of car 1
    pan[3:5, 4:6] = 26002
    pan[5, 0:2] = 24000             # crowd
    pan[5, 7] = 0                   # void
    return pan


def test_segments_from_map():
    res = PanopticResult.from_panoptic_map(_scene(), CITYSCAPES, scores={26002: 0.25})
    assert [s.id for s in res.segments] == [7000, 23000, 24000, 26001, 26002]
    car1 = res.segment(26001)
    assert (car1.area, car1.bbox, car1.is_thing, car1.iscrowd, car1.score) == (8, (1, 2, 7, 2), True, False, 1.0)
    assert res.segment(26002).score == 0.25
    crowd = res.segment(24000)
    assert crowd.iscrowd and crowd.is_thing and crowd.area == 2
    assert not res.segment(7000).iscrowd
    res.validate()


def test_semantic_and_instance_maps():
    res = PanopticResult.from_panoptic_map(_scene(), CITYSCAPES)
    sem = res.semantic_map(CITYSCAPES)
    assert sem.dtype == np.uint8
    assert sem[0, 0] == 10 and sem[1, 0] == 0 and sem[2, 1] == 13 and sem[5, 7] == 255 and sem[5, 0] == 11
    inst = res.instance_map()
    assert inst.dtype == np.uint16
    assert set(np.unique(inst).tolist()) == {0, 1, 2}
    assert inst[2, 1] == inst[2, 6] == 1 and inst[3, 4] == 2 and inst[5, 0] == 0
    assert np.array_equal(res.category_map()[2, 1:3], [26, 26])


def test_coco_round_trip_and_renumbering():
    res = PanopticResult.from_panoptic_map(_scene(), CITYSCAPES)
    png, ann = res.to_coco(image_id="a", file_name="a.png")
    assert png.shape == (6, 8, 3) and png.dtype == np.uint8
    assert {s["id"]: s["iscrowd"] for s in ann["segments_info"]}[24000] == 1
    back = PanopticResult.from_coco(png, ann["segments_info"], CITYSCAPES)
    assert np.array_equal(back.panoptic, res.panoptic)
    # arbitrary COCO ids are re-encoded; things numbered by ascending COCO id
    ids = np.array([[5, 9, 9], [3, 0, 5]], np.int32)
    info = [{"id": 9, "category_id": 1}, {"id": 3, "category_id": 1},
            {"id": 5, "category_id": 149, "iscrowd": 0, "score": 0.5}]
    r = PanopticResult.from_coco(id2rgb(ids), info, COCO_PANOPTIC)
    assert r.panoptic.tolist() == [[149000, 1002, 1002], [1001, 0, 149000]]
    assert r.segment(149000).score == 0.5


@pytest.mark.parametrize("info, message", [
    ([{"id": 5, "category_id": 149}], r"PNG ids \[9\] have no entry"),
    ([{"id": 5, "category_id": 149}, {"id": 9, "category_id": 1}, {"id": 4, "category_id": 1}],
     r"ids \[4\] do not occur in the PNG"),
    ([{"id": 5, "category_id": 149}, {"id": 9, "category_id": 12}], "category 12, unknown"),
    ([{"id": 5, "category_id": 149}, {"id": 5, "category_id": 149}], "listed twice"),
])
def test_from_coco_errors_name_the_source(info, message):
    ids = np.array([[5, 9]], np.int32)
    with pytest.raises(PanopticFormatError, match=message) as err:
        PanopticResult.from_coco(id2rgb(ids), info, COCO_PANOPTIC, source="x.png")
    assert str(err.value).startswith("x.png: ")


def test_cityscapes_round_trip():
    res = PanopticResult.from_panoptic_map(_scene(), CITYSCAPES)
    label_ids, instance_ids = res.to_cityscapes()
    assert label_ids[2, 1] == 26 and instance_ids[2, 1] == 26000 and instance_ids[3, 4] == 26001
    assert instance_ids[5, 0] == 24 and instance_ids[0, 0] == 23 and instance_ids[5, 7] == 0
    back = PanopticResult.from_cityscapes(instance_ids, CITYSCAPES)
    assert np.array_equal(back.panoptic, res.panoptic)


def test_from_cityscapes_voids_unevaluated_labels():
    ids = np.array([[29005, 1, 9, 26003, 24]], np.int32)   # caravan, ego vehicle, parking, car, crowd
    res = PanopticResult.from_cityscapes(ids, CITYSCAPES)
    assert res.panoptic.tolist() == [[0, 0, 0, 26004, 24000]]
    with pytest.raises(PanopticFormatError, match=r"label ids \[40\]"):
        PanopticResult.from_cityscapes(np.array([[40]]), CITYSCAPES)


def test_constructor_rejects_inconsistent_input():
    pan = _scene()
    with pytest.raises(PanopticFormatError, match="int32"):
        PanopticResult(pan.astype(np.int64))
    with pytest.raises(PanopticFormatError, match="does not encode category"):
        PanopticResult(pan, (Segment(26001, 24, True, 8, (1, 2, 7, 2)),))
    with pytest.raises(PanopticFormatError, match="appears twice"):
        seg = Segment(7000, 7, False, 1, (0, 0, 1, 1))
        PanopticResult(pan, (seg, seg))
    with pytest.raises(PanopticFormatError, match="without a segment"):
        PanopticResult(pan, ()).validate()
    with pytest.raises(PanopticFormatError, match="not in label space"):
        PanopticResult.from_panoptic_map(np.full((2, 2), 5000), CITYSCAPES)
    with pytest.raises(PanopticFormatError):
        encode_id(0, 1)


def test_rgb_id_round_trip():
    ids = np.array([[0, 1, 256, 65536, 200999, (1 << 24) - 1]], np.int64)
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    with pytest.raises(PanopticFormatError):
        id2rgb(np.array([[1 << 24]]))


def test_resize_is_centre_aligned():
    """Each output pixel takes the source pixel under its centre (as the training transforms
    resize targets), so non-integer ratios do not shift labels towards the top left."""
    columns = np.array([[7000, 8000, 11000, 21000, 23000]], np.int32)       # 5 stuff columns
    res = PanopticResult.from_panoptic_map(np.repeat(columns, 2, axis=0), CITYSCAPES)
    # 5 -> 3: centres 0.83, 2.5, 4.17 fall in columns 0, 2, 4 (top-left mapping: 0, 1, 3)
    assert res.resize(3, 2).panoptic[0].tolist() == [7000, 11000, 23000]
    # 5 -> 8: symmetric, like the map itself (top-left mapping: 0 0 1 1 2 3 3 4)
    assert res.resize(8, 2).panoptic[0].tolist() == [7000, 7000, 8000, 11000, 11000, 21000, 23000, 23000]
    small = PanopticResult.from_panoptic_map(np.array([[7000, 8000], [11000, 21000]], np.int32), CITYSCAPES)
    big = small.resize(6, 6).panoptic  # integer ratio: exact 3 x 3 blocks
    np.testing.assert_array_equal(big, np.kron(small.panoptic, np.ones((3, 3), np.int32)))
    # 3 -> 5: the middle output pixel takes the middle source pixel (top-left mapping: 0 0 1 1 2)
    assert res.resize(3, 2).resize(5, 2).panoptic[0].tolist() == [7000, 7000, 11000, 23000, 23000]


def test_resize_into_a_given_array_writes_the_same_map_there():
    res = PanopticResult.from_panoptic_map(_scene(), CITYSCAPES, scores={26002: 0.3})
    for width, height in ((16, 12), (res.width, res.height), (5, 3)):  # up, same size, down
        out = np.full((height, width), -1, np.int32)
        into = res.resize(width, height, out=out)
        assert into.panoptic is out
        np.testing.assert_array_equal(out, res.resize(width, height).panoptic)
        assert into.segments == res.resize(width, height).segments
    with pytest.raises(ValueError, match=r"\(12, 16\) int32"):
        res.resize(16, 12, out=np.zeros((12, 16), np.int64))
    with pytest.raises(ValueError, match=r"\(12, 16\) int32"):
        res.resize(16, 12, out=np.zeros((16, 12), np.int32))


def test_resize_into_an_array_of_the_same_size_keeps_the_segments_without_recounting():
    res = PanopticResult.from_panoptic_map(_scene(), CITYSCAPES, scores={26002: 0.3})
    out = np.zeros_like(res.panoptic)
    into = res.resize(res.width, res.height, out=out)
    assert into.panoptic is out and into.segments is res.segments   # reused, not recomputed
    into.validate()                                                  # and still exact


def test_resize_keeps_scores_and_drops_vanished():
    res = PanopticResult.from_panoptic_map(_scene(), CITYSCAPES, scores={26002: 0.3})
    big = res.resize(16, 12)
    assert big.panoptic.shape == (12, 16)
    assert big.segment(26002).score == 0.3 and big.segment(26002).area == 4 * res.segment(26002).area
    big.validate()


# ---- contracts the mutation run found unguarded (messages, dtypes, edge values) --------


def _exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_colour_image_shape_errors_say_what_they_got():
    for bad in (np.zeros((2, 2), np.uint8), np.zeros((2, 2, 4), np.uint8)):
        with pytest.raises(PanopticFormatError, match=_exactly(f"expected an (H, W, 3) colour image, got shape "
                                                               f"{bad.shape}")):
            rgb2id(bad)
    with pytest.raises(PanopticFormatError, match=_exactly("segment ids must lie in [0, 2**24) to be stored as RGB")):
        id2rgb(np.array([[-1]]))


def test_constructor_messages_name_type_dtype_and_shape():
    with pytest.raises(PanopticFormatError, match=_exactly("panoptic must be an (H, W) int32 array, got ndarray "
                                                           "float64 (2, 3)")):
        PanopticResult(np.zeros((2, 3)), ())
    with pytest.raises(PanopticFormatError, match=_exactly("panoptic must be an (H, W) int32 array, got list  ")):
        PanopticResult([[7000]], ())
    result = PanopticResult(np.full((1, 1), 7000, np.int32), [Segment(7000, 7, False, 1, (0, 0, 1, 1))])
    assert isinstance(result.segments, tuple)        # a list given is stored as a tuple
    with pytest.raises(KeyError, match="no segment with id 26001"):
        result.segment(26001)


def test_from_panoptic_map_takes_any_integer_map_as_int32():
    result = PanopticResult.from_panoptic_map(np.full((2, 2), 7000, np.int64), CITYSCAPES)
    assert result.panoptic.dtype == np.int32 and result.panoptic.flags.c_contiguous


def test_cityscapes_ids_at_the_edges_of_the_encoding():
    # 1000 is label 1 (ego vehicle, not evaluated) instance 0: VOID, not an unknown label 1000
    ids = np.array([[1000, 26000, 26998, 7]], np.int32)
    result = PanopticResult.from_cityscapes(ids, CITYSCAPES)
    assert result.panoptic.tolist() == [[0, 26001, 26999, 7000]]
    with pytest.raises(PanopticFormatError, match=_exactly("a Cityscapes instance number reaches 999; "
                                                           "cannot re-encode")):
        PanopticResult.from_cityscapes(np.array([[26999]]), CITYSCAPES)
    labels, instances = result.to_cityscapes()
    assert labels.dtype == np.uint8 and instances.dtype == np.int32
    assert instances.tolist() == [[0, 26000, 26998, 7]]


def test_error_lists_quote_the_first_ten_ids():
    first_ten = list(range(40, 50))
    with pytest.raises(PanopticFormatError, match=_exactly(f"Cityscapes label ids {first_ten} do not exist")):
        PanopticResult.from_cityscapes(np.arange(40, 52).reshape(1, 12), CITYSCAPES)
    stuff = [Segment(c * 1000, c, False, 1, (0, 0, 1, 1)) for c in (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23)]
    empty = PanopticResult(np.zeros((1, 1), np.int32), stuff)       # 11 segments absent from the map
    absent = [s.id for s in stuff][:10]
    with pytest.raises(PanopticFormatError, match=re.escape(f"segments absent from the map: {absent}") + "$"):
        empty.validate()
    row = np.array([[s.id for s in stuff]], np.int32)
    unlisted = PanopticResult(row, ())
    with pytest.raises(PanopticFormatError, match=re.escape(f"ids in the map without a segment: {absent};")):
        unlisted.validate()
    wrong_area = PanopticResult(row, [Segment(s.id, s.category_id, False, 2, (i, 0, 1, 1)) for i, s in enumerate(stuff)])
    with pytest.raises(PanopticFormatError, match=_exactly(f"area or bbox disagrees with the map for segment ids "
                                                           f"{absent}")):
        wrong_area.validate()
    with pytest.raises(PanopticFormatError, match=_exactly(f"ids {absent} of the new map are not segments of this "
                                                           f"result")):
        PanopticResult(np.zeros((1, 1), np.int32), ()).with_panoptic(row)


def test_coco_errors_without_a_source_have_no_prefix_and_quote_ten_ids():
    coco = np.arange(1, 13, dtype=np.int64).reshape(1, 12)
    info = [{"id": int(i), "category_id": 7} for i in range(1, 13)]
    with pytest.raises(PanopticFormatError, match=_exactly(f"PNG ids {list(range(1, 11))} have no entry in "
                                                           f"segments_info")):
        PanopticResult.from_coco(id2rgb(coco), [], CITYSCAPES)
    with pytest.raises(PanopticFormatError, match=_exactly(f"segments_info ids {list(range(1, 11))} do not occur "
                                                           f"in the PNG")):
        PanopticResult.from_coco(id2rgb(np.zeros((1, 1), np.int64)), info, CITYSCAPES)


def test_to_coco_entry_has_exactly_the_coco_keys():
    result = PanopticResult.from_panoptic_map(np.array([[26001, 7000]], np.int32), CITYSCAPES, scores={26001: 0.5})
    png, entry = result.to_coco(3, "f.png")
    assert entry == {"image_id": 3, "file_name": "f.png", "segments_info": [
        {"id": 7000, "category_id": 7, "iscrowd": 0, "area": 1, "bbox": [1, 0, 1, 1], "score": 1.0},
        {"id": 26001, "category_id": 26, "iscrowd": 0, "area": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]}
    np.testing.assert_array_equal(rgb2id(png), result.panoptic)


def test_instance_map_of_a_stuff_only_map_is_all_zero():
    result = PanopticResult.from_panoptic_map(np.array([[7000, 23000]], np.int32), CITYSCAPES)
    assert result.instance_map().tolist() == [[0, 0]] and result.instance_map().dtype == np.uint16


def test_resize_writes_into_a_strided_out_array():
    # OpenCV cannot write into a view with a column step: the map is copied there
    res = PanopticResult.from_panoptic_map(_scene(), CITYSCAPES)
    out = np.full((12, 32), -1, np.int32)[:, ::2]
    into = res.resize(16, 12, out=out)
    assert into.panoptic is out
    np.testing.assert_array_equal(out, res.resize(16, 12).panoptic)
