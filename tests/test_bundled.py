"""What `make demo` relies on: the bundled samples (with known ground truth) and the bundled weights.

The weights test is skipped while ``src/sirst/weights/dnanet_synth.pt`` is not in the tree.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sirst.cli import main
from sirst.data.synth import SynthConfig, make_sample
from sirst.metrics import PdFaMetric
from sirst.weights import default_weights_path

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "sirst" / "samples"
KINDS = ("cloud", "city", "sea", "field")


def sample_ground_truth() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (image uint8, mask bool)`` regenerated as scripts/make_samples.py draws them."""
    out = {}
    for k, kind in enumerate(KINDS):
        rng = np.random.default_rng(np.random.SeedSequence([2026, k]))
        image, mask, _ = make_sample(rng, SynthConfig(size=256, scr=(4.0, 10.0), targets=(1, 3)), kind=kind)
        out[f"sample_{kind}"] = (image, mask)
    return out


def test_bundled_samples_are_the_synthesizer_output():
    truth = sample_ground_truth()
    assert sorted(p.stem for p in SAMPLES.glob("*.png")) == sorted(truth)
    for name, (image, mask) in truth.items():
        assert np.array_equal(np.asarray(Image.open(SAMPLES / f"{name}.png")), image), name
        assert mask.any(), name


def test_demo_without_bundled_weights_is_one_clear_line(tmp_path, monkeypatch, capsys):
    import sirst.weights

    monkeypatch.setattr(sirst.weights, "default_weights_path", lambda: tmp_path / "dnanet_synth.pt")
    assert main(["detect", "--samples", "--out", str(tmp_path / "demo"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"sirst detect: error: {tmp_path / 'dnanet_synth.pt'}: bundled weights are missing from this " \
                  "installation; pass --weights\n"


@pytest.mark.skipif(not default_weights_path().is_file(), reason="bundled weights dnanet_synth.pt not in this tree")
def test_bundled_weights_run_the_demo_and_find_the_sample_targets(tmp_path, capsys):
    assert default_weights_path().stat().st_size < 25e6  # shipped inside the package
    out = tmp_path / "demo"
    assert main(["detect", "--samples", "--out", str(out), "--quiet"]) == 0  # what `make demo` runs
    printed = capsys.readouterr().out
    assert f"detections: {out / 'detections.csv'}" in printed and f"overlays:   {out / 'overlays'}" in printed
    truth = sample_ground_truth()
    assert sorted(p.stem for p in (out / "overlays").glob("*.png")) == sorted(truth)
    rows = list(csv.DictReader(open(out / "detections.csv")))
    pdfa = PdFaMetric(0.5)
    for name, (_, mask) in truth.items():
        pred = np.asarray(Image.open(out / "masks" / f"{name}.png")) > 0
        assert sum(int(r["area"]) for r in rows if r["image"] == name) == int(pred.sum())
        pdfa.update([pred.astype(np.float32)], [mask])
    r = pdfa.compute()
    # A detector trained on synthesized data finds most of these synthesized targets, with few false alarms.
    assert r["pd"] >= 0.5, r
    assert r["fa"] < 1e-3, r
