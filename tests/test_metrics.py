"""Known-answer and property tests of sirst.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sirst.metrics import (
    PdFaMetric,
    ROCMetric,
    SegmentationMetric,
    SirstMetrics,
    match_targets,
    prepare_batch,
    size_class,
)

N256 = 256 * 256


def _blank(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((h, w), dtype=np.float32), np.zeros((h, w), dtype=bool)


def _assert_dicts_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float) and math.isnan(a[k]):
            assert math.isnan(b[k]), k
        else:
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-15), k


def _assert_curves_equal(a: dict | None, b: dict | None) -> None:
    assert a is not None and b is not None and a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):  # the size-subset curves
            _assert_curves_equal(a[k], b[k])
            continue
        np.testing.assert_allclose(np.asarray(a[k], dtype=float), np.asarray(b[k], dtype=float), rtol=1e-12, err_msg=k)


def _mixed_size_batch() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Three non-square images of different sizes; answers worked out by hand in the test."""
    # A: 20x30, a 2x2 target found exactly, plus a one-pixel false alarm.
    sa, ma = _blank(20, 30)
    ma[2:4, 2:4] = True
    sa[2:4, 2:4] = 0.9
    sa[15, 25] = 0.9
    # B: 16x12, a 3x4 "spot" target found as 3x3 (centroid 0.5 px away), and a one-pixel target
    # at the corner that is missed entirely.
    sb, mb = _blank(16, 12)
    mb[5:8, 5:9] = True
    mb[0, 0] = True
    sb[5:8, 5:8] = 0.8
    # C: 7x5, no target and no prediction.
    sc, mc = _blank(7, 5)
    return [sa, sb, sc], [ma, mb, mc]


def test_mixed_sizes_known_answer() -> None:
    scores, masks = _mixed_size_batch()
    m = SirstMetrics(threshold=0.5)
    m.update(scores, masks)
    r = m.compute()
    # I: A 4, B 9; U: A 5, B 13; C has an empty union and is skipped by nIoU.
    assert r["iou"] == pytest.approx(13 / 18)
    assert r["niou"] == pytest.approx((4 / 5 + 9 / 13) / 2)
    assert r["precision"] == pytest.approx(13 / 14)
    assert r["recall"] == pytest.approx(13 / 17)
    assert r["f1"] == pytest.approx(26 / 31)
    assert r["num_images"] == 3
    assert r["num_targets"] == 3
    assert r["num_pixels"] == 600 + 192 + 35
    assert r["pd"] == pytest.approx(2 / 3)
    assert r["fa"] == pytest.approx(1 / 827)
    assert r["false_alarm_targets"] == 1
    # Sizes: A's 4 px and B's 1 px are points (one found), B's 12 px is a spot (found).
    assert r["num_targets_point"] == 2 and r["pd_point"] == pytest.approx(0.5)
    assert r["num_targets_spot"] == 1 and r["pd_spot"] == pytest.approx(1.0)
    assert r["num_targets_extended"] == 0 and math.isnan(r["pd_extended"])


def test_batch_size_and_layout_invariance() -> None:
    scores, masks = _mixed_size_batch()
    whole = SirstMetrics()
    whole.update(scores, masks)
    one_by_one = SirstMetrics()
    for s, m in zip(scores, masks):
        one_by_one.update(s[None, None], m[None, None])  # (1, 1, H, W) arrays
    _assert_dicts_equal(whole.compute(), one_by_one.compute())


def _reference_image() -> tuple[np.ndarray, np.ndarray]:
    """256x256 (no resizing in the reference protocol): one target found, two false alarms."""
    s, m = _blank(256, 256)
    m[10:12, 10:12] = True
    s[10:12, 10:12] = 1.0
    s[100:102, 100:102] = 1.0  # false alarm with the SAME area (4) as the matched component
    s[200, 200:203] = 1.0  # false alarm of area 3
    return s, m


