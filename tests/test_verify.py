"""The candidate verifier: windows, its input normalisation, gating, checkpoints and the Detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sirst.targets import GATED_LOGIT, extract_targets
from sirst.verify import CONTEXT, PAD_LOGIT, WINDOW, Verifier, _verifier_net, candidate_records, candidate_windows, verifier_input


def _verifier(bias: float, threshold: float = 0.5) -> Verifier:
    """A verifier whose output is ``bias`` for every input (last layer's weights zeroed)."""
    net = _verifier_net(4)
    with torch.no_grad():
        net[-1].weight.zero_()
        net[-1].bias.fill_(bias)
    return Verifier({"state_dict": net.state_dict(), "width": 4, "threshold": threshold})


def _scene() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((40, 50), 0.2, np.float32)
    logits = np.full((40, 50), -5.0, np.float32)
    image[10, 12] = 0.9
    logits[9:12, 11:14] = 3.0
    logits[10, 12] = 9.0  # peak of the first candidate
    logits[30:32, 45:47] = 2.0  # a second one, near the border
    logits[31, 46] = 4.0
    return image, logits


def test_windows_hold_the_peak_at_their_centre_and_pad_outside_the_frame():
    image, logits = _scene()
    w = candidate_windows(image, logits, np.array([[10, 12], [31, 46]]))
    assert w.shape == (2, 2, CONTEXT, CONTEXT)
    c = CONTEXT // 2
    assert w[0, 0, c, c] == pytest.approx(0.9) and w[0, 1, c, c] == 9.0
    assert w[1, 1, c, c] == 4.0
    # Column 46 + 4 is outside the 50-pixel frame: logits padded, image edge-replicated.
    assert w[1, 1, c, c + 4] == PAD_LOGIT and w[1, 0, c, c + 4] == pytest.approx(0.2)


def test_input_ignores_offset_and_gain_of_the_image():
    rng = np.random.default_rng(0)
    windows = rng.uniform(0.2, 0.6, (3, 2, CONTEXT, CONTEXT)).astype(np.float32)
    other = windows.copy()
    other[:, 0] = 0.5 * windows[:, 0] + 0.1
    a, b = verifier_input(windows), verifier_input(other)
    assert a.shape == (3, 3, WINDOW, WINDOW)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_gate_drops_rejected_candidates_and_keeps_accepted_ones_exactly():
    image, logits = _scene()
    assert len(extract_targets(logits > 0)) == 2
    assert _verifier(bias=5.0).gate(image, logits) is logits  # all accepted: untouched
    out = _verifier(bias=-5.0).gate(image, logits)
    assert (out[logits > 0] == GATED_LOGIT).all() and (out[logits <= 0] == logits[logits <= 0]).all()
    # At p = sigmoid(0) = 0.5 the threshold decides: rejected at 0.5, kept below it.
    assert (_verifier(0.0, threshold=0.5).gate(image, logits) > 0).sum() == 0
    assert _verifier(0.0, threshold=0.4).gate(image, logits) is logits


def test_records_label_candidates_by_the_metrics_matching():
    image, logits = _scene()
    mask = np.zeros(image.shape, bool)
    mask[9:12, 11:14] = True  # the first candidate is the target
    rec = candidate_records(image, logits, mask)
    assert [r["label"] for r in rec] == [1, 0]
    assert [r["peak_logit"] for r in rec] == [9.0, 4.0] and [r["area"] for r in rec] == [9, 4]
    assert rec[0]["patch"].shape == (2, CONTEXT, CONTEXT) and rec[0]["patch"].dtype == np.float16


def test_bundled_checkpoint_carries_the_verifier_into_the_detector(tmp_path):
    from sirst.checkpoint import half_weights, model_from_checkpoint, save_checkpoint
    from sirst.detect import Detector
    from sirst.models.registry import build_model

    model = build_model("dnanet", widths=(4, 8, 16, 32, 64), backbone="resnet10")
    ckpt = {"model_name": "dnanet", "model_kwargs": {"widths": (4, 8, 16, 32, 64), "backbone": "resnet10"},
            "state_dict": model.state_dict(), "verifier": _verifier(-5.0, threshold=0.3).state(half=False)}
    save_checkpoint(half_weights(ckpt), tmp_path / "w.pt")
    loaded = model_from_checkpoint(tmp_path / "w.pt")
    assert loaded.verifier is not None and loaded.verifier.threshold == 0.3
    assert Detector(loaded).verifier is loaded.verifier
    assert Detector(loaded, verify=False).verifier is None
    # This verifier rejects everything: no logit above 0 survives it.
    image = np.random.default_rng(1).uniform(0, 1, (32, 32)).astype(np.float32)
    (gated,) = Detector(loaded).predict_logits([image])
    (raw,) = Detector(loaded, verify=False).predict_logits([image])
    assert (gated > 0).sum() == 0 and (gated[raw <= 0] == raw[raw <= 0]).all()


def test_broken_verifier_entry_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="w.pt: its verifier entry cannot be loaded"):
        Verifier({"state_dict": {}, "width": 4, "threshold": 0.5}, where="w.pt")


def test_sure_candidates_skip_the_verifier():
    image, logits = _scene()  # peaks 9 and 4
    state = _verifier(-5.0).state(half=False)
    out = Verifier({**state, "sure_logit": 5.0}).gate(image, logits)
    # The first candidate (peak 9 > 5) is kept whole unscored; the second is rejected.
    assert (out[9:12, 11:14] == logits[9:12, 11:14]).all()
    assert (out[30:32, 45:47] == GATED_LOGIT).all()
    assert Verifier({**state, "sure_logit": 3.0}).gate(image, logits) is logits
    assert Verifier(state).state()["sure_logit"] is None


def test_lone_pixel_spike_tells_a_hot_pixel_from_a_blurred_target():
    import cv2

    from sirst.targets import label_components
    from sirst.verify import lone_pixel_spike

    image = np.full((64, 64), 0.2, np.float32)
    image[20, 20] = 0.9  # a hot pixel
    blob = np.zeros((64, 64), np.float32)
    blob[44, 44] = 1.0
    image += 0.7 * cv2.GaussianBlur(blob, (0, 0), 0.8) / cv2.GaussianBlur(blob, (0, 0), 0.8).max()  # a target
    labels, n = label_components(image > 0.3)
    spikes = lone_pixel_spike(image, labels, n)
    assert n == 2 and spikes[0] == pytest.approx(1.0) and spikes[1] < 0.6


def test_max_spike_drops_lone_pixels_even_above_the_sure_logit():
    image, logits = _scene()  # candidate 1 peaks on a lone bright pixel (0.9 on 0.2); candidate 2 sits on flat image
    state = _verifier(5.0).state(half=False)  # accepts everything it scores
    out = Verifier({**state, "sure_logit": 5.0, "max_spike": 0.8}).gate(image, logits)
    assert (out[9:12, 11:14] == GATED_LOGIT).all()  # peak logit 9 > sure 5, but a lone pixel
    assert (out[30:32, 45:47] == logits[30:32, 45:47]).all()
    assert Verifier({**state, "max_spike": 0.8}).state()["max_spike"] == 0.8
    assert Verifier(state).gate(image, logits) is logits  # no max_spike: no check
