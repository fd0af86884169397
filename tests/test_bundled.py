"""What `make demo` relies on: the bundled samples (with known ground truth) and the bundled weights.

The weights tests are skipped where the bundled ``src/sirst/weights/dnanet_*.pt`` are not in the tree.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sirst.cli import main
from sirst.data.synth import SynthConfig, make_sample
from sirst.metrics import PdFaMetric
from sirst.weights import bundled_names, default_weights_path

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

    default = sirst.weights.DEFAULT_WEIGHTS
    monkeypatch.setattr(sirst.weights, "default_weights_path", lambda name=default: tmp_path / f"dnanet_{name}.pt")
    assert main(["detect", "--samples", "--out", str(tmp_path / "demo"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"sirst detect: error: {tmp_path / f'dnanet_{default}.pt'}: bundled weights are missing from this " \
                  "installation; pass --weights\n"


HAVE_WEIGHTS = all(default_weights_path(n).is_file() for n in bundled_names())


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="bundled weights not in this tree")
def test_bundled_weights_are_lean_and_named_weights_resolve(tmp_path):
    from sirst.checkpoint import read_checkpoint

    assert sum(default_weights_path(n).stat().st_size for n in bundled_names()) <= 30e6  # the package stays lean
    for name in bundled_names():
        ckpt = read_checkpoint(name)  # a bundled name works wherever a checkpoint path does
        assert ckpt["model_name"] == "dnanet" and ckpt["epoch"] >= 1
        assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point())
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        read_checkpoint(tmp_path / "nudt")  # a path that merely ends in a bundled name is still a path


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="bundled weights not in this tree")
def test_bundled_weights_run_the_demo_and_find_the_sample_targets(tmp_path, capsys):
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
    # The default detector finds most of these synthesized targets,
    # with few false alarms.
    assert r["pd"] >= 0.5, r
    assert r["fa"] < 1e-3, r


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="bundled weights not in this tree")
def test_bundled_names_work_in_method_lists(tmp_path):
    from sirst.evaluation import parse_methods

    assert parse_methods("tophat,dnanet:nudt") == ["tophat", "dnanet:nudt"]
    with pytest.raises(FileNotFoundError, match="network weights not found"):
        parse_methods(f"dnanet:{tmp_path / 'nudt'}")
