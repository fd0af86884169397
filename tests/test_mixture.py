"""Hard negatives and mixed training sources: clutter, negative crops, the synthesized stream, the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sirst.data.io import write_png
from sirst.data.mixture import (
    NegativeFrames,
    SynthStream,
    _scaled_crop,
    bright_spots,
    frame_paths,
    parse_source,
    read_mined_spots,
)
from sirst.data.synth import CLUTTER_KINDS, SynthConfig, add_clutter, make_background, make_hard_sample


def _negatives(root, n=3, h=96, w=128):
    rng = np.random.default_rng(0)
    ids = []
    for i in range(n):
        write_png(root / "images" / f"f{i}.png", (rng.random((h, w)) * 255).astype(np.uint8))
        ids.append(f"f{i}")
    (root / "all.txt").write_text("\n".join(ids) + "\n")
    (root / "some.txt").write_text("f1\n")
    return root


@pytest.mark.parametrize("kind", CLUTTER_KINDS)
def test_each_clutter_kind_changes_the_image_and_stays_in_range(kind):
    rng = np.random.default_rng(3)
    bg = make_background(rng, "cloud", 64)
    out = add_clutter(np.random.default_rng(4), bg, [kind])
    assert out.shape == bg.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - bg).max() > 0.02, f"{kind} drew nothing"


def test_unknown_clutter_kind_lists_the_valid_ones():
    with pytest.raises(ValueError, match="hot_pixels"):
        add_clutter(np.random.default_rng(0), np.zeros((8, 8), np.float32), ["smoke"])


def test_hot_pixels_are_single_unblurred_pixels():
    bg = np.full((64, 64), 0.2, np.float32)
    out = add_clutter(np.random.default_rng(1), bg, ["hot_pixels"])
    changed = np.argwhere(np.abs(out - bg) > 1e-6)
    assert len(changed) >= 1
    # Only the defective pixels change: no optical blur spreads them (what tells them from a target).
    assert len(changed) <= 40


def test_hard_samples_are_reproducible_and_negatives_have_empty_masks():
    cfg = SynthConfig(size=64)
    a = make_hard_sample(np.random.default_rng(5), cfg, negative_p=1.0)
    b = make_hard_sample(np.random.default_rng(5), cfg, negative_p=1.0)
    assert np.array_equal(a[0], b[0]) and not a[1].any() and a[2] == []
    image, mask, targets = make_hard_sample(np.random.default_rng(6), cfg, negative_p=0.0)
    assert image.dtype == np.uint8 and mask.any() and len(targets) >= 1


def test_source_specs_name_their_frames(tmp_path):
    root = _negatives(tmp_path / "neg")
    assert [p.stem for p in frame_paths(str(root))] == ["f0", "f1", "f2"]
    assert [p.stem for p in frame_paths(f"{root}:some.txt")] == ["f1"]
    assert parse_source(f"{root}:some.txt") == (root, root / "some.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        frame_paths(f"{root}:missing.txt")
    with pytest.raises(FileNotFoundError, match="no images/ folder"):
        frame_paths(str(tmp_path))


def test_scaled_crop_sees_the_frame_at_the_requested_scale():
    frame = np.zeros((200, 300), np.float32)
    frame[100, 150] = 1.0  # one bright pixel: its footprint grows with the scale
    rng = np.random.default_rng(0)
    native = _scaled_crop(frame, rng, 64, (1.0, 1.0))
    assert native.shape == (64, 64)
    assert set(np.unique(native)) <= {0.0, 1.0}  # native scale: pixels copied, not resampled
    small = np.ones((20, 30), np.float32)
    padded = _scaled_crop(small, rng, 64, (1.0, 1.0))
    assert padded[:20, :30].min() == 1.0 and padded[20:].max() == 0.0  # zero padded like the paper


def test_negative_frames_train_and_eval_items(tmp_path):
    root = _negatives(tmp_path / "neg")
    ds = NegativeFrames(str(root), length=5, crop_size=32, in_channels=1, seed=0)
    item = ds[4]
    assert item["image"].shape == (1, 32, 32) and item["mask"].shape == (1, 32, 32)
    assert item["mask"].sum() == 0 and item["id"].startswith("f1#")
    again = ds[4]
    assert torch.equal(item["image"], again["image"])  # a pure function of (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[4]["image"], item["image"])
    ev = NegativeFrames(str(root), length=4, crop_size=32, mode="eval", in_channels=1)
    ev.set_epoch(7)  # evaluation crops never change
    assert torch.equal(ev[2]["image"], NegativeFrames(str(root), length=4, crop_size=32, mode="eval",
                                                      in_channels=1)[2]["image"])


def test_bright_spots_are_the_small_bright_structures_strongest_first():
    frame = np.full((120, 160), 40, np.uint8)
    frame[20:23, 30:33] = 120  # three small blobs of different contrast
    frame[80, 100] = 250
    frame[59:62, 139:142] = 90
    spots = bright_spots(frame)
    assert spots[:3].tolist() == [[80, 100], [21, 31], [60, 140]]
    assert len(bright_spots(np.full((50, 50), 77, np.uint8))) == 0  # flat: nothing tempts a detector


def test_hard_negative_crops_hold_a_bright_spot(tmp_path):
    root = tmp_path / "neg"
    (root / "images").mkdir(parents=True)
    frame = np.full((400, 400), 30, np.uint8)
    frame[300, 50] = 255  # the frame's only small bright structure, far from the middle
    write_png(root / "images" / "a.png", frame)
    hard = NegativeFrames(str(root), length=20, crop_size=64, scale=(1.0, 1.0), in_channels=1, hard_p=1.0)
    plain = NegativeFrames(str(root), length=20, crop_size=64, scale=(1.0, 1.0), in_channels=1)
    bright = lambda ds: sum(int(ds[i]["image"].max() > ds[i]["image"].min() + 1e-3) for i in range(20))  # noqa: E731
    assert bright(hard) == 20  # flat but for the spot: flips and blur move or soften it, it stays
    assert bright(plain) < 5  # a random 64-px window of 400 x 400 rarely holds it
    with pytest.raises(ValueError, match="hard_p must be in"):
        NegativeFrames(str(root), length=2, hard_p=1.5)


def test_mined_false_alarms_are_read_from_detections_csv(tmp_path):
    csv = tmp_path / "detections.csv"
    csv.write_text("image,target,x,y,area,peak_score\nframe-a,0,10.4,20.6,3,0.9\nframe-a,1,5,7,1,0.8\n"
                   "quiet,,,,,\ndir/frame-b.png,0,1.0,2.0,1,0.7\n")
    spots = read_mined_spots([csv])
    assert sorted(spots) == ["frame-a", "frame-b"]  # a frame without detections has no row of places
    assert spots["frame-a"].tolist() == [[21, 10], [7, 5]]  # (row, col) = (y, x) rounded
    (tmp_path / "bad.csv").write_text("image,col,row\na,1,2\n")
    with pytest.raises(ValueError, match=r"bad.csv: no column\(s\) x, y"):
        read_mined_spots([tmp_path / "bad.csv"])
    (tmp_path / "nan.csv").write_text("image,x,y\na,one,2\n")
    with pytest.raises(ValueError, match="nan.csv: line 2: x/y are not numbers"):
        read_mined_spots([tmp_path / "nan.csv"])
    with pytest.raises(FileNotFoundError, match="missing.csv: file of mined false alarms not found"):
        read_mined_spots([tmp_path / "missing.csv"])


def test_hard_negative_crops_sit_on_mined_false_alarms_where_a_frame_has_some(tmp_path):
    root = tmp_path / "neg"
    (root / "images").mkdir(parents=True)
    frame = np.full((400, 400), 30, np.uint8)
    frame[300, 50] = 255  # the bright spot
    frame[80, 350] = 0  # where a detector fired: dark, so no bright-spot crop would hold it
    write_png(root / "images" / "a.png", frame)
    ds = NegativeFrames(str(root), length=40, crop_size=64, scale=(1.0, 1.0), in_channels=1, hard_p=1.0,
                        mined={"a": np.array([[80, 350]]), "other": np.array([[1, 1]])})
    images = [ds[i]["image"] for i in range(40)]
    background = [float(im.median()) for im in images]  # the flat 30 after the network's normalisation
    on_mined = sum(int(im.min() < b - 1e-3 and im.max() < b + 1e-3) for im, b in zip(images, background))
    on_spot = sum(int(im.max() > b + 1e-3 and im.min() > b - 1e-3) for im, b in zip(images, background))
    assert on_mined == 40 and on_spot == 0  # mined places replace the bright spots of their frame
    plain = NegativeFrames(str(root), length=40, crop_size=64, scale=(1.0, 1.0), in_channels=1, hard_p=1.0,
                           mined={"other": np.array([[1, 1]])})
    assert all(float(plain[i]["image"].max()) > float(plain[i]["image"].median()) + 1e-3 for i in range(40))


def test_synth_stream_is_reproducible_and_mixes_negatives(tmp_path):
    root = _negatives(tmp_path / "neg", h=64, w=64)
    ds = SynthStream(12, crop_size=64, hard_p=1.0, backgrounds=str(root), in_channels=1, seed=3)
    items = [ds[i] for i in range(12)]
    assert all(it["image"].shape == (1, 64, 64) for it in items)
    empty = sum(int(it["mask"].sum() == 0) for it in items)
    assert 0 < empty < 12  # half of the hard samples carry no target
    assert torch.equal(ds[5]["image"], items[5]["image"])


def test_training_mixes_datasets_negatives_and_synth(tmp_path):
    """A tiny run over two labelled sets, negatives and synthesized samples; validation includes
    negative crops; --init-weights starts from a checkpoint."""
    from sirst.checkpoint import read_checkpoint
    from sirst.data.synth import synthesize
    from sirst.engine.config import TrainConfig
    from sirst.engine.train import build_datasets, train

    a = synthesize(tmp_path / "a", num=8, seed=1, size=64, progress=False)
    b = synthesize(tmp_path / "b", num=8, seed=2, size=64, progress=False)
    neg = _negatives(tmp_path / "neg", h=64, w=96)
    kw = dict(model_kwargs={"channel_size": "one", "backbone": "resnet10"}, in_channels=1, crop_size=32,
              base_size=32, batch_size=4, epochs=1, progress=False, val_fraction=0.25, extra_data=[str(b)],
              negatives=[str(neg)], negatives_per_epoch=3, val_negatives=[f"{neg}:some.txt"], val_negative_crops=2,
              synth_per_epoch=2)
    cfg = TrainConfig(data=str(a), out=str(tmp_path / "run"), **kw)
    train_set, eval_set, split = build_datasets(cfg)
    assert split == "val"
    assert len(train_set) == 3 + 3 + 3 + 2  # 4 train ids each less 1 val, 3 negative crops, 2 synthesized
    assert len(eval_set) == 1 + 1 + 2
    result = train(cfg)
    assert result.best_epoch == 1
    first = read_checkpoint(tmp_path / "run" / "best.pt")
    assert first["config"]["negatives"] == [str(neg)]
    cfg2 = TrainConfig(data=str(a), out=str(tmp_path / "run2"), init_weights=str(tmp_path / "run" / "best.pt"),
                       **{**kw, "epochs": 1, "negatives_per_epoch": 0, "synth_per_epoch": 0})
    model_state = first["state_dict"]
    from sirst.engine.train import _load_init_weights, build_model

    model, model_kwargs = build_model(cfg2)
    _load_init_weights(cfg2, model, model_kwargs)
    for k, v in model.state_dict().items():
        assert torch.equal(v, model_state[k].to(v.dtype))
    bad = TrainConfig(data=str(a), out=str(tmp_path / "run3"), init_weights=str(tmp_path / "run" / "best.pt"),
                      model_kwargs={"channel_size": "two"}, in_channels=1)
    model, model_kwargs = build_model(bad)
    with pytest.raises(ValueError, match="--init-weights hold model"):
        _load_init_weights(bad, model, model_kwargs)


def test_config_rejects_negative_crops_without_frames(tmp_path):
    from sirst.engine.config import TrainConfig

    with pytest.raises(ValueError, match="--negatives-per-epoch needs --negatives"):
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), negatives_per_epoch=4).validate()
    with pytest.raises(FileNotFoundError, match="target-free frames does not exist"):
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), negatives=[str(tmp_path / "nope")]).validate()
    with pytest.raises(FileNotFoundError, match="nope.csv: file of mined false alarms does not exist"):
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), negatives_mined=[str(tmp_path / "nope.csv")]).validate()
    (tmp_path / "m.csv").write_text("image,x,y\n")
    with pytest.raises(ValueError, match="--negatives-mined needs --negatives and --negatives-per-epoch"):
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), negatives_mined=[str(tmp_path / "m.csv")]).validate()


def test_compact_state_round_trip_resumes_training(tmp_path):
    """The compact cross-session state: fp16 weights, 8-bit log second moments, momentum dropped; it expands
    into a checkpoint that `train --resume` continues from."""
    from sirst.checkpoint import compact_training_state, expand_training_state, read_checkpoint, save_checkpoint
    from sirst.data.synth import synthesize
    from sirst.engine.config import TrainConfig
    from sirst.engine.train import train

    data = synthesize(tmp_path / "d", num=8, seed=1, size=64, progress=False)
    kw = dict(model_kwargs={"channel_size": "one", "backbone": "resnet10"}, in_channels=1, crop_size=32,
              base_size=32, batch_size=4, progress=False, optimizer="adam", lr=1e-3)
    train(TrainConfig(data=str(data), out=str(tmp_path / "run"), epochs=1, **kw))
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    compact = compact_training_state(last)
    assert all(v.dtype in (torch.float16, torch.int64) for v in compact["state_dict"].values())
    entries = compact["optimizer"][0]["state"][0]
    assert entries["exp_avg_sq"][0] == "log8" and entries["exp_avg"][0] == "dropped"
    grown = expand_training_state(compact)
    for k, v in last["state_dict"].items():
        assert grown["state_dict"][k].dtype == v.dtype
        assert torch.allclose(grown["state_dict"][k], v, rtol=1e-3, atol=1e-4)
    g0, l0 = grown["optimizer"][0]["state"][0], last["optimizer"][0]["state"][0]
    assert torch.count_nonzero(g0["exp_avg"]) == 0 and g0["exp_avg"].shape == l0["exp_avg"].shape
    assert torch.allclose(g0["exp_avg_sq"], l0["exp_avg_sq"], rtol=0.03, atol=0)
    assert torch.equal(g0["step"], l0["step"])
    save_checkpoint(grown, tmp_path / "next" / "last.pt")
    result = train(TrainConfig(data=str(data), out=str(tmp_path / "next"), epochs=2, resume=True, **kw))
    assert [h["epoch"] for h in result.history] == [2]


def test_synthesize_with_hard_samples_keeps_plain_datasets_unchanged(tmp_path):
    from PIL import Image

    from sirst.data.synth import synthesize

    plain = synthesize(tmp_path / "plain", num=4, seed=3, size=64, progress=False)
    zero = synthesize(tmp_path / "zero", num=4, seed=3, size=64, progress=False, hard_p=0.0)
    for f in sorted((plain / "images").iterdir()):
        assert (zero / "images" / f.name).read_bytes() == f.read_bytes()
    hard = synthesize(tmp_path / "hard", num=12, seed=3, size=64, progress=False, hard_p=1.0)
    empty = [np.asarray(Image.open(f)).max() == 0 for f in sorted((hard / "masks").iterdir())]
    assert 0 < sum(empty) < 12  # half of the hard samples carry no target
    with pytest.raises(ValueError, match="--hard-p"):
        synthesize(tmp_path / "bad", num=1, seed=3, size=64, progress=False, hard_p=1.5)
