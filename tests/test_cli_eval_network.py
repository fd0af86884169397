"""`sirst eval --data ROOT --weights W`: a network scored on a dataset split."""

import json


from sirst.checkpoint import model_from_checkpoint, save_checkpoint
from sirst.cli import main
from sirst.data import SirstDataset
from sirst.data.synth import synthesize
from sirst.evaluation import evaluate_dataset
from sirst.models import create_model


def test_eval_network_matches_the_validation_path(tmp_path, capsys):
    root = synthesize(tmp_path / "d", 4, seed=3, size=64, progress=False)
    model = create_model("dnanet", channel_size="one", backbone="resnet10")
    kwargs = {"channel_size": "one", "backbone": "resnet10"}
    save_checkpoint({"model_name": "dnanet", "model_kwargs": kwargs, "state_dict": model.state_dict()},
                    tmp_path / "w.pt")
    code = main(["eval", "--data", str(root), "--weights", str(tmp_path / "w.pt"), "--json",
                 str(tmp_path / "r.json"), "--quiet"])
    assert code == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    expected = evaluate_dataset(model_from_checkpoint(tmp_path / "w.pt"), SirstDataset(root, subset="test", mode="eval"),
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


def test_eval_network_reference_protocol_resizes_inputs_to_256(tmp_path):
    root = synthesize(tmp_path / "d", 4, seed=3, size=64, progress=False)
    model = create_model("dnanet", channel_size="one", backbone="resnet10")
    kwargs = {"channel_size": "one", "backbone": "resnet10"}
    save_checkpoint({"model_name": "dnanet", "model_kwargs": kwargs, "state_dict": model.state_dict()},
                    tmp_path / "w.pt")
    assert main(["eval", "--data", str(root), "--weights", str(tmp_path / "w.pt"), "--protocol", "reference",
                 "--json", str(tmp_path / "r.json"), "--quiet"]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["protocol"] == "reference"
    assert doc["num_images"] == 2 and doc["num_pixels"] == 2 * 256 * 256  # the network saw 256x256 inputs
    assert doc["num_targets"] >= 2
    dataset = SirstDataset(root, subset="test", mode="eval", protocol="reference")
    assert dataset[0]["image"].shape == (3, 256, 256) and dataset[0]["size"] == (256, 256)
