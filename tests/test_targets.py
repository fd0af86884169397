"""Known-answer tests of sirst.targets (eight-connected clustering)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import measure

from sirst.targets import (
    Target,
    component_stats,
    components_from_rows,
    extract_targets,
    label_components,
    row_any,
    stack_components,
)


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


def _assert_same_stats(fast, full) -> None:
    np.testing.assert_array_equal(fast.area, full.area)
    np.testing.assert_array_equal(fast.centroid, full.centroid)  # exact: integer sums / area
    np.testing.assert_array_equal(fast.slice_index, full.slice_index)


def _vertical_serpentine(h: int, lines: int) -> np.ndarray:
    """One long winding component (vertical lines joined alternately at the bottom and the top)
    with few runs per row: its run graph needs many label-propagation rounds."""
    b = np.zeros((h, 2 * lines - 1), dtype=bool)
    b[:, 0::2] = True
    for k in range(lines - 1):
        b[h - 1 if k % 2 == 0 else 0, 2 * k + 1] = True
    return b


@pytest.mark.parametrize(
    "case", ["sparse", "medium", "dense_noise", "full", "serpentine", "shuffled_rows", "blocks", "width_1"]
)
def test_components_from_rows_equals_full_labelling(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every path of components_from_rows (run propagation, scipy fallback for long run chains,
    pixel labelling for noisy rows) gives exactly the components of a full ndimage labelling."""
    import sirst.targets as targets

    used: list[str] = []
    for name in ("_pixel_components", "connected_components"):
        original = getattr(targets, name)
        monkeypatch.setattr(targets, name, lambda *a, _f=original, _n=name, **k: used.append(_n) or _f(*a, **k))
    rng = np.random.default_rng(7)
    stack = {
        "sparse": rng.random((6, 40, 33)) < 0.02,
        "medium": rng.random((6, 40, 33)) < 0.08,
        "dense_noise": rng.random((3, 64, 64)) < 0.5,  # > 4 runs per row: pixel labelling
        "full": np.ones((3, 8, 10), dtype=bool),
        "serpentine": np.stack([_vertical_serpentine(50, 4)] * 2),  # > 12 propagation rounds: scipy
        "shuffled_rows": rng.random((4, 20, 17)) < 0.3,
        "blocks": rng.random((4, 20, 17)) < 0.3,
        "width_1": rng.random((3, 30, 1)) < 0.6,
    }[case]
    s, h, w = stack.shape
    labels, n = label_components(stack)
    full = component_stats(labels, n)
    ids = np.flatnonzero(stack.reshape(s * h, w).any(axis=1))
    rows = stack.reshape(s * h, w)[ids]
    if case == "shuffled_rows":
        perm = rng.permutation(ids.size)
        ids, rows = ids[perm], rows[perm]
    if case == "blocks":
        cut = ids.size // 3
        rows = [rows[:cut], rows[cut:]]
    fast = components_from_rows(ids, rows, h)
    expected_path = {"dense_noise": ["_pixel_components"], "serpentine": ["connected_components"]}.get(case, [])
    assert used == expected_path
    assert len(fast) == n > 0
    _assert_same_stats(fast, full)
    _assert_same_stats(stack_components(stack), full)


def test_components_from_rows_errors() -> None:
    assert len(components_from_rows(np.zeros(0, dtype=np.int64), np.zeros((0, 5), dtype=bool), 4)) == 0
    assert len(components_from_rows(np.array([0, 1]), np.zeros((2, 5), dtype=bool), 4)) == 0
    with pytest.raises(ValueError, match="2 row ids but 1 rows"):
        components_from_rows(np.array([0, 1]), np.ones((1, 5), dtype=bool), 4)
    with pytest.raises(ValueError, match="distinct"):
        components_from_rows(np.array([3, 1, 3]), np.ones((3, 5), dtype=bool), 4)


@pytest.mark.parametrize("w", [256, 30, 3])
def test_row_any_matches_numpy(w: int) -> None:
    """row_any's torch path (int32 view, w % 4 == 0) and its byte path agree with numpy's any."""
    rng = np.random.default_rng(w)
    b = rng.random((70, 40, w)) < 0.001
    np.testing.assert_array_equal(row_any(b), b.reshape(-1, w).any(axis=1))


def test_gate_weak_components_keeps_confident_targets_whole():
    from sirst.targets import GATED_LOGIT, gate_weak_components

    logits = np.full((2, 12, 12), -5.0, np.float32)
    logits[0, 1:4, 1:4] = [[0.5, 1, 0.5], [1, 9.0, 1], [0.5, 1, 0.5]]  # confident: kept with its weak rim
    logits[0, 8:10, 8:10] = 3.0  # weak: gated as a whole
    logits[1, 5, 5] = 3.0  # the second slice is gated on its own
    logits[1, 0, 0] = 20.0
    out = gate_weak_components(logits, 4.0)
    assert np.array_equal(out[0, 1:4, 1:4], logits[0, 1:4, 1:4])
    assert (out[0, 8:10, 8:10] == GATED_LOGIT).all() and out[1, 5, 5] == GATED_LOGIT and out[1, 0, 0] == 20.0
    mask = logits > 0
    mask[0, 8:10, 8:10] = mask[1, 5, 5] = False
    assert np.array_equal(out > 0, mask)
    assert gate_weak_components(logits, 0.0) is logits  # 0: every target kept, nothing copied
    assert gate_weak_components(logits, 25.0).max() < 0  # nothing is confident enough
    assert logits[0, 8, 8] == 3.0  # the input is never changed


def test_component_maxima_equal_scipy_and_break_ties_in_raster_order():
    from scipy import ndimage

    from sirst.targets import component_maxima, label_components

    rng = np.random.default_rng(3)
    for _ in range(5):
        values = np.round(rng.normal(size=(40, 37)), 1)  # rounded: many ties inside components
        labels, n = label_components(values > 0.8)
        index = np.arange(1, n + 1)
        peaks, pos = component_maxima(values, labels, n)
        np.testing.assert_array_equal(peaks, ndimage.maximum(values, labels, index))
        for k in range(n):  # ties: the first pixel in raster order
            r, c = np.argwhere((labels == k + 1) & (values == peaks[k]))[0]
            assert tuple(pos[k]) == (r, c)
