"""Known-answer tests of sirst.targets (eight-connected clustering)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import measure

from sirst.targets import Target, component_stats, extract_targets, label_components, stack_components


def test_diagonal_pixels_are_one_target() -> None:
    b = np.zeros((5, 7), dtype=bool)
    b[1, 1] = True
    b[2, 2] = True  # touches (1, 1) only by a corner
    b[3, 5] = True  # isolated
    targets = extract_targets(b)
    assert len(targets) == 2
    assert targets[0] == Target(centroid=(1.5, 1.5), area=2, bbox=(1, 1, 3, 3), peak=1.0, peak_pos=(1, 1))
    assert targets[1].centroid == (3.0, 5.0)
    assert targets[1].area == 1
    assert targets[1].bbox == (3, 5, 4, 6)


def test_peak_and_centroid_with_scores() -> None:
    b = np.zeros((6, 9), dtype=bool)
    b[1:3, 2:5] = True  # 2x3 block, centroid (1.5, 3)
    b[5, 0] = True
    s = np.zeros((6, 9), dtype=np.float32)
    s[b] = 0.6
    s[2, 4] = 0.9
    s[5, 0] = 0.7
    t = extract_targets(b, s)
    assert [x.area for x in t] == [6, 1]
    assert t[0].centroid == (1.5, 3.0)
    assert t[0].bbox == (1, 2, 3, 5)
    assert t[0].peak == pytest.approx(0.9)
    assert t[0].peak_pos == (2, 4)
    assert t[1].peak == pytest.approx(0.7)
    assert t[1].peak_pos == (5, 0)


def test_empty_map_has_no_targets() -> None:
    assert extract_targets(np.zeros((4, 3), dtype=bool)) == []


def test_shape_checks() -> None:
    with pytest.raises(ValueError, match="does not match"):
        extract_targets(np.zeros((4, 3), dtype=bool), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        extract_targets(np.zeros((2, 4, 3), dtype=bool))


def test_matches_skimage_regionprops_on_random_maps() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        b = rng.random((23, 31)) > 0.7
        labels, n = label_components(b)
        ref = measure.label(b, connectivity=2)
        # Same components, same (raster) order.
        assert n == ref.max()
        np.testing.assert_array_equal(labels, ref)
        props = measure.regionprops(ref)
        stats = component_stats(labels, n)
        np.testing.assert_allclose(stats.centroid, [p.centroid for p in props])
        np.testing.assert_array_equal(stats.area, [p.area for p in props])
        targets = extract_targets(b)
        assert [t.bbox for t in targets] == [tuple(p.bbox) for p in props]


def test_stack_is_labelled_slice_by_slice() -> None:
    stack = np.zeros((3, 4, 4), dtype=bool)
    stack[0, 1, 1] = True
    stack[1, 1, 1] = True  # same position in the next slice: must stay a separate component
    stack[2, 0, 0] = stack[2, 1, 1] = True  # diagonal inside one slice: one component
    labels, n = label_components(stack)
    assert n == 3
    stats = component_stats(labels, n)
    np.testing.assert_array_equal(stats.slice_index, [0, 1, 2])
    np.testing.assert_array_equal(stats.area, [1, 1, 2])
    np.testing.assert_allclose(stats.centroid, [[1, 1], [1, 1], [0.5, 0.5]])


def test_stack_components_equals_full_labelling() -> None:
    rng = np.random.default_rng(1)
    for density in (0.02, 0.2, 0.6):
        stack = rng.random((5, 9, 11)) < density
        stack[1, -1, :] = True  # last row of a slice above a first row of the next: must not join
        stack[2, 0, :] = True
        labels, n = label_components(stack)
        full = component_stats(labels, n)
        fast = stack_components(stack)
        assert len(fast) == n
        np.testing.assert_array_equal(fast.area, full.area)
        np.testing.assert_allclose(fast.centroid, full.centroid)
        np.testing.assert_array_equal(fast.slice_index, full.slice_index)
    assert len(stack_components(np.zeros((3, 4, 4), dtype=bool))) == 0
