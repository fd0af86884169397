"""Training engine: loss goes down, resume == uninterrupted, atomic saves, non-finite loss, CLI.

Everything is tiny: a 12-image 64x64 dataset drawn here, DNANet with channel_size "one" and
backbone resnet10, 32x32 crops, batch 4.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from sirst.engine.config import TrainConfig
from sirst.engine.steps import SegmentationStep, get_train_step


def make_tiny_dataset(root: Path, num: int = 12, num_test: int = 4, size: int = 64, seed: int = 0) -> Path:
    """Draw ``num`` images with 1-2 bright Gaussian blobs on smooth noisy clutter, in the standard layout."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "50_50").mkdir()
    yy, xx = np.mgrid[0:size, 0:size]
    ids = [f"img{i:03d}" for i in range(num)]
    for name in ids:
        background = 60 + 20 * np.sin(xx / rng.uniform(5, 15)) + rng.normal(0, 4, (size, size))
        image = background.copy()
        mask = np.zeros((size, size), np.uint8)
        for _ in range(rng.integers(1, 3)):
            cy, cx = rng.integers(6, size - 6, 2)
            r = rng.uniform(1.0, 2.5)
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            image += 150 * np.exp(-d2 / (2 * r * r))
            mask[d2 <= r * r * 2] = 255
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    (root / "50_50" / "train.txt").write_text("\n".join(ids[: num - num_test]) + "\n")
    (root / "50_50" / "test.txt").write_text("\n".join(ids[num - num_test :]) + "\n")
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    kwargs = dict(
        data=str(data), out=str(out), model="dnanet", backbone="resnet10", channel_size="one",
        epochs=2, batch_size=4, crop_size=32, base_size=64, seed=0, progress=False, log_every=1,
    )
    kwargs.update(overrides)
    return TrainConfig(**kwargs)


def _max_weight_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def test_train_reduces_loss_and_writes_run_files(tiny_data, tmp_path):
    from sirst.checkpoint import model_from_checkpoint, read_checkpoint
    from sirst.engine.train import train

    cfg = tiny_config(tiny_data, tmp_path / "run", epochs=3)
    result = train(cfg)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]

    out = tmp_path / "run"
    assert TrainConfig.load_yaml(out / "config.yaml") == cfg
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    for r, h in zip(lines, result.history):
        assert {"epoch", "loss", "iou", "niou", "pd", "fa", "seconds", "split"} <= set(r)
        assert r["split"] == "test"
        assert r["loss"] == pytest.approx(h["loss"], abs=1e-12)
    last = read_checkpoint(out / "last.pt")
    best = read_checkpoint(out / "best.pt")
    assert last["epoch"] == 3 and last["model_name"] == "dnanet"
    assert last["model_kwargs"] == {"in_channels": 3, "backbone": "resnet10", "channel_size": "one"}
    ious = [r["iou"] if r["iou"] is not None else -math.inf for r in lines]
    best_epoch = int(np.argmax(ious)) + 1  # first maximum: later ties do not replace the best
    assert last["best_epoch"] == best["best_epoch"] == best["epoch"] == best_epoch
    assert set(last["rng"]) >= {"python", "numpy", "torch"}
    assert model_from_checkpoint(last).training is False


def test_resume_equals_uninterrupted(tiny_data, tmp_path):
    from sirst.checkpoint import read_checkpoint
    from sirst.engine.train import train

    full = train(tiny_config(tiny_data, tmp_path / "full", epochs=2))
    train(tiny_config(tiny_data, tmp_path / "split", epochs=1))
    first_half = read_checkpoint(tmp_path / "split" / "last.pt")
    assert first_half["epoch"] == 1
    with pytest.raises(ValueError, match=r"last\.pt: was trained with seed=0, this run has seed=1"):
        train(tiny_config(tiny_data, tmp_path / "split", epochs=2, resume=True, seed=1))
    torch.manual_seed(1234)  # disturb the global RNG: resume must restore/not depend on it
    resumed = train(tiny_config(tiny_data, tmp_path / "split", epochs=2, resume=True))

    a = read_checkpoint(tmp_path / "full" / "last.pt")
    b = read_checkpoint(tmp_path / "split" / "last.pt")
    assert b["epoch"] == 2
    assert _max_weight_diff(a["state_dict"], b["state_dict"]) <= 1e-6
    assert resumed.history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], abs=1e-6)
    # The log of the resumed run has both epochs once each, with the same numbers.
    la = [json.loads(s) for s in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(s) for s in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lb] == [1, 2]
    assert la[-1]["iou"] == lb[-1]["iou"] and la[-1]["pd"] == lb[-1]["pd"]


