"""Detector and `sirst detect`: known answers, padding, tiling, corrupt inputs, CLI outputs."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from sirst.checkpoint import save_checkpoint
from sirst.cli import main
from sirst.data.io import read_image
from sirst.detect import Detector, run_detection, tile_starts
from sirst.models import create_model


class Passthrough(nn.Module):
    """Logits = 40 * (normalised input channel 0 - 1.5): bright pixels (> ~0.83) are targets.

    Translation-equivariant and exact, so padded and tiled runs must agree with the plain one.
    """

    size_divisor = 16

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * (x[:, :1] - 1.5)


def scene(h: int, w: int) -> np.ndarray:
    img = np.full((h, w), 0.2, np.float32)
    img[10:13, 20:23] = 1.0  # 3x3 target centred at (11, 21)
    img[30, 40] = 1.0  # single pixel at (30, 40)
    img[31, 41] = 1.0  # diagonal neighbour: the same 8-connected target
    return img


def test_known_targets_with_padding():
    det = Detector(Passthrough(), tile=0)
    img = scene(50, 70)  # not multiples of 16: padded then cropped back
    scores = det.predict_scores([img])[0]
    assert scores.shape == (50, 70)
    targets = sorted(det.detect([img])[0], key=lambda t: t.area)
    assert [t.area for t in targets] == [2, 9]
    assert targets[0].centroid == pytest.approx((30.5, 40.5))
    assert targets[1].centroid == pytest.approx((11.0, 21.0))
    assert targets[1].bbox == (10, 20, 13, 23)


def test_tiling_matches_untiled():
    img = np.random.default_rng(0).random((96, 80)).astype(np.float32)
    plain = Detector(Passthrough(), tile=0).predict_logits([img])[0]
    tiled = Detector(Passthrough(), tile=32, overlap=8, batch_size=3).predict_logits([img])[0]
    np.testing.assert_allclose(tiled, plain, atol=1e-5)
    assert tile_starts(96, 32, 8) == [0, 24, 48, 64]


def test_batched_mixed_sizes_equal_one_by_one():
    model = create_model("dnanet", channel_size="one", backbone="resnet10").eval()
    imgs = [scene(32, 48), scene(40, 60), scene(32, 48) * 0.5]
    det = Detector(model, tile=0, batch_size=4)
    together = det.predict_scores(imgs)
    for img, s in zip(imgs, together):
        np.testing.assert_allclose(det.predict_scores([img])[0], s, atol=1e-5)


def test_threshold_must_be_a_probability():
    with pytest.raises(ValueError, match="probability"):
        Detector(Passthrough(), threshold=2.0)


def test_corrupt_image_is_reported_and_the_rest_processed(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray((scene(48, 48) * 255).astype(np.uint8)).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"not a png")
    summary = run_detection([folder], tmp_path / "out", Detector(Passthrough(), tile=0), progress=False)
    assert summary.images == 1 and summary.targets == 2
    assert len(summary.errors) == 1 and "broken.png" in summary.errors[0]
    assert "broken.png" in (tmp_path / "out" / "errors.txt").read_text()
    assert "broken.png" in capsys.readouterr().err
    assert (tmp_path / "out" / "masks" / "good.png").is_file()
    assert not (tmp_path / "out" / "masks" / "broken.png").exists()


def test_cli_end_to_end_with_a_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    model = create_model("dnanet", channel_size="one", backbone="resnet10")
    with torch.no_grad():  # bias the random network so some pixels pass the threshold
        model.heads[-1].bias.fill_(-1.0)
    model.eval()
    save_checkpoint({"model_name": "dnanet", "model_kwargs": {"channel_size": "one", "backbone": "resnet10"},
                     "state_dict": model.state_dict()}, tmp_path / "w.pt")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray((scene(48, 64) * 255).astype(np.uint8)).save(folder / f"{name}.png")
    # A threshold just below the top 1% of this random network's scores: some targets, by construction.
    scores = Detector(model, tile=0).predict_scores([read_image(folder / "a.png")])[0]
    threshold = float(np.quantile(scores, 0.99))
    out = tmp_path / "out"
    code = main(["detect", str(folder), "--weights", str(tmp_path / "w.pt"), "--out", str(out), "--threshold",
                 repr(threshold), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "detections.csv" in printed and "overlays" in printed
    with open(out / "detections.csv") as fh:
        rows = list(csv.DictReader(fh))
    header = (out / "detections.csv").read_text().splitlines()[0]
    assert header == "image,target,x,y,area,bbox_x0,bbox_y0,bbox_x1,bbox_y1,peak_score,source"
    assert {r["source"] for r in rows} <= {str(folder / "a.png"), str(folder / "b.png")}
    mask = np.asarray(Image.open(out / "masks" / "a.png"))
    assert mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 255}
    overlay = np.asarray(Image.open(out / "overlays" / "a.png"))
    assert overlay.shape == (48, 64, 3)
    rows_a = [r for r in rows if r["image"] == "a"]
    assert rows_a
    assert int((mask == 255).sum()) == int((scores > threshold).sum())
    assert [int(r["target"]) for r in rows_a] == list(range(len(rows_a)))
    # The mask and the CSV describe the same components.
    assert sum(int(r["area"]) for r in rows_a) == int((mask == 255).sum())
    for r in rows_a:
        assert mask[int(r["bbox_y0"]) : int(r["bbox_y1"]), int(r["bbox_x0"]) : int(r["bbox_x1"])].any()
        assert threshold < float(r["peak_score"]) + 1e-4 <= 1.0 + 1e-4
    gray = np.round(scene(48, 64) * 255).astype(np.uint8)
    assert (overlay != np.dstack([gray] * 3)).any(axis=2).sum() > 10  # circles drawn
    assert {p.name for p in (out / "masks").iterdir()} == {"a.png", "b.png"}
    assert {p.name for p in (out / "overlays").iterdir()} == {"a.png", "b.png"}
    assert not (out / "errors.txt").exists()


def test_cli_detect_circles_targets_with_a_stub_model(tmp_path, monkeypatch):
    import sirst.cli.detect as detect_cli

    monkeypatch.setattr(detect_cli, "build_detector", lambda args: Detector(Passthrough(), tile=0))
    img = tmp_path / "x.png"
    Image.fromarray((scene(48, 64) * 255).astype(np.uint8)).save(img)
    assert main(["detect", str(img), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "o" / "detections.csv")))
    assert sorted(int(r["area"]) for r in rows) == [2, 9]
    big = next(r for r in rows if r["area"] == "9")
    assert (float(big["x"]), float(big["y"])) == (21.0, 11.0)
    assert (big["bbox_x0"], big["bbox_y0"], big["bbox_x1"], big["bbox_y1"]) == ("20", "10", "23", "13")
    overlay = np.asarray(Image.open(tmp_path / "o" / "overlays" / "x.png"))
    assert overlay[..., 0].astype(int).sum() > overlay[..., 2].astype(int).sum()  # red circles drawn


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    code = main(["detect", str(tmp_path / "none.png"), "--weights", str(tmp_path / "nope.pt"), "--out",
                 str(tmp_path / "o")])
    assert code == 2
    assert "nope.pt: checkpoint file not found" in capsys.readouterr().err


def stub_cli(monkeypatch):
    import sirst.cli.detect as detect_cli

    monkeypatch.setattr(detect_cli, "build_detector", lambda args: Detector(Passthrough(), tile=0))


def test_failed_inputs_exit_1_whether_all_or_some_failed(tmp_path, monkeypatch, capsys):
    stub_cli(monkeypatch)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    assert main(["detect", str(bad), str(tmp_path / "missing.png"), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "bad.png: cannot read image" in err and "missing.png: no such file or folder" in err
    listed = (tmp_path / "o" / "errors.txt").read_text().splitlines()
    assert len(listed) == 2 and any(line.startswith(str(bad)) for line in listed)
    good = tmp_path / "good.png"
    Image.fromarray((scene(48, 64) * 255).astype(np.uint8)).save(good)
    assert main(["detect", str(good), str(bad), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "1 image(s) done, 1 failed" in out and "1 input(s) failed" in out
    assert (tmp_path / "o" / "masks" / "good.png").is_file()


def test_video_frames_become_images(tmp_path, monkeypatch):
    cv2 = pytest.importorskip("cv2")
    stub_cli(monkeypatch)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    assert writer.isOpened()
    for k in range(3):  # a 4x4 target moving 8 px right per frame
        frame = np.full((48, 64, 3), 50, np.uint8)
        frame[16:20, 8 + 8 * k : 12 + 8 * k] = 255
        writer.write(frame)
    writer.release()
    assert main(["detect", str(video), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "o" / "detections.csv")))
    assert [r["image"] for r in rows] == ["clip_f000000", "clip_f000001", "clip_f000002"]
    for k, r in enumerate(rows):  # JPEG compression blurs edges a little, not the centroid
        assert float(r["x"]) == pytest.approx(9.5 + 8 * k, abs=0.5)
        assert float(r["y"]) == pytest.approx(17.5, abs=0.5)
    assert (tmp_path / "o" / "masks" / "clip_f000002.png").is_file()


def test_samples_flag_runs_on_bundled_images(tmp_path, monkeypatch, capsys):
    stub_cli(monkeypatch)
    assert main(["detect", "--samples", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    masks = sorted(p.name for p in (tmp_path / "demo" / "masks").iterdir())
    assert masks == ["sample_city.png", "sample_cloud.png", "sample_field.png", "sample_sea.png"]
    assert np.asarray(Image.open(tmp_path / "demo" / "overlays" / "sample_sea.png")).shape == (256, 256, 3)
    out = capsys.readouterr().out
    assert "4 image(s)" in out and str(tmp_path / "demo" / "detections.csv") in out


def test_missing_bundled_weights_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import sirst.weights

    default = sirst.weights.DEFAULT_WEIGHTS
    monkeypatch.setattr(sirst.weights, "default_weights_path", lambda name=default: tmp_path / f"dnanet_{name}.pt")
    img = tmp_path / "x.png"
    Image.fromarray((scene(48, 48) * 255).astype(np.uint8)).save(img)
    assert main(["detect", str(img), "--out", str(tmp_path / "o")]) == 2
    assert f"dnanet_{default}.pt: bundled weights are missing" in capsys.readouterr().err


def test_duplicate_stems_get_unique_ids(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        Image.fromarray((scene(32, 48) * 255).astype(np.uint8)).save(tmp_path / "in" / sub / "img.png")
    summary = run_detection([tmp_path / "in"], tmp_path / "o", Detector(Passthrough(), tile=0), progress=False)
    assert summary.images == 2
    assert sorted(p.name for p in (tmp_path / "o" / "masks").iterdir()) == ["img.png", "img_2.png"]


class ShapeRecorder(Passthrough):
    """Passthrough that records the shape of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return super().forward(x)


