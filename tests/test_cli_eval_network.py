"""`sirst eval --data ROOT --weights W`: a network scored on a dataset split."""

import json

import torch

from sirst.checkpoint import model_from_checkpoint, save_checkpoint
from sirst.cli import main
from sirst.data import SirstDataset
from sirst.data.synth import synthesize
from sirst.engine import evaluate
from sirst.models import create_model


def test_eval_network_matches_engine_evaluate(tmp_path, capsys):
    root = synthesize(tmp_path / "d", 4, seed=3, size=64, progress=False)
    model = create_model("dnanet", channel_size="one", backbone="resnet10")
    kwargs = {"channel_size": "one", "backbone": "resnet10"}
    save_checkpoint({"model_name": "dnanet", "model_kwargs": kwargs, "state_dict": model.state_dict()},
                    tmp_path / "w.pt")
    code = main(["eval", "--data", str(root), "--weights", str(tmp_path / "w.pt"), "--json",
                 str(tmp_path / "r.json"), "--quiet"])
    assert code == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    expected = evaluate(model_from_checkpoint(tmp_path / "w.pt"), SirstDataset(root, subset="test", mode="eval"),
                        progress=False)
    assert doc["num_images"] == 2
    for key in ("iou", "pd", "fa", "num_targets"):
        assert doc[key] == expected[key] or (doc[key] is None and expected[key] != expected[key])
    assert "IoU" in capsys.readouterr().out


def test_eval_needs_one_kind_of_input(tmp_path, capsys):
    assert main(["eval", "--masks", str(tmp_path)]) == 2
    assert "--pred and --masks" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path), "--pred", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
