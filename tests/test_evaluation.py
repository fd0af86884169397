"""The evaluation harness: one Method protocol, one spec parser, one scoring path for every command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sirst.checkpoint import save_checkpoint
from sirst.evaluation import (
    ClassicalMethod,
    Method,
    NetworkMethod,
    evaluate_method,
    load_samples,
    parse_method,
    parse_methods,
)
from sirst.metrics import SirstMetrics
from sirst.models import create_model


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory):
    from sirst.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("ev") / "ds", 4, seed=5, size=64, progress=False)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    kwargs = {"channel_size": "one", "backbone": "resnet10"}
    model = create_model("dnanet", **kwargs)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_checkpoint({"model_name": "dnanet", "model_kwargs": kwargs, "state_dict": model.state_dict()}, path)
    return path


def test_specs_parse_into_methods(tiny_weights) -> None:
    names = parse_methods(f"TopHat, dnanet:{tiny_weights}")
    assert names == ["tophat", f"dnanet:{tiny_weights}"]
    classical, network = (parse_method(n) for n in names)
    assert isinstance(classical, ClassicalMethod) and isinstance(network, NetworkMethod)
    assert isinstance(classical, Method) and isinstance(network, Method)
    assert network.name == f"dnanet:{tiny_weights}" and network.threshold == "0.5"
    assert parse_method("tophat", threshold=0.25).threshold == "0.25"
    with pytest.raises(ValueError, match="nope: unknown classical method; valid names: tophat"):
        parse_methods("tophat,nope")
    with pytest.raises(ValueError, match="entries with a colon are dnanet:WEIGHTS .* or preds:DIR"):
        parse_methods("acm:x.pt")
    with pytest.raises(ValueError, match="lists no method"):
        parse_methods(" , ")


@pytest.mark.parametrize("spec", ["tophat", "network"])
def test_harness_equals_scoring_each_output_by_hand(tiny_dataset, tiny_weights, spec) -> None:
    """evaluate_method is exactly SirstMetrics over method(image).pred, per image, at native size."""
    from sirst.data.io import read_image, read_mask

    method = parse_method("tophat" if spec == "tophat" else f"dnanet:{tiny_weights}")
    samples = load_samples(tiny_dataset)
    result = evaluate_method(method, samples, progress=False)
    by_hand = SirstMetrics(threshold=0.5)
    for s in samples:
        out = method(read_image(s.image))
        assert out.score.shape == out.pred.shape and out.pred.dtype == bool
        by_hand.update([out.pred.astype(np.float32)], [read_mask(s.mask)])
    expected = by_hand.compute()
    assert result.num_images == len(samples)
    for key in ("iou", "niou", "pd", "fa", "num_targets"):
        np.testing.assert_equal(result.metrics[key], expected[key])
    assert len(result.curve["thresholds"]) == len(method.curve_thresholds)


def test_visualize_and_compare_report_the_same_numbers(tiny_dataset, tmp_path, capsys) -> None:
    from sirst.cli import main

    assert main(["compare", "--methods", "tophat", "--data", str(tiny_dataset), "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert main(["visualize", "--methods", "tophat", "--data", str(tiny_dataset), "--surfaces", "0",
                 "--out", str(tmp_path / "v"), "--quiet"]) == 0
    compared = json.loads((tmp_path / "c" / "compare.json").read_text())["results"][0]["metrics"]
    shown = json.loads((tmp_path / "v" / "summary.json").read_text())["metrics"]["tophat"]
    for key in ("iou", "niou", "pd", "fa"):
        assert shown[key] == pytest.approx(compared[key], rel=1e-12)


# --------------------------------------------------------------------------------------------------
# Saved predictions as a method: preds:DIR


def _save_outputs(method, samples, folder) -> None:
    """What another tool would leave: one score map per image id (``.npy``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in samples:
        np.save(folder / f"{s.id}.npy", method(method.read(s)).score)


def test_saved_predictions_score_as_the_method_that_made_them(tiny_dataset, tmp_path) -> None:
    """A method's score maps, saved and read back as preds:DIR at the same threshold, give the method's
    own metrics under both protocols (only the time per image differs: nothing is computed)."""
    from sirst.evaluation import SavedMethod

    samples = load_samples(tiny_dataset)
    made = ClassicalMethod("tophat", threshold=0.3)
    _save_outputs(made, samples, tmp_path / "p")
    (name,) = parse_methods(f"preds:{tmp_path / 'p'}")
    saved = parse_method(name, threshold=0.3)
    assert isinstance(saved, SavedMethod) and isinstance(saved, Method)
    assert saved.name == f"preds:{tmp_path / 'p'}" and saved.kind == "saved" and saved.threshold == "0.3"
    want, got = evaluate_method(made, samples, progress=False), evaluate_method(saved, samples, progress=False)
    assert got.num_images == want.num_images == len(samples)
    for key in ("iou", "niou", "pd", "fa", "num_targets", "num_matched"):
        assert got.metrics[key] == want.metrics[key], key
        assert got.extra["reference"][key] == want.extra["reference"][key], key
    assert 0 < want.metrics["iou"] < 1  # not a trivial comparison
    assert parse_method(name).threshold == "0.5"  # 'adaptive' is Eq. 13 for classical maps; saved ones cut at 0.5


def test_eval_method_and_compare_take_saved_predictions(tiny_dataset, tmp_path, capsys) -> None:
    """The ground-truth masks saved as 8-bit PNG predictions (as `sirst detect` writes masks/) are perfect."""
    from sirst.cli import main
    from sirst.data.io import read_mask, write_png

    samples = load_samples(tiny_dataset)
    folder = tmp_path / "masks_as_preds"
    for s in samples:
        write_png(folder / f"{s.id}.png", read_mask(s.mask).astype(np.uint8) * 255)
    out = tmp_path / "out"
    assert main(["eval-method", "--method", f"preds:{folder}", "--data", str(tiny_dataset), "--out", str(out),
                 "--no-progress"]) == 0
    assert f"preds:{folder} on {len(samples)} images (threshold 0.5): IoU 100.00" in capsys.readouterr().out
    row = json.loads((out / "preds_masks_as_preds_metrics.json").read_text())["rows"][0]
    assert row["iou_x100"] == 100.0 and row["pd_x100"] == 100.0 and row["fa_x1e6"] == 0.0
    assert (out / "preds_masks_as_preds_pdfa.csv").is_file()
    assert main(["compare", "--methods", f"tophat,preds:{folder}", "--data", str(tiny_dataset), "--out",
                 str(tmp_path / "c"), "--no-progress"]) == 0
    rows = json.loads((tmp_path / "c" / "compare.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["tophat", f"preds:{folder}"] and rows[1]["iou_x100"] == 100.0


def test_saved_prediction_errors_name_the_file(tiny_dataset, tmp_path, capsys, tiny_weights) -> None:
    from sirst.cli import main
    from sirst.evaluation import SavedMethod

    samples = load_samples(tiny_dataset)
    with pytest.raises(FileNotFoundError, match="nowhere: folder of saved predictions not found"):
        parse_methods(f"tophat,preds:{tmp_path / 'nowhere'}")
    folder = tmp_path / "p"
    _save_outputs(ClassicalMethod("tophat"), samples[1:], folder)
    method = SavedMethod(folder)
    with pytest.raises(FileNotFoundError, match=f"{samples[0].id}.png: no saved prediction"):
        evaluate_method(method, samples, progress=False)
    np.save(folder / f"{samples[0].id}.npy", np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="mask size .* differs from the response map"):
        evaluate_method(method, samples, progress=False)
    np.save(folder / f"{samples[0].id}.npy", np.zeros((64, 64), np.float32))
    (folder / f"{samples[0].id}.png").write_bytes(b"")
    with pytest.raises(ValueError, match="two saved predictions"):
        evaluate_method(method, samples, progress=False)
    assert main(["eval-method", "--method", f"dnanet:{tiny_weights}", "--data", str(tiny_dataset)]) == 2
    assert "give one classical method or preds:DIR" in capsys.readouterr().err


def test_detect_outputs_score_as_the_network_itself(tmp_path) -> None:
    """`sirst detect --save-scores npy` then preds:DIR (scores or masks) gives the row of dnanet:WEIGHTS."""
    from sirst.cli import main
    from sirst.data.synth import synthesize

    samples = load_samples(synthesize(tmp_path / "ds", 8, seed=3, size=64, progress=False))
    det = tmp_path / "det"
    assert main(["detect", *(str(s.image) for s in samples), "--weights", "nuaa", "--save-scores", "npy",
                 "--precision", "fp32", "--backend", "torch", "--out", str(det), "--quiet"]) == 0
    network = evaluate_method(parse_method("dnanet:nuaa"), samples, progress=False)
    assert 0 < network.metrics["iou"] < 1 and 0 < network.metrics["pd"] < 1  # a real network, not all zeros
    for folder in ("scores", "masks"):
        saved = evaluate_method(parse_method(f"preds:{det / folder}"), samples, progress=False)
        for key in ("iou", "niou", "pd", "fa"):
            assert saved.metrics[key] == pytest.approx(network.metrics[key]), (folder, key)