def test_false_alarm_with_matched_area_exact_vs_reference() -> None:
    s, m = _reference_image()
    exact = PdFaMetric(0.5, "exact")
    exact.update([s], [m])
    ref = PdFaMetric(0.5, "reference")
    ref.update([s], [m])
    e, r = exact.compute(), ref.compute()
    assert e["pd"] == r["pd"] == 1.0
    assert e["false_alarm_pixels"] == 4 + 3
    assert e["fa"] == pytest.approx(7 / N256)
    # The public code drops the area-4 false alarm because a matched component also has area 4.
    assert r["false_alarm_pixels"] == 3
    assert r["fa"] == pytest.approx(3 / N256)


def test_two_predictions_near_one_target() -> None:
    s, m = _blank(256, 256)
    m[10, 10] = True
    s[8, 10] = 1.0  # centroid 2 px away, first in label (raster) order
    s[10, 10:12] = 1.0  # centroid (10, 10.5): 0.5 px away, area 2
    exact = PdFaMetric(0.5, "exact")
    exact.update([s], [m])
    ref = PdFaMetric(0.5, "reference")
    ref.update([s], [m])
    e, r = exact.compute(), ref.compute()
    assert e["pd"] == r["pd"] == 1.0
    assert e["num_matched"] == r["num_matched"] == 1
    # Exact: the closer component is matched and the 1-px one is the false alarm.
    assert e["false_alarm_pixels"] == 1 and e["false_alarm_targets"] == 1
    # Reference: first come in label order, so the 1-px component is matched.
    assert r["false_alarm_pixels"] == 2 and r["false_alarm_targets"] == 1


def test_one_to_one_matching_maximises_matches() -> None:
    s, m = _blank(256, 256)
    m[10, 10] = m[10, 14] = True
    s[9, 12] = 1.0  # 2.24 px from both targets, first in label order
    s[10, 8] = 1.0  # 2 px from the first target only
    exact = PdFaMetric(0.5, "exact")
    exact.update([s], [m])
    ref = PdFaMetric(0.5, "reference")
    ref.update([s], [m])
    assert exact.compute()["pd"] == 1.0
    assert exact.compute()["false_alarm_pixels"] == 0
    # Greedy: the first target takes the shared component, the second is left without one.
    assert ref.compute()["pd"] == 0.5


def test_match_targets_function() -> None:
    gt = np.array([[10.0, 10.0], [10.0, 14.0]])
    pr = np.array([[9.0, 12.0], [10.0, 8.0], [50.0, 50.0]])
    exact = {tuple(p) for p in match_targets(gt, pr, "exact").tolist()}
    assert exact == {(0, 1), (1, 0)}
    assert {tuple(p) for p in match_targets(gt, pr, "reference").tolist()} == {(0, 0)}
    # Distance exactly 3 is not a match (strictly below 3).
    assert match_targets(np.array([[0.0, 0.0]]), np.array([[3.0, 0.0]])).shape == (0, 2)


def test_diagonal_target_is_one_target() -> None:
    s, m = _blank(9, 13)
    m[3, 3] = m[4, 4] = True
    s[3, 3] = s[4, 4] = 1.0
    p = PdFaMetric()
    p.update([s], [m])
    r = p.compute()
    assert r["num_targets"] == 1 and r["num_pred_targets"] == 1 and r["pd"] == 1.0 and r["fa"] == 0.0


def test_image_without_targets_and_missed_target() -> None:
    s0, m0 = _blank(256, 256)  # nothing at all
    s1, m1 = _blank(256, 256)
    m1[50:53, 50:53] = True  # missed entirely: no prediction anywhere
    for protocol in ("exact", "reference"):
        met = SirstMetrics(0.5, protocol)
        met.update(np.stack([s0, s1]), np.stack([m0, m1]))
        r = met.compute()
        assert r["num_targets"] == 1 and r["pd"] == 0.0 and r["fa"] == 0.0
        assert r["iou"] == 0.0
        # Empty-union image: skipped by the exact nIoU, counted as 0 by the reference one.
        assert r["niou"] == 0.0
    e = SegmentationMetric(0.5, "exact")
    e.update([s0], [m0])
    assert math.isnan(e.compute()["niou"]) and math.isnan(e.compute()["iou"])
    s2, m2 = _blank(256, 256)
    m2[0, 0] = True
    s2[0, 0] = 1.0
    for protocol, expected in (("exact", 1.0), ("reference", 0.5)):
        seg = SegmentationMetric(0.5, protocol)
        seg.update([s0, s2], [m0, m2])
        assert seg.compute()["niou"] == pytest.approx(expected)


