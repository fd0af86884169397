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


def test_eval_applies_the_weights_gate_and_verifier_unless_told_not_to(tmp_path, capsys):
    import torch

    from sirst.verify import Verifier, _verifier_net

    root = synthesize(tmp_path / "d", 4, seed=3, size=64, progress=False)
    torch.manual_seed(0)
    model = create_model("dnanet", channel_size="one", backbone="resnet10")
    with torch.no_grad():  # an untrained network that calls most pixels targets: many candidates
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.out_channels == 1 and m.bias is not None:
                m.bias.fill_(3.0)
    net = _verifier_net(4)
    with torch.no_grad():  # a verifier that rejects every candidate
        net[-1].weight.zero_()
        net[-1].bias.fill_(-5.0)
    verifier = Verifier({"state_dict": net.state_dict(), "width": 4, "threshold": 0.5}).state(half=False)
    save_checkpoint({"model_name": "dnanet", "model_kwargs": {"channel_size": "one", "backbone": "resnet10"},
                     "state_dict": model.state_dict(), "min_peak_logit": 1.5, "verifier": verifier}, tmp_path / "w.pt")
    docs = {}
    for label, extra in (("own", []), ("off", ["--min-peak", "0", "--no-verifier"])):
        assert main(["eval", "--data", str(root), "--weights", str(tmp_path / "w.pt"), "--json",
                     str(tmp_path / f"{label}.json"), "--quiet", *extra]) == 0
        docs[label] = json.loads((tmp_path / f"{label}.json").read_text())
    out = capsys.readouterr().out
    assert "peak logit > 1.5, verifier threshold 0.5" in out and "all (no gate), no verifier" in out
    assert docs["own"]["min_peak_logit"] == 1.5 and docs["own"]["verifier_threshold"] == 0.5
    assert docs["off"]["min_peak_logit"] == 0.0 and "verifier_threshold" not in docs["off"]
    assert docs["off"]["num_pred_targets"] > 0 and docs["own"]["num_pred_targets"] == 0
    assert main(["eval", "--pred", str(tmp_path), "--masks", str(tmp_path), "--no-verifier"]) == 2
    assert "apply to a network" in capsys.readouterr().err
