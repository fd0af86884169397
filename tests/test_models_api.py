"""The model base and the registry's pretrained tags (create_model(..., pretrained=TAG), list_models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sirst.checkpoint import model_from_checkpoint
from sirst.models import SirstModel, create_model, list_models, main_output, pad_to_multiple, unwrap
from sirst.models import registry
from sirst.weights import bundled_names, default_weights_path

ROOT = Path(__file__).resolve().parents[1]
HAVE_WEIGHTS = all(default_weights_path(n).is_file() for n in bundled_names())


@pytest.mark.parametrize(("name", "kwargs"), [
    ("dnanet", {"channel_size": "one", "backbone": "resnet10"}),
    ("dnanet_wo_dnim", {"channel_size": "one"}),
    ("acm", {}),
    ("alcnet", {}),
    ("mdvsfa", {"width": 4}),
])
def test_registered_networks_share_the_base(name: str, kwargs: dict) -> None:
    model = create_model(name, **kwargs)
    assert isinstance(model, SirstModel)
    x = torch.randn(2, 3, 32, 48)
    model.eval()
    with torch.no_grad():
        expected = torch.sigmoid(main_output(model(x)))
    torch.testing.assert_close(model.predict(x), expected)


def test_predict_pads_any_size_and_restores_the_mode() -> None:
    model = create_model("dnanet", channel_size="one", backbone="resnet10").train()
    x = torch.randn(1, 3, 30, 37)
    probs = model.predict(x)
    assert probs.shape == (1, 1, 30, 37) and model.training
    padded, size = pad_to_multiple(x, 16)
    model.eval()
    with torch.no_grad():
        manual = torch.sigmoid(model(padded)[..., : size[0], : size[1]])
    torch.testing.assert_close(probs, manual)


def test_main_output_and_unwrap() -> None:
    a, b = torch.zeros(1), torch.ones(1)
    assert main_output([a, b]) is b and main_output(a) is a
    model = create_model("acm")
    assert unwrap(model) is model


def test_a_constructor_must_build_a_sirst_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._MODELS, "plain", lambda: torch.nn.Conv2d(3, 1, 1))
    with pytest.raises(TypeError, match="not a sirst.models.SirstModel"):
        create_model("plain")


def test_unknown_names_and_tags_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'dnanat'\. Did you mean 'dnanet'\?"):
        create_model("dnanat", pretrained="nuaa")
    with pytest.raises(ValueError, match=r"dnanet: no pretrained weights tagged 'nuab'; tags of dnanet: general, nuaa, nudt"):
        create_model("dnanet", pretrained="nuab")
    with pytest.raises(ValueError, match="tags of acm: none"):
        create_model("acm", pretrained="nuaa")
    with pytest.raises(ValueError, match="fixes the architecture; drop backbone"):
        create_model("dnanet", pretrained="nuaa", backbone="resnet10")


def test_pretrained_tags_carry_the_model_card_figures() -> None:
    tags = list_models(pretrained=True)
    assert [t.tag for t in tags] == bundled_names() and tags[0].default
    for t in tags:
        assert t.model == "dnanet" and t.spec == f"dnanet:{t.tag}" and t.trained_on
        for dataset, iou in t.test_iou.items():
            card = json.loads((ROOT / "docs" / "model_card_results" / f"{t.tag}_{dataset}_exact.json").read_text())
            assert iou == card["iou"], (t.tag, dataset)
        assert f"trained on {' + '.join(t.trained_on)}" in str(t)
    assert "dnanet" in list_models() and all(isinstance(n, str) for n in list_models())


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="bundled weights not in this tree")
def test_create_model_pretrained_is_the_bundled_checkpoint() -> None:
    model = create_model("dnanet", pretrained="nudt")
    reference = model_from_checkpoint("nudt")
    assert not model.training
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