def test_killed_during_save_leaves_previous_last_pt(tiny_data, tmp_path, monkeypatch):
    from sirst.checkpoint import model_from_checkpoint, read_checkpoint
    from sirst.engine.train import train

    out = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            # Write part of the file, then die as a killed process would.
            import io

            buf = io.BytesIO()
            real_save(obj, buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise KeyboardInterrupt("simulated kill during save")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_data, out, epochs=2, eval_every=5))
    monkeypatch.setattr(torch, "save", real_save)
    assert calls["n"] >= 2
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 1
    model_from_checkpoint(ckpt)
    assert not list(out.glob(".*.tmp")), "the partial temp file must be removed"
    # And the run can be resumed from there.
    result = train(tiny_config(tiny_data, out, epochs=2, eval_every=5, resume=True))
    assert [h["epoch"] for h in result.history] == [2]
    assert read_checkpoint(out / "last.pt")["epoch"] == 2


def test_non_finite_loss_stops_with_epoch_and_step(tiny_data, tmp_path, monkeypatch):
    from sirst.checkpoint import read_checkpoint
    from sirst.engine.train import NonFiniteLossError, train

    real_step = SegmentationStep.step
    counter = {"n": 0}

    def poisoned_step(self, model, batch, optimizers):
        counter["n"] += 1
        out = real_step(self, model, batch, optimizers)
        if counter["n"] == 3:  # epoch 2 has steps 3 and 4 (2 steps per epoch)
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(SegmentationStep, "step", poisoned_step)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1 \(of 2\)"):
        train(tiny_config(tiny_data, out, epochs=3, log_every=5))
    assert read_checkpoint(out / "last.pt")["epoch"] == 1


def test_diverging_lr_gives_clear_cli_error(tiny_data, tmp_path, capsys):
    from sirst.cli import main

    out = tmp_path / "run"
    rc = main([
        "train", "--data", str(tiny_data), "--out", str(out), "--backbone", "resnet10", "--channel-size", "one",
        "--epochs", "2", "--batch-size", "4", "--crop-size", "32", "--base-size", "64", "--lr", "1e38",
        "--optimizer", "sgd", "--quiet", "--log-every", "1",
    ])
    err = capsys.readouterr().err
    assert rc == 1
    assert "non-finite training loss at epoch" in err and "step" in err


def test_cli_train_and_bad_input(tiny_data, tmp_path, capsys):
    from sirst.cli import main

    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_data), "--out", str(out), "--backbone", "resnet10", "--channel-size", "one",
            "--epochs", "1", "--batch-size", "4", "--crop-size", "32", "--base-size", "64", "--quiet",
            "--max-train-images", "4", "--max-test-images", "2"]
    assert main(args) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1
    # Same run dir again without --resume: refused, naming the file.
    assert main(args) == 2
    assert f"{out / 'last.pt'}:" in capsys.readouterr().err
    missing = tmp_path / "nope"
    assert main(["train", "--data", str(missing), "--out", str(tmp_path / "r2"), "--quiet"]) == 2
    assert f"{missing}: dataset directory does not exist" in capsys.readouterr().err
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r3"), "--crop-size", "30", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--crop-size" in err and "must be a positive multiple of 16" in err and len(err.splitlines()) == 1


