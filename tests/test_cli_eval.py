"""Tests of `sirst eval` (file pairing, readers, errors, JSON/CSV output)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DATA_ENV, shared_dataset
from sirst.cli import main
from sirst.metrics import SirstMetrics

NUAA = shared_dataset("NUAA-SIRST")


def _png(path: Path, a: np.ndarray) -> None:
    Image.fromarray(a).save(path)


def _write_case(tmp: Path) -> tuple[Path, Path]:
    """Three images, three prediction formats, one NUAA-style mask name."""
    pred, masks = tmp / "pred", tmp / "masks"
    pred.mkdir()
    masks.mkdir()
    # a (20x30): 8-bit PNG prediction; a 2x2 target found, plus a one-pixel false alarm.
    ma = np.zeros((20, 30), np.uint8)
    ma[2:4, 2:4] = 255
    pa = np.zeros((20, 30), np.uint8)
    pa[2:4, 2:4] = 200
    pa[15, 25] = 255
    pa[0, 29] = 127  # 127/255 < 0.5: not a target pixel
    _png(masks / "a.png", ma)
    _png(pred / "a.png", pa)
    # b (16x12): 16-bit PNG prediction, mask named b_pixels0.png; 3x4 target found as 3x3,
    # one-pixel target missed.
    mb = np.zeros((16, 12), np.uint8)
    mb[5:8, 5:9] = 255
    mb[0, 0] = 255
    pb = np.zeros((16, 12), np.uint16)
    pb[5:8, 5:8] = 40000  # 0.61
    pb[0, 0] = 30000  # 0.46: below the threshold
    _png(masks / "b_pixels0.png", mb)
    _png(pred / "b.png", pb)
    # c (7x5): .npy scores, nothing anywhere.
    _png(masks / "c.png", np.zeros((7, 5), np.uint8))
    np.save(pred / "c.npy", np.full((7, 5), 0.1, np.float32))
    return pred, masks


def test_known_answer_json_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, masks = _write_case(tmp_path)
    out_json, out_csv = tmp_path / "r.json", tmp_path / "roc.csv"
    rc = main(["eval", "--pred", str(pred), "--masks", str(masks), "--json", str(out_json),
               "--roc-csv", str(out_csv), "--roc-steps", "4", "--quiet"])
    assert rc == 0
    r = json.loads(out_json.read_text())
    assert r["num_images"] == 3 and r["num_targets"] == 3 and r["num_pixels"] == 600 + 192 + 35
    assert r["iou"] == pytest.approx(13 / 18)
    assert r["niou"] == pytest.approx((4 / 5 + 9 / 13) / 2)
    assert r["pd"] == pytest.approx(2 / 3)
    assert r["fa"] == pytest.approx(1 / 827)
    assert r["pd_extended"] is None  # NaN is written as null
    assert r["protocol"] == "exact" and r["threshold"] == 0.5
    out = capsys.readouterr().out
    assert "IoU" in out and "0.7222" in out
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["threshold", "tpr", "fpr", "precision", "pd", "fa"]
    assert [float(x[0]) for x in rows[1:]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # At 0.5 the curve agrees with the main table.
    assert float(rows[3][4]) == pytest.approx(2 / 3) and float(rows[3][5]) == pytest.approx(1 / 827)


def test_cli_equals_in_memory_reference_protocol(tmp_path: Path) -> None:
    pred, masks = _write_case(tmp_path)
    out = tmp_path / "r.json"
    assert main(["eval", "--pred", str(pred), "--masks", str(masks), "--protocol", "reference",
                 "--threshold", "0.3", "--json", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    scores = [np.asarray(Image.open(pred / "a.png"), np.float32) / 255,
              np.asarray(Image.open(pred / "b.png"), np.float32) / 65535,
              np.load(pred / "c.npy")]
    gts = [np.asarray(Image.open(masks / n)) > 0 for n in ("a.png", "b_pixels0.png", "c.png")]
    m = SirstMetrics(0.3, "reference")
    m.update(scores, gts)
    expected = m.compute()
    assert r["num_pixels"] == 3 * 256 * 256
    for k in ("iou", "niou", "pd", "fa", "num_targets"):
        assert r[k] == pytest.approx(expected[k]), k


def _err(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_missing_prediction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, masks = _write_case(tmp_path)
    (pred / "b.png").unlink()
    err = _err(capsys, ["eval", "--pred", str(pred), "--masks", str(masks), "--quiet"])
    assert str(pred / "b.png") in err and "no prediction" in err and "b_pixels0.png" in err


def test_extra_prediction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, masks = _write_case(tmp_path)
    np.save(pred / "zzz.npy", np.zeros((3, 3)))
    err = _err(capsys, ["eval", "--pred", str(pred), "--masks", str(masks), "--quiet"])
    assert str(pred / "zzz.npy") in err and "has no mask" in err


def test_ambiguous_prediction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, masks = _write_case(tmp_path)
    np.save(pred / "a.npy", np.zeros((20, 30)))
    err = _err(capsys, ["eval", "--pred", str(pred), "--masks", str(masks), "--quiet"])
    assert "'a'" in err and "also used by" in err


def test_size_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, masks = _write_case(tmp_path)
    np.save(pred / "c.npy", np.zeros((5, 7), np.float32))
    err = _err(capsys, ["eval", "--pred", str(pred), "--masks", str(masks), "--quiet"])
    assert str(pred / "c.npy") in err and "5x7 does not match mask" in err and "7x5" in err


def test_unreadable_and_unsupported_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, masks = _write_case(tmp_path)
    (pred / "a.png").write_bytes(b"not a png at all")
    err = _err(capsys, ["eval", "--pred", str(pred), "--masks", str(masks), "--quiet"])
    assert err.startswith("sirst eval: error: " + str(pred / "a.png")) and "cannot read" in err
    (pred / "a.png").unlink()
    (pred / "a.jpg").write_bytes(b"x")
    err = _err(capsys, ["eval", "--pred", str(pred), "--masks", str(masks), "--quiet"])
    assert str(pred / "a.jpg") in err and "unsupported file type" in err
    err = _err(capsys, ["eval", "--pred", str(tmp_path / "nope"), "--masks", str(masks), "--quiet"])
    assert str(tmp_path / "nope") in err and "does not exist" in err


def test_bad_masks_and_truncated_predictions_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, masks = _write_case(tmp_path)
    soft = np.zeros((20, 30), np.uint8)
    soft[2:4, 2:4] = 128  # a blurred/resized mask: not ground truth any more
    _png(masks / "a.png", soft)
    err = _err(capsys, ["eval", "--pred", str(pred), "--masks", str(masks), "--quiet"])
    assert err.startswith(f"sirst eval: error: {masks / 'a.png'}: mask is not binary")
    _png(masks / "a.png", np.zeros((20, 30), np.uint8))
    data = (masks / "c.png").read_bytes()
    (masks / "c.png").write_bytes(data[: len(data) // 2])  # valid header, truncated pixel data
    err = _err(capsys, ["eval", "--pred", str(pred), "--masks", str(masks), "--quiet"])
    assert err.startswith(f"sirst eval: error: {masks / 'c.png'}: cannot read")
    assert err.count("\n") == 1  # one line, no traceback


@pytest.mark.skipif(NUAA is None, reason=f"real NUAA-SIRST absent (set {DATA_ENV} or use ../shared/data)")
def test_nuaa_masks_as_perfect_predictions(tmp_path: Path) -> None:
    ids = (NUAA / "50_50" / "test.txt").read_text().split()[:8]
    pred, masks = tmp_path / "pred", tmp_path / "masks"
    pred.mkdir()
    masks.mkdir()
    for i in ids:
        (masks / f"{i}.png").symlink_to(NUAA / "masks" / f"{i}.png")
        (pred / f"{i}.png").symlink_to(NUAA / "masks" / f"{i}.png")
    out = tmp_path / "r.json"
    assert main(["eval", "--pred", str(pred), "--masks", str(masks), "--json", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    assert r["num_images"] == 8 and r["num_targets"] >= 8
    assert r["iou"] == 1.0 and r["niou"] == 1.0 and r["pd"] == 1.0 and r["fa"] == 0.0
