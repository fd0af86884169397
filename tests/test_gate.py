"""The per-target confidence gate: bundled with the weights, honoured by detection and evaluation alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from sirst.targets import GATED_LOGIT


class _FixedLogits(nn.Module):
    """A stand-in network: a confident target (peak logit 9) and a weak one (peak 3) on a 32x32 input."""

    size_divisor = 16
    in_channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((x.shape[0], 1, x.shape[2], x.shape[3]), -6.0)
        out[:, :, 4:7, 4:7] = 9.0
        out[:, :, 20:22, 20:22] = 3.0
        return out * self.scale


def test_detector_drops_targets_under_the_models_gate():
    from sirst.detect import Detector

    model = _FixedLogits()
    image = np.zeros((32, 32), np.float32)
    assert len(Detector(model, optimize=False).detect([image])[0]) == 2  # no gate: both targets
    model.min_peak_logit = 5.0  # what model_from_checkpoint sets from the bundled file
    (found,) = Detector(model, optimize=False).detect([image])
    assert [t.centroid for t in found] == [(5.0, 5.0)] and found[0].area == 9
    (logits,) = Detector(model, optimize=False).predict_logits([image])
    assert (logits[20:22, 20:22] == GATED_LOGIT).all()
    assert len(Detector(model, optimize=False, min_peak=0.0).detect([image])[0]) == 2  # explicit override


def test_evaluation_applies_the_same_gate():
    from sirst.evaluation import evaluate_dataset as evaluate

    mask = torch.zeros(1, 32, 32)
    mask[0, 4:7, 4:7] = 1
    item = {"image": torch.zeros(1, 32, 32), "mask": mask, "id": "a", "size": (32, 32)}
    model = _FixedLogits()
    plain = evaluate(model, [item], optimize=False, progress=False)
    model.min_peak_logit = 5.0
    gated = evaluate(model, [item], optimize=False, progress=False)
    assert plain["iou"] == 9 / 13 and gated["iou"] == 1.0  # the weak false target left the union
    assert plain["pd"] == gated["pd"] == 1.0


def test_bundled_gate_round_trips_through_the_checkpoint(tmp_path):
    from sirst.checkpoint import half_weights, model_from_checkpoint, save_checkpoint
    from sirst.models import create_model

    net = create_model("dnanet", backbone="resnet10", channel_size="one", in_channels=1, deep_supervision=False)
    ckpt = {"model_name": "dnanet", "model_kwargs": {"backbone": "resnet10", "channel_size": "one", "in_channels": 1,
                                                      "deep_supervision": False},
            "state_dict": net.state_dict(), "epoch": 3, "min_peak_logit": 7.5}
    save_checkpoint(half_weights(ckpt), tmp_path / "w.pt")
    assert model_from_checkpoint(str(tmp_path / "w.pt")).min_peak_logit == 7.5
    del ckpt["min_peak_logit"]
    save_checkpoint(half_weights(ckpt), tmp_path / "v.pt")
    assert model_from_checkpoint(str(tmp_path / "v.pt")).min_peak_logit == 0.0  # older files: no gate


def test_detect_cli_applies_and_records_the_weights_gate_and_verifier(tmp_path):
    import json

    from sirst.checkpoint import read_checkpoint
    from sirst.cli import main
    from sirst.weights import default_weights_path

    if not default_weights_path("general").is_file():
        pytest.skip("bundled weights not in this tree")
    bundled = read_checkpoint(default_weights_path("general"))
    runs = {}
    for label, extra in (("own", []), ("no-verifier", ["--no-verifier"]),
                         ("off", ["--min-peak", "0", "--no-verifier"])):
        out = tmp_path / label
        assert main(["detect", "--samples", "--out", str(out), "--quiet", "--backend", "torch", "--precision", "fp32",
                     "--no-overlays", *extra]) == 0
        # Strict JSON (no NaN or Infinity), for any tool that reads it.
        runs[label] = json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert runs["own"]["inference"]["min_peak_logit"] == bundled["min_peak_logit"] > 0  # general's bundled gate
    assert runs["own"]["inference"]["verifier_threshold"] == bundled["verifier"]["threshold"]
    assert runs["no-verifier"]["inference"]["verifier_threshold"] is None
    assert runs["no-verifier"]["inference"]["min_peak_logit"] == bundled["min_peak_logit"]
    assert runs["off"]["inference"]["min_peak_logit"] == 0.0
    assert runs["off"]["targets"] >= runs["no-verifier"]["targets"] >= runs["own"]["targets"]