def test_val_fraction_uses_train_split_for_selection(tiny_data, tmp_path):
    from sirst.engine.train import build_datasets, train

    cfg = tiny_config(tiny_data, tmp_path / "run", epochs=1, val_fraction=0.25)
    train_set, eval_set, split = build_datasets(cfg)
    assert split == "val" and len(eval_set) == 2 and len(train_set) == 6
    ids_train = {train_set[i]["id"] for i in range(len(train_set))}
    ids_val = {eval_set[i]["id"] for i in range(len(eval_set))}
    assert not ids_train & ids_val
    # Deterministic by seed.
    _, eval_again, _ = build_datasets(cfg)
    assert [eval_again[i]["id"] for i in range(2)] == [eval_set[i]["id"] for i in range(2)]
    result = train(cfg)
    rec = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert rec["split"] == "val" and result.eval_split == "val"
    assert result.evaluations[0]["metrics"]["num_images"] == 2


class _StepModel(nn.Module):
    """A model that brings its own training step (as a GAN would)."""

    size_divisor = 16

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        return self.conv(x)

    def make_train_step(self, cfg):
        return _CountingStep()


class _CountingStep:
    def configure_optimizers(self, model, cfg):
        return [torch.optim.SGD(model.parameters(), lr=0.1)]

    def step(self, model, batch, optimizers):
        return {"loss": torch.zeros(())}


def test_model_chooses_its_train_step(tmp_path):
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "o"))
    assert isinstance(get_train_step(_StepModel(), cfg), _CountingStep)
    plain = nn.Conv2d(3, 1, 1)
    assert isinstance(get_train_step(plain, cfg), SegmentationStep)
    # The default step builds the paper's optimizer: Adagrad, lr 0.05.
    step = SegmentationStep(cfg)
    model = nn.Conv2d(3, 1, 1)
    (opt,) = step.configure_optimizers(model, cfg)
    assert isinstance(opt, torch.optim.Adagrad) and opt.defaults["lr"] == 0.05


def test_default_step_reduces_loss_on_fixed_batch():
    cfg = TrainConfig(data=".", out=".", lr=0.05)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    step = SegmentationStep(cfg)
    opts = step.configure_optimizers(model, cfg)
    image = torch.randn(2, 3, 16, 16)
    mask = (image[:, :1] > 1.0).float()
    batch = {"image": image, "mask": mask}
    first = step.step(model, batch, opts)["loss"].item()
    for _ in range(20):
        last = step.step(model, batch, opts)["loss"].item()
    assert last < first - 0.05


def test_amp_and_channels_last_run(tiny_data, tmp_path):
    from sirst.checkpoint import read_checkpoint
    from sirst.engine.train import train

    result = train(tiny_config(tiny_data, tmp_path / "run", epochs=1, amp=True, channels_last=True,
                               max_train_images=4, max_test_images=2))
    assert math.isfinite(result.history[0]["loss"])
    state = read_checkpoint(tmp_path / "run" / "last.pt")["state_dict"]
    assert all(v.dtype != torch.bfloat16 for v in state.values()), "weights stay float32 under autocast"


def test_max_minutes_stops_after_an_evaluated_saved_epoch_and_resume_continues(tiny_data, tmp_path):
    from sirst.checkpoint import read_checkpoint
    from sirst.engine.train import train

    out = tmp_path / "run"
    # A budget smaller than one epoch: the run stops after epoch 1, which is evaluated although
    # eval_every would skip it, and saved.
    result = train(tiny_config(tiny_data, out, epochs=4, eval_every=3, max_minutes=1e-6))
    assert result.stopped_by_time
    assert [h["epoch"] for h in result.history] == [1]
    assert [r["epoch"] for r in result.evaluations] == [1]
    assert read_checkpoint(out / "last.pt")["epoch"] == 1
    resumed = train(tiny_config(tiny_data, out, epochs=4, eval_every=3, resume=True))
    assert not resumed.stopped_by_time
    assert [h["epoch"] for h in resumed.history] == [2, 3, 4]
    assert [r["epoch"] for r in resumed.evaluations] == [1, 3, 4]