def test_batches_are_bounded_by_pixels_and_large_frames_tiled():
    model = ShapeRecorder()
    det = Detector(model, batch_size=8, max_pixels=64 * 64, overlap=16, optimize=False)
    assert det.tile == 64  # automatic tiles: the largest square multiple of 16 within max_pixels
    small = [scene(48, 48)[:32, :32] for _ in range(6)]  # 4 fit one pass by pixels, though batch_size is 8
    big = scene(100, 150)  # over max_pixels: tiled
    scores = det.predict_scores([*small, big])
    assert all(n * h * w <= 64 * 64 for n, _, h, w in model.shapes)
    assert [s[0] for s in model.shapes if s[2:] == (32, 32)] == [4, 2]
    assert any(s[2:] == (64, 64) for s in model.shapes)
    np.testing.assert_allclose(scores[-1], Detector(Passthrough(), tile=0).predict_scores([big])[0], atol=1e-6)


def test_run_detection_loads_groups_bounded_by_pixels(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(5):
        Image.fromarray((scene(48, 64) * 255).astype(np.uint8)).save(folder / f"f{k}.png")
    model = ShapeRecorder()
    summary = run_detection([folder], tmp_path / "o", Detector(model, max_pixels=2 * 48 * 64, overlap=16, optimize=False),
                            progress=False)
    assert summary.images == 5 and summary.failed == 0
    assert [s[0] for s in model.shapes] == [2, 2, 1]


def test_tiled_frames_agree_with_whole_frames_within_the_documented_tolerance():
    """DNANet's channel attention pools over the whole input, so tiles cannot match a whole frame
    bit for bit. The documented tolerance (sirst.detect.detector): at least 85% of the targets agree both
    ways (centroids < 3 px apart) and at most 20% of the mask pixels differ, here with small 256-pixel
    tiles on a cluttered 384x384 mosaic (the automatic tiles are 720 pixels and agree better). Measured
    with the `nuaa` weights, for which the tolerance is documented (`general`: 4 of 5 targets, 8 of 275
    pixels, also in the docstring)."""
    from sirst.targets import extract_targets
    from sirst.models import create_model

    samples = [read_image(p) for p in sorted((Path(__file__).resolve().parents[1] / "src/sirst/samples").glob("*.png"))]
    big = np.block([[samples[0], samples[1]], [samples[2], samples[3]]])[:384, :384]
    model = create_model("dnanet", pretrained="nuaa")
    whole = Detector(model, tile=0).predict_scores([big])[0]
    tiled = Detector(model, tile=256, overlap=64).predict_scores([big])[0]
    ta, tb = extract_targets(whole > 0.5, whole), extract_targets(tiled > 0.5, tiled)

    def found(t, others):
        return any(np.hypot(t.centroid[0] - u.centroid[0], t.centroid[1] - u.centroid[1]) < 3 for u in others)

    assert len(ta) >= 5
    assert sum(found(t, tb) for t in ta) >= 0.85 * len(ta)
    assert sum(found(t, ta) for t in tb) >= 0.85 * len(tb)
    assert ((whole > 0.5) ^ (tiled > 0.5)).sum() <= 0.2 * (whole > 0.5).sum()
    # Frames within max_pixels run whole: exactly what `sirst eval` computes on the full frame.
    np.testing.assert_array_equal(Detector(model).predict_scores([big])[0], whole)
