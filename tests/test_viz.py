"""Per-image matching, size-subset Pd-Fa curves, the figures (pixels, not just files) and the HTML index."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from sirst.metrics import SIZE_SUBSETS, PdFaMetric, ROCMetric, SegmentationMetric, match_image
from sirst.viz import DETECTED_RGB, FALSE_ALARM_RGB, MISS_RGB, draw_comparison, draw_surfaces, rgb_pixel_count, write_pdfa_subsets


def _square(shape, r0, c0, side) -> np.ndarray:
    a = np.zeros(shape, bool)
    a[r0 : r0 + side, c0 : c0 + side] = True
    return a


def _subset_case():
    """Four 20x20 images: point target detected + 2 px false alarm; spot target missed; extended target
    detected; no target but a 4 px false alarm."""
    s = (20, 20)
    masks = [_square(s, 3, 3, 3), _square(s, 5, 5, 5), _square(s, 4, 4, 10), np.zeros(s, bool)]
    preds = [_square(s, 3, 3, 3), np.zeros(s, bool), _square(s, 4, 4, 10), _square(s, 15, 15, 2)]
    preds[0][15, 15:17] = True
    return [p.astype(np.float32) for p in preds], [m.astype(np.float32) for m in masks]


def test_roc_size_subsets_known_answer() -> None:
    preds, masks = _subset_case()
    roc = ROCMetric([0.5])
    roc.update(preds, masks)
    sub = roc.compute()["subsets"]
    assert list(sub) == list(SIZE_SUBSETS)
    # point: images 1 and 4 (no target belongs to every subset); point+spot adds image 2; all adds 3.
    assert (sub["point"]["num_images"], sub["point"]["num_targets"]) == (2, 1)
    assert sub["point"]["pd"] == [1.0] and sub["point"]["fa"] == [6 / 800]
    assert (sub["point+spot"]["num_images"], sub["point+spot"]["num_targets"]) == (3, 2)
    assert sub["point+spot"]["pd"] == [0.5] and sub["point+spot"]["fa"] == [6 / 1200]
    assert sub["all"]["pd"] == pytest.approx([2 / 3]) and sub["all"]["fa"] == [6 / 1600]


@pytest.mark.parametrize("protocol", ["exact", "reference"])
def test_roc_all_subset_equals_whole_curve(protocol: str) -> None:
    rng = np.random.default_rng(1)
    scores = [rng.random((24, 24)).astype(np.float32) for _ in range(6)]
    masks = [rng.random((24, 24)) < d for d in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)]
    roc = ROCMetric([0.3, 0.6, 0.9], protocol=protocol)
    roc.update(scores, masks)
    c = roc.compute()
    np.testing.assert_allclose(c["subsets"]["all"]["pd"], c["pd"])
    np.testing.assert_allclose(c["subsets"]["all"]["fa"], c["fa"])


def test_match_image_known_answer() -> None:
    mask = _square((16, 16), 2, 2, 3) | _square((16, 16), 10, 10, 2)
    pred = _square((16, 16), 2, 3, 3) | _square((16, 16), 12, 0, 2)
    m = match_image(pred, mask)
    assert m.detected.tolist() == [0] and m.missed.tolist() == [1]
    assert m.false_alarms.tolist() == [1] and m.false_alarm_pixels == 4
    assert m.intersection == 6 and m.union == 9 + 4 + 3 + 4
    assert m.iou == pytest.approx(6 / 20)
    assert np.isnan(match_image(np.zeros((4, 4)), np.zeros((4, 4))).iou)
    with pytest.raises(ValueError, match="one size"):
        match_image(np.zeros((4, 4)), np.zeros((4, 5)))


def test_match_image_sums_to_the_metric_counts() -> None:
    """The per-image matching the figures circle is the one the metrics count."""
    rng = np.random.default_rng(0)
    preds, masks = [], []
    for _ in range(20):
        masks.append(rng.random((32, 32)) < 0.04)
        # Predictions near the targets, some shifted, plus noise: many candidate conflicts.
        p = np.roll(masks[-1], rng.integers(-2, 3, 2), axis=(0, 1)) | (rng.random((32, 32)) < 0.02)
        preds.append(p)
    pdfa = PdFaMetric(0.5)
    seg = SegmentationMetric(0.5)
    pdfa.update([p.astype(np.float32) for p in preds], [m.astype(np.float32) for m in masks])
    seg.update([p.astype(np.float32) for p in preds], [m.astype(np.float32) for m in masks])
    ms = [match_image(p, m) for p, m in zip(preds, masks)]
    r = pdfa.compute()
    assert sum(len(m.pairs) for m in ms) == r["num_matched"] > 0
    assert sum(len(m.gt) for m in ms) == r["num_targets"]
    assert sum(m.false_alarm_pixels for m in ms) == r["false_alarm_pixels"] > 0
    assert sum(len(m.false_alarms) for m in ms) == r["false_alarm_targets"]
    ious = [m.iou for m in ms if not np.isnan(m.iou)]
    assert np.mean(ious) == pytest.approx(seg.compute()["niou"])


def test_comparison_figure_circles_in_three_colours(tmp_path: Path) -> None:
    preds, masks = _subset_case()
    image = np.clip(masks[0] * 0.8 + 0.1, 0, 1)
    # Method "a" detects the point target and has a false alarm; "b" misses it.
    mask = masks[0] > 0
    outputs = {"a": preds[0] > 0, "b": np.zeros_like(mask)}
    matches = {k: match_image(v, mask) for k, v in outputs.items()}
    fig = draw_comparison(image, mask, outputs, matches, tmp_path / "f.png", title="x")
    empty = {"a": np.zeros_like(mask)}
    base = draw_comparison(image, np.zeros_like(mask), empty, {"a": match_image(empty["a"], np.zeros_like(mask))},
                           tmp_path / "base.png")
    for rgb in (DETECTED_RGB, FALSE_ALARM_RGB, MISS_RGB):
        # The legend shows each colour too: circles must add clearly more pixels of it.
        assert rgb_pixel_count(fig, rgb) > rgb_pixel_count(base, rgb) + 30, rgb


def test_surfaces_and_subset_curves_written(tmp_path: Path) -> None:
    preds, masks = _subset_case()
    png = draw_surfaces(preds[2] * 0.5, masks[2], {"m": preds[2]}, tmp_path / "s.png", title="t")
    from PIL import Image

    a = np.asarray(Image.open(png).convert("RGB")).astype(int)
    # jet colours of the surface: strongly saturated pixels exist (the page is white/grey otherwise).
    assert ((a.max(-1) - a.min(-1)) > 120).sum() > 500

    roc = ROCMetric([0.25, 0.5, 0.75])
    roc.update(preds, masks)
    curves = {"m1": roc.compute(), "m2": roc.compute()}
    csv_path, png_path = write_pdfa_subsets(curves, tmp_path / "c")
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 2 * 3 * 3
    point = [r for r in rows if r["method"] == "m1" and r["subset"] == "point"]
    assert [float(r["pd"]) for r in point] == [1.0, 1.0, 1.0] and point[0]["num_images"] == "2"
    assert rgb_pixel_count(png_path, (0x1F, 0x77, 0xB4), tol=2) > 50  # the first line colour (C0)
    with pytest.raises(ValueError, match="m: curve has no size subsets"):
        write_pdfa_subsets({"m": ROCMetric([0.5], pdfa=False).compute()}, tmp_path / "c")


class _Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.in_body = False
        self.headers = 0
        self.script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tbody" and self.headers:
            self.in_body = True
        if tag == "table" and a.get("id") == "images":
            self.headers = 1
        if tag == "tr" and self.in_body and "data-id" in a:
            self.ids.append(a["data-id"])
        if tag == "script":
            self.script = True


def test_visualize_cli_writes_index_with_one_row_per_image(tmp_path: Path, capsys) -> None:
    import torch

    from sirst.checkpoint import save_checkpoint
    from sirst.cli import main
    from sirst.data.synth import synthesize
    from sirst.models import create_model

    root = synthesize(tmp_path / "d", 6, seed=2, size=64, progress=False)
    kwargs = {"channel_size": "one", "backbone": "resnet10"}
    torch.manual_seed(0)
    save_checkpoint({"model_name": "dnanet", "model_kwargs": kwargs, "state_dict": create_model("dnanet", **kwargs).state_dict()},
                    tmp_path / "w.pt")
    out = tmp_path / "viz"
    code = main(["visualize", "--weights", f"net={tmp_path / 'w.pt'}", "--methods", "tophat", "--data", str(root),
                 "--out", str(out), "--surfaces", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    ids = (root / "50_50" / "test.txt").read_text().split()
    page = _Rows()
    page.feed((out / "index.html").read_text())
    assert page.ids == ids and page.script
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == sorted(f"{i}.png" for i in ids)
    assert len(list((out / "surfaces").glob("*.png"))) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["metrics"]) == {"net", "tophat"}
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(rows) == 2 * len(ids)
    # Each figure shows a circle colour exactly when its row reports such an event (legend: < 40 px).
    for image_id in ids:
        r = [row for row in rows if row["image"] == image_id]
        for key, rgb in (("detected", DETECTED_RGB), ("missed", MISS_RGB), ("false_alarms", FALSE_ALARM_RGB)):
            events = sum(int(row[key]) for row in r)
            assert (rgb_pixel_count(out / r[0]["figure"], rgb) > 100) == (events > 0), (image_id, key)
    assert sum(int(row["detected"]) for row in rows) > 0 and sum(int(row["missed"]) for row in rows) > 0
    assert (out / "pdfa_subsets.png").stat().st_size > 10_000


def test_visualize_cli_errors(tmp_path: Path, capsys) -> None:
    from sirst.cli import main

    assert main(["visualize", "--weights", str(tmp_path / "missing.pt"), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert f"{tmp_path / 'missing.pt'}: network weights not found" in capsys.readouterr().err
    assert main(["visualize", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no method" in capsys.readouterr().err
