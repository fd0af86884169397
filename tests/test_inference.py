"""Detector and `sirst detect`: known answers, padding, tiling, corrupt inputs, CLI outputs."""

import csv

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from sirst.checkpoint import save_checkpoint
from sirst.cli import main
from sirst.inference import Detector, run_detection, tile_starts
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
    model = create_model("dnanet", channel_size="one", backbone="resnet10")
    with torch.no_grad():  # make the network fire on bright pixels: a known, non-trivial output
        model.heads[-1].bias.fill_(-1.0)
    save_checkpoint({"model_name": "dnanet", "model_kwargs": {"channel_size": "one", "backbone": "resnet10"},
                     "state_dict": model.state_dict()}, tmp_path / "w.pt")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray((scene(48, 64) * 255).astype(np.uint8)).save(folder / f"{name}.png")
    out = tmp_path / "out"
    code = main(["detect", str(folder), "--weights", str(tmp_path / "w.pt"), "--out", str(out), "--threshold",
                 "0.3", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "detections.csv" in printed and "overlays" in printed
    with open(out / "detections.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0].keys()) if rows else True
    header = (out / "detections.csv").read_text().splitlines()[0]
    assert header == "image,target,x,y,area,bbox_x0,bbox_y0,bbox_x1,bbox_y1,peak_score"
    mask = np.asarray(Image.open(out / "masks" / "a.png"))
    assert mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 255}
    overlay = np.asarray(Image.open(out / "overlays" / "a.png"))
    assert overlay.shape == (48, 64, 3)
    n_targets = sum(1 for r in rows if r["image"] == "a")
    gray = np.round(scene(48, 64) * 255).astype(np.uint8)
    differs = (overlay != np.dstack([gray] * 3)).any()
    assert differs == (n_targets > 0)


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


def test_missing_input_only_fails(tmp_path, capsys):
    code = main(["detect", str(tmp_path / "none.png"), "--weights", str(tmp_path / "nope.pt"), "--out",
                 str(tmp_path / "o")])
    assert code == 2
    assert "nope.pt: checkpoint file not found" in capsys.readouterr().err
