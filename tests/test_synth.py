"""The synthesizer: determinism, masks agree with targets.json, the CLI."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from sirst.cli import main
from sirst.data import SirstDataset, read_mask
from sirst.data.synth import SCENE_KINDS, make_background, synthesize
from sirst.targets import extract_targets


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = synthesize(tmp_path / "a", 6, seed=5, size=64, progress=False)
    b = synthesize(tmp_path / "b", 6, seed=5, size=64, progress=False, workers=2)
    c = synthesize(tmp_path / "c", 6, seed=6, size=64, progress=False)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_cli_synth_same_seed_same_bytes(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["synth", "--out", str(tmp_path / name), "--num", "3", "--size", "64", "--seed", "9"]) == 0
    assert "wrote 3 images" in capsys.readouterr().out
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") == digest(synthesize(tmp_path / "c", 3, seed=9, size=64, progress=False))


def test_masks_match_targets_json(tmp_path):
    root = synthesize(tmp_path / "s", 12, seed=1, size=96, targets=(1, 4), progress=False)
    records = json.loads((root / "targets.json").read_text())
    by_image: dict[str, list] = {}
    for r in records:
        by_image.setdefault(r["image"], []).append(r)
    assert len(list((root / "images").glob("*.png"))) == 12
    for i in range(12):
        sid = f"{i:06d}"
        found = sorted(extract_targets(read_mask(root / "masks" / f"{sid}.png")), key=lambda t: (t.area, t.centroid))
        expected = sorted(by_image.get(sid, []), key=lambda r: (r["area"], tuple(r["centroid"])))
        assert len(found) == len(expected) >= 1, sid
        for t, r in zip(found, expected):
            assert t.area == r["area"]
            assert abs(t.centroid[0] - r["centroid"][0]) < 0.5 and abs(t.centroid[1] - r["centroid"][1]) < 0.5
            assert r["size_class"] in ("point", "spot", "extended") and r["background"] in SCENE_KINDS
    train = SirstDataset(root, subset="train", mode="eval")
    test = SirstDataset(root, subset="test", mode="eval")
    assert len(train) == len(test) == 6 and not set(train.ids) & set(test.ids)


def test_targets_are_brighter_than_their_surroundings(tmp_path):
    root = synthesize(tmp_path / "s", 10, seed=2, size=64, scr=(5, 8), progress=False)
    records = json.loads((root / "targets.json").read_text())
    scr = np.array([r["scr"] for r in records])
    assert np.median(scr) > 2.0


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_backgrounds_are_in_range_and_textured(kind):
    bg = make_background(np.random.default_rng(0), kind, 64)
    assert bg.shape == (64, 64) and bg.dtype == np.float32
    assert 0.0 <= bg.min() and bg.max() <= 1.0 and bg.std() > 0.005


def test_cli_synth_with_real_backgrounds(tmp_path, capsys):
    from PIL import Image

    bgs = tmp_path / "bgs"
    bgs.mkdir()
    Image.fromarray((np.random.default_rng(0).random((50, 80)) * 255).astype(np.uint8)).save(bgs / "x.png")
    assert main(["synth", "--out", str(tmp_path / "o"), "--num", "3", "--size", "64", "--backgrounds", str(bgs)]) == 0
    records = json.loads((tmp_path / "o" / "targets.json").read_text())
    assert records and all(r["background"] == "real:x.png" for r in records)
    assert main(["synth", "--out", str(tmp_path / "o2"), "--num", "2", "--size", "50"]) == 2
    assert "--size must be a multiple of 16" in capsys.readouterr().err


def test_cli_data_check_reports_problems(tmp_path, capsys):
    root = synthesize(tmp_path / "s", 4, seed=0, size=64, progress=False)
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "problems: 0" in out and "train: 2 ids" in out
    (root / "masks" / "000001.png").unlink()
    with open(root / "50_50" / "test.txt", "a") as f:
        f.write("999999\n")
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "problems: 2" in out and "999999" in out and "000001.png: image has no mask" in out
