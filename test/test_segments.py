"""segment_stats: areas and boxes from horizontal runs, against a brute-force reference."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panoptic_ros import types
from panoptic_ros.segments import segment_stats


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_segment_stats_equal_brute_force(h, w, seed):
    rng = np.random.default_rng(seed)
    pan = rng.choice(np.array([0, 7000, 26001, 26002, 24000]), size=(h, w)).astype(np.int32)
    ids, areas, bboxes = segment_stats(pan)
    assert ids.dtype == areas.dtype == bboxes.dtype == np.int64   # as documented: counts, not floats
    expected = [i for i in np.unique(pan).tolist() if i != 0]
    assert ids.tolist() == expected
    for i, area, bbox in zip(ids, areas, bboxes):
        ys, xs = np.nonzero(pan == i)
        assert area == len(ys)
        assert bbox.tolist() == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_rejects_empty_and_non_2d_maps():
    with pytest.raises(types.PanopticFormatError, match="non-empty 2-D"):
        segment_stats(np.zeros((0, 4), np.int32))
    with pytest.raises(types.PanopticFormatError, match="non-empty 2-D"):
        segment_stats(np.zeros((2, 2, 2), np.int32))
