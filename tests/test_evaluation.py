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
    with pytest.raises(ValueError, match="network entries are written dnanet:WEIGHTS"):
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