def test_no_targets_pd_is_nan() -> None:
    s, m = _blank(8, 8)
    s[2, 2] = 1.0
    p = PdFaMetric()
    p.update([s], [m])
    r = p.compute()
    assert math.isnan(r["pd"]) and r["fa"] == pytest.approx(1 / 64)



def test_size_class_boundaries() -> None:
    np.testing.assert_array_equal(size_class(np.array([1, 9, 10, 81, 82])), [0, 0, 1, 1, 2])


def test_roc_known_answer() -> None:
    # Target pixels score 0.9 and 0.3, background 0.6 and 0.1 (and zeros).
    s, m = _blank(4, 5)
    m[0, 0] = m[0, 1] = True
    s[0, 0], s[0, 1], s[3, 3], s[3, 4] = 0.9, 0.3, 0.6, 0.1
    roc = ROCMetric(thresholds=[0.0, 0.2, 0.5, 0.95])
    roc.update([s], [m])
    r = roc.compute()
    np.testing.assert_allclose(r["tpr"], [1.0, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(r["fpr"], [2 / 18, 1 / 18, 1 / 18, 0.0])
    # Pd-Fa: two targets? No: the mask pixels (0,0),(0,1) touch, one target, centroid (0, 0.5).
    np.testing.assert_allclose(r["pd"], [1.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(r["fa"], [2 / 20, 1 / 20, 1 / 20, 0.0])


@pytest.mark.parametrize("protocol", ["exact", "reference"])
def test_pdfa_curve_equals_single_threshold_runs(protocol: str) -> None:
    rng = np.random.default_rng(3)
    scores = [rng.random((12, 17)).astype(np.float32) for _ in range(3)]
    masks = [rng.random((12, 17)) > 0.8 for _ in range(3)]
    th = [0.3, 0.6, 0.85]
    roc = ROCMetric(th, protocol)
    roc.update(scores, masks)
    curve = roc.compute()
    for k, t in enumerate(th):
        p = PdFaMetric(t, protocol)
        p.update(scores, masks)
        assert curve["pd"][k] == pytest.approx(p.compute()["pd"])
        assert curve["fa"][k] == pytest.approx(p.compute()["fa"])
        if protocol == "exact":
            seg = SegmentationMetric(t, "exact")
            seg.update(scores, masks)
            assert curve["tpr"][k] == pytest.approx(seg.compute()["recall"])
            assert curve["precision"][k] == pytest.approx(seg.compute()["precision"])


def _public_reference(preds: list[np.ndarray], labels: list[np.ndarray]) -> tuple[float, float, float]:
    """The public DNANet PD_FA/mIoU loop (per image, skimage label + regionprops, greedy Python
    matching, area-value list test): Pd/Fa from the bench's literal re-statement of it, IoU summed."""
    from sirst.bench import public_style_pd_fa

    pd, fa = public_style_pd_fa([p.astype(np.float32) for p in preds], labels, 0.5)
    inter = sum(int((p & lab).sum()) for p, lab in zip(preds, labels))
    union = sum(int((p | lab).sum()) for p, lab in zip(preds, labels))
    return pd, fa, inter / union


def _clustered_scene(seed: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """256x256 scenes that trigger the public code's quirks: targets in pairs 4 px apart sharing
    candidate predictions, extra components near targets, and clutter of the same small areas."""
    rng = np.random.default_rng(seed)
    preds, labels, scores = [], [], []
    for _ in range(6):
        lab = np.zeros((256, 256), dtype=bool)
        pred = rng.random((256, 256)) > 0.997
        for r, c in rng.integers(8, 240, size=(6, 2)):
            h, w = rng.integers(1, 3, size=2)
            lab[r : r + h, c : c + w] = True
            if rng.random() < 0.5:
                lab[r, c + 4] = True
            dr, dc = rng.integers(-1, 2, size=2)
            pred[r + dr : r + dr + h, c + dc + 1 : c + dc + w + 1] = True
            if rng.random() < 0.5:
                pred[r - 2, c + 2] = True
        preds.append(pred)
        labels.append(lab)
        scores.append(np.where(pred, 0.7, 0.2).astype(np.float32))
    return preds, labels, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_protocol_matches_public_loop(seed: int) -> None:
    preds, labels, scores = _clustered_scene(seed)
    pd_ref, fa_ref, iou_ref = _public_reference(preds, labels)
    m = SirstMetrics(0.5, "reference")
    m.update(scores[:4], labels[:4])
    m.update(scores[4:], labels[4:])
    r = m.compute()
    assert r["pd"] == pytest.approx(pd_ref)
    assert r["fa"] == pytest.approx(fa_ref)
    assert r["iou"] == pytest.approx(iou_ref)
    # The scenes do exercise the quirks: the exact protocol finds more and counts more false alarms.
    e = SirstMetrics(0.5, "exact")
    e.update(scores, labels)
    assert e.compute()["pd"] > r["pd"] and e.compute()["fa"] > 10 * r["fa"]


def test_reference_protocol_resizes_to_256() -> None:
    s, m = _blank(100, 160)
    m[40:60, 70:90] = True
    s[40:60, 70:90] = 0.9
    groups = prepare_batch([s], [m], "reference")
    assert len(groups) == 1 and groups[0].masks.shape == (1, 256, 256)
    pil_mask = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((256, 256), Image.NEAREST)) > 0
    np.testing.assert_array_equal(groups[0].masks[0], pil_mask)
    ref = SirstMetrics(0.5, "reference")
    ref.update([s], [m])
    r = ref.compute()
    assert r["num_pixels"] == N256 and r["pd"] == 1.0
    assert r["num_targets_extended"] == 1


def test_input_errors() -> None:
    met = SirstMetrics()
    with pytest.raises(ValueError, match="does not match"):
        met.update([np.zeros((4, 5))], [np.zeros((5, 4))])
    with pytest.raises(ValueError, match="2 score maps but 1 masks"):
        met.update([np.zeros((4, 5))] * 2, [np.zeros((4, 5))])
    with pytest.raises(ValueError, match="NaN"):
        met.update([np.full((4, 5), np.nan)], [np.zeros((4, 5))])
    with pytest.raises(ValueError, match="protocol"):
        SirstMetrics(protocol="paper")  # type: ignore[arg-type]


def test_torch_tensors_accepted() -> None:
    torch = pytest.importorskip("torch")
    scores, masks = _mixed_size_batch()
    a = SirstMetrics()
    a.update([torch.from_numpy(x) for x in scores], [torch.from_numpy(x.astype(np.float32)) for x in masks])
    b = SirstMetrics()
    b.update(scores, masks)
    _assert_dicts_equal(a.compute(), b.compute())


# --------------------------------------------------------------------------------------------------
# Properties: order of images, batch split and shard merging do not change anything.


@st.composite
def _datasets(draw: st.DrawFn) -> tuple[list[np.ndarray], list[np.ndarray], list[int], list[int]]:
    n = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scores, masks = [], []
    for _ in range(n):
        h, w = draw(st.integers(3, 14)), draw(st.integers(3, 14))
        density = draw(st.sampled_from([0.0, 0.1, 0.3]))
        masks.append(rng.random((h, w)) < density)
        scores.append(rng.random((h, w)).astype(np.float32))
    perm = draw(st.permutations(list(range(n))))
    cuts = sorted(draw(st.lists(st.integers(1, n - 1), max_size=3, unique=True)))
    return scores, masks, list(perm), cuts


def _run(scores: list, masks: list, protocol: str, cuts: list[int] | None = None) -> SirstMetrics:
    met = SirstMetrics(0.5, protocol, roc_thresholds=[0.25, 0.5, 0.75])
    bounds = [0, *(cuts or []), len(scores)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        met.update(scores[a:b], masks[a:b])
    return met


@settings(max_examples=30, deadline=None)
@given(data=_datasets(), protocol=st.sampled_from(["exact", "reference"]))
def test_order_batch_and_shard_invariance(data: tuple, protocol: str) -> None:
    scores, masks, perm, cuts = data
    base = _run(scores, masks, protocol)
    expected = base.compute()
    permuted = _run([scores[i] for i in perm], [masks[i] for i in perm], protocol, cuts)
    _assert_dicts_equal(expected, permuted.compute())
    _assert_curves_equal(base.curves(), permuted.curves())
    # Two shards merged equal one accumulator.
    k = max(1, len(scores) // 2)
    shard_a = _run(scores[:k], masks[:k], protocol)
    shard_b = _run(scores[k:], masks[k:], protocol)
    shard_a.merge_state(shard_b.state())
    _assert_dicts_equal(expected, shard_a.compute())
    _assert_curves_equal(shard_a.curves(), base.curves())
    sa, sb = shard_a.state(), base.state()
    for part in sa:
        for key in sa[part]:
            np.testing.assert_allclose(sa[part][key], sb[part][key], err_msg=f"{part}.{key}")


def test_reset_and_merge_errors() -> None:
    scores, masks = _mixed_size_batch()
    met = SirstMetrics()
    met.update(scores, masks)
    met.reset()
    assert met.compute()["num_images"] == 0
    other = SirstMetrics(roc_thresholds=[0.5])
    with pytest.raises(ValueError, match="merge_state"):
        met.merge_state(other.state())


def test_single_nan_pixel_is_reported_for_every_dtype_path() -> None:
    """The NaN check rides on the row maxima (torch for float32/64, numpy for float16)."""
    for dtype in (np.float32, np.float64, np.float16):
        scores = np.zeros((3, 256, 256), dtype=dtype)
        scores[2, 200, 17] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            SirstMetrics(0.5, "reference").update(scores, np.zeros((3, 256, 256), dtype=bool))


@pytest.mark.parametrize("protocol", ["exact", "reference"])
def test_kd_tree_candidates_equal_brute_force(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above _MAX_BRUTE_PAIRS same-slice pairs the candidates come from a k-d tree: same results."""
    import sirst.metrics.matching as metrics

    preds, labels, scores = _clustered_scene(3)
    thresholds = [0.1, 0.5, 0.8]
    brute = ROCMetric(thresholds, protocol)
    brute.update(scores, labels)
    monkeypatch.setattr(metrics, "_MAX_BRUTE_PAIRS", 0)
    tree = ROCMetric(thresholds, protocol)
    tree.update(scores, labels)
    np.testing.assert_equal(tree.compute(), brute.compute())  # NaN == NaN here
    assert max(brute.compute()["pd"]) > 0.5  # the scenes do match targets


def test_scores_in_every_float_dtype_give_the_same_counts() -> None:
    preds, labels, scores = _clustered_scene(4)
    results = []
    for dtype in (np.float16, np.float32, np.float64):
        m = SirstMetrics(0.5, "exact")
        m.update([s.astype(dtype) for s in scores], labels)
        results.append(m.compute())
    np.testing.assert_equal(results[0], results[1])  # NaN == NaN here
    np.testing.assert_equal(results[2], results[1])


@pytest.mark.parametrize("w", [64, 13])
def test_row_counts_match_count_nonzero(w: int) -> None:
    from sirst.metrics.batch import _row_counts

    b = np.random.default_rng(w).random((37, w)) < 0.3
    np.testing.assert_array_equal(_row_counts(b), np.count_nonzero(b, axis=1))
    np.testing.assert_array_equal(_row_counts(b[::2]), np.count_nonzero(b[::2], axis=1))  # non-contiguous
