"""Panoptic id encodings as properties: ``category * 1000 + instance`` and COCO's RGB colours,
checked against the formulas written out here."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panoptic_ros.types import PanopticFormatError, Segment, encode_id, id2rgb, rgb2id

categories = st.integers(1, 2000)
instances = st.integers(0, 999)


@settings(max_examples=200, deadline=None)
@given(categories, instances)
def test_encode_id_round_trips_through_division(category, instance):
    panoptic_id = encode_id(category, instance)
    assert panoptic_id == category * 1000 + instance
    assert divmod(panoptic_id, 1000) == (category, instance)
    segment = Segment(panoptic_id, category, True, 1, (0, 0, 1, 1))
    assert segment.instance == instance
    assert segment.iscrowd == (instance == 0)


@settings(max_examples=100, deadline=None)
@given(categories, categories, instances, instances)
def test_distinct_pairs_get_distinct_ids(c1, c2, i1, i2):
    assert (encode_id(c1, i1) == encode_id(c2, i2)) == ((c1, i1) == (c2, i2))


@settings(max_examples=100, deadline=None)
@given(categories, st.one_of(st.integers(1000, 10**6), st.integers(-10**6, -1)))
def test_instances_outside_0_999_are_refused(category, instance):
    # instance 1000 of category c would otherwise be instance 0 of category c + 1
    with pytest.raises(PanopticFormatError, match=f"cannot encode category {category} instance {instance}"):
        encode_id(category, instance)


@settings(max_examples=50, deadline=None)
@given(st.integers(-10**6, 0), instances)
def test_categories_below_1_are_refused(category, instance):
    with pytest.raises(PanopticFormatError, match=f"cannot encode category {category} "):
        encode_id(category, instance)


def test_the_edges_of_the_instance_range():
    assert encode_id(26, 999) == 26999 and encode_id(26) == 26000
    for bad in (1000, -1):
        with pytest.raises(PanopticFormatError):
            encode_id(26, bad)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, (1 << 24) - 1), min_size=1, max_size=40))
def test_rgb_colours_are_r_plus_256g_plus_65536b(ids):
    ids = np.array(ids, dtype=np.int64).reshape(1, -1)
    rgb = id2rgb(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == ids.shape + (3,)
    expected = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1)
    np.testing.assert_array_equal(rgb, expected)
    decoded = rgb2id(rgb)
    assert decoded.dtype == np.int32
    np.testing.assert_array_equal(decoded, ids)


@settings(max_examples=50, deadline=None)
@given(st.one_of(st.integers(1 << 24, 1 << 40), st.integers(-(1 << 40), -1)))
def test_ids_that_do_not_fit_24_bits_are_refused(bad):
    with pytest.raises(PanopticFormatError, match=r"\[0, 2\*\*24\)"):
        id2rgb(np.array([[0, bad]], dtype=np.int64))
