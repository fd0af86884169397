"""The standard-layout dataset: naming variants, split layouts, errors, augmentation alignment."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import DATA_ENV, shared_dataset
from sirst.data import SirstDataset, pad_collate, resolve_split
from sirst.data.transforms import train_augment

NUAA = shared_dataset("NUAA-SIRST")
NUDT = shared_dataset("NUDT-SIRST")


def make_folder(root: Path, ids, size=(40, 56), mask_suffix="", split_dir="50_50", train_name="train.txt",
                sixteen_bit=False):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for k, i in enumerate(ids):
        img = np.full(size, 20 + k, np.uint16 if sixteen_bit else np.uint8)
        mask = np.zeros(size, np.uint8)
        mask[5 + k, 7:9] = 255
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}{mask_suffix}.png")
    folder = root / split_dir if split_dir else root
    folder.mkdir(exist_ok=True)
    (folder / train_name).write_text("\n".join(ids[:2]) + "\n")
    (folder / "test.txt").write_text("\r\n".join(ids[2:]) + "\r\n")  # CRLF as some public splits
    return root


@pytest.mark.parametrize("mask_suffix", ["", "_pixels0"])
@pytest.mark.parametrize("split_dir,train_name", [("50_50", "train.txt"), ("", "trainval.txt"), ("idx", "trainval.txt")])
def test_naming_and_split_variants(tmp_path, mask_suffix, split_dir, train_name):
    root = make_folder(tmp_path / "d", ["a", "b", "c"], mask_suffix=mask_suffix, split_dir=split_dir,
                       train_name=train_name)
    split = "auto" if split_dir in ("50_50", "") else split_dir
    train = SirstDataset(root, split=split, subset="train", mode="eval")
    test = SirstDataset(root, split=split, subset="test", mode="eval")
    assert train.ids == ["a", "b"] and test.ids == ["c"]
    s = test[0]
    assert s["image"].shape == (3, 48, 64) and s["size"] == (40, 56) and s["id"] == "c"
    assert s["mask"].shape == (1, 48, 64) and s["mask"].sum() == 2 and s["mask"][0, 7, 7] == 1


def test_root_split_name_selects_root_level_files(tmp_path):
    # Both a 50_50/ folder and root-level files: "auto" prefers 50_50, "root" the root-level ones.
    root = make_folder(tmp_path / "d", ["a", "b", "c"])
    (root / "trainval.txt").write_text("c\n")
    (root / "test.txt").write_text("a\nb\n")
    assert resolve_split(root, "auto").name == "50_50"
    files = resolve_split(root, "root")
    assert files.name == "root" and files.train == root / "trainval.txt" and files.test == root / "test.txt"
    assert SirstDataset(root, split="root", subset="test", mode="eval").ids == ["a", "b"]


def test_sixteen_bit_images_load(tmp_path):
    from sirst.data.io import InputRangeWarning

    root = make_folder(tmp_path / "d", ["a", "b", "c"], sixteen_bit=True)
    with pytest.warns(InputRangeWarning, match="nearly uniform"):  # a constant frame
        s = SirstDataset(root, subset="test", mode="eval", in_channels=1)[0]
    # 16-bit files are read in their data's bit depth: values that fit in 8 bits are 8-bit data.
    expected = (22 / 255 - 0.449) / 0.226  # mean/std of the ImageNet stats for one channel
    assert s["image"].shape == (1, 48, 64)
    assert abs(float(s["image"][0, 0, 0]) - expected) < 1e-3


def test_error_messages(tmp_path):
    root = make_folder(tmp_path / "d", ["a", "b", "c"])
    (root / "50_50" / "test.txt").write_text("c\nzz\n")
    with pytest.raises(FileNotFoundError, match=r"test\.txt: id 'zz' has no image"):
        SirstDataset(root, subset="test")
    (root / "50_50" / "test.txt").write_text("c\n")
    (root / "masks" / "c.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"c\.png: image has no mask"):
        SirstDataset(root, subset="test")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "c.png")
    with pytest.raises(ValueError, match=r"masks/c\.png: mask size 10x10 differs from image c\.png size 56x40"):
        SirstDataset(root, subset="test")
    Image.fromarray(np.full((40, 56), 7, np.uint8)).save(root / "masks" / "c.png")
    with pytest.raises(ValueError, match=r"c\.png: mask is not binary"):
        SirstDataset(root, subset="test", mode="eval")[0]
    with pytest.raises(FileNotFoundError, match="no split files"):
        resolve_split(root, "nope")


def test_error_messages_start_with_the_path(tmp_path):
    root = make_folder(tmp_path / "d", ["a", "b", "c"])
    image, mask, split = root / "images" / "c.png", root / "masks" / "c.png", root / "50_50" / "test.txt"
    split.write_text("zz\n")
    with pytest.raises(FileNotFoundError, match="^" + re.escape(f"{split}: id 'zz' has no image")):
        SirstDataset(root, subset="test")
    split.write_text("c\n")
    Image.fromarray(np.zeros((40, 57), np.uint8)).save(mask)
    with pytest.raises(ValueError, match="^" + re.escape(f"{mask}: mask size 57x40 differs")):
        SirstDataset(root, subset="test")
    Image.fromarray(np.full((40, 56), 7, np.uint8)).save(mask)
    with pytest.raises(ValueError, match="^" + re.escape(f"{mask}: mask is not binary (values 7)")):
        SirstDataset(root, subset="test", mode="eval")[0]
    mask.unlink()
    with pytest.raises(FileNotFoundError, match="^" + re.escape(f"{image}: image has no mask")):
        SirstDataset(root, subset="test")
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(mask)
    image.write_bytes(b"\x89PNG\r\n\x1a\n but not an image")  # corrupt: a PNG signature, then junk
    with pytest.raises(ValueError, match="^" + re.escape(f"{image}: cannot read image")):
        SirstDataset(root, subset="test")


def test_rgb_and_sixteen_bit_files_read_like_grayscale(tmp_path):
    root = make_folder(tmp_path / "d", ["a", "b", "c"])
    gray = np.asarray(Image.open(root / "images" / "c.png")).copy()
    gray[0, 0] = 255  # a full-range frame: its 16-bit copy (x 257) uses the full 16 bits
    Image.fromarray(gray).save(root / "images" / "c.png")
    expected = SirstDataset(root, subset="test", mode="eval")[0]
    mask = np.asarray(Image.open(root / "masks" / "c.png"))
    Image.fromarray(np.dstack([gray] * 3)).save(root / "images" / "c.png")  # RGB, equal channels
    Image.fromarray(np.dstack([mask] * 3)).save(root / "masks" / "c.png")
    rgb = SirstDataset(root, subset="test", mode="eval")[0]
    torch.testing.assert_close(rgb["image"], expected["image"])
    assert torch.equal(rgb["mask"], expected["mask"])
    Image.fromarray(gray.astype(np.uint16) * 257).save(root / "images" / "c.png")  # 16-bit, same values
    Image.fromarray((mask > 0).astype(np.uint16) * 65535).save(root / "masks" / "c.png")
    sixteen = SirstDataset(root, subset="test", mode="eval")[0]
    torch.testing.assert_close(sixteen["image"], expected["image"])
    assert torch.equal(sixteen["mask"], expected["mask"])


def test_data_check_output_and_problems(tmp_path, capsys):
    from sirst.cli import main

    root = make_folder(tmp_path / "d", ["a", "b", "c"])  # three 40x56 images, one 1x2 target each
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"dataset {root} (split 50_50)" in out
    assert "train: 2 ids" in out and "test: 1 ids" in out
    assert "sizes (HxW: images): 40x56: 3" in out
    assert "targets per image: 1: 3" in out
    assert "targets: 3, area px median 2" in out
    assert "area histogram: 1-1: 0, 2-4: 3, 5-9: 0" in out
    assert "problems: 0" in out
    (root / "images" / "a.png").write_bytes(b"junk")
    Image.fromarray(np.full((40, 56), 9, np.uint8)).save(root / "masks" / "b.png")
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "problems: 2" in out
    assert f"    - {root / 'images' / 'a.png'}: cannot read image" in out
    assert f"    - {root / 'masks' / 'b.png'}: mask is not binary" in out
    assert "sizes (HxW: images): 40x56: 1" in out  # the readable image is still counted
    assert main(["data", "check", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith(f"sirst data: error: {tmp_path / 'nope'}: dataset folder not found")


def test_reference_protocol_resizes_to_base_size(tmp_path):
    root = make_folder(tmp_path / "d", ["a", "b", "c"])
    s = SirstDataset(root, subset="test", mode="eval", protocol="reference", base_size=64)[0]
    assert s["image"].shape == (3, 64, 64) and s["size"] == (64, 64)


def test_train_mode_is_a_function_of_seed_epoch_index(tmp_path):
    root = make_folder(tmp_path / "d", ["a", "b", "c"], size=(64, 64))
    ds = SirstDataset(root, subset="train", mode="train", crop_size=32, base_size=64, seed=3)
    first = ds[1]["image"]
    assert first.shape == (3, 32, 32)
    assert torch.equal(first, ds[1]["image"])
    ds.set_epoch(1)
    assert not torch.equal(first, ds[1]["image"])
    ds.set_epoch(0)
    assert torch.equal(first, ds[1]["image"])


def test_pad_collate_pads_to_multiple_and_keeps_sizes(tmp_path):
    samples = [
        {"image": torch.ones(3, 16, 32), "mask": torch.ones(1, 16, 32), "id": "a", "size": (10, 30)},
        {"image": torch.ones(3, 32, 16), "mask": torch.ones(1, 32, 16), "id": "b", "size": (32, 16)},
    ]
    batch = pad_collate(samples)
    assert batch["image"].shape == (2, 3, 32, 32) and batch["mask"].shape == (2, 1, 32, 32)
    assert batch["mask"][0].sum() == 16 * 32 and batch["size"] == [(10, 30), (32, 16)]
    assert batch["id"] == ["a", "b"]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), h=st.integers(20, 90), w=st.integers(20, 90))
def test_augmentation_keeps_image_and_mask_aligned(seed, h, w):
    rng = np.random.default_rng(seed)
    mask = rng.random((h, w)) < 0.3
    image = mask.astype(np.float32)  # the image is the mask: alignment means they stay equal
    out_img, out_mask = train_augment(image, mask, np.random.default_rng(seed), base_size=48, crop_size=32, blur_p=0.0)
    assert out_img.shape == out_mask.shape == (32, 32)
    # bilinear resampling blurs edges only: pixels far from 0.5 must agree with the mask
    confident = np.abs(out_img - 0.5) > 0.45
    assert np.array_equal(out_img[confident] > 0.5, out_mask[confident])
    assert np.mean(confident) > 0.3 or out_mask.sum() == 0 or (out_img > 0.5).sum() > 0


def test_shared_data_found_through_env_var(tmp_path, monkeypatch):
    import conftest

    (tmp_path / "NUAA-SIRST" / "images").mkdir(parents=True)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert conftest.shared_data_dirs()[0] == tmp_path
    assert conftest.shared_dataset("NUAA-SIRST") == tmp_path / "NUAA-SIRST"
    assert conftest.shared_data_dirs()[-1] == conftest.REPO_ROOT.parent / "shared" / "data"
    monkeypatch.delenv(DATA_ENV)
    assert conftest.shared_data_dirs() == [conftest.REPO_ROOT.parent / "shared" / "data"]


@pytest.mark.skipif(NUAA is None, reason=f"real NUAA-SIRST absent (set {DATA_ENV} or use ../shared/data)")
def test_real_nuaa_sirst_loads():
    train = SirstDataset(NUAA, split="50_50", subset="train", mode="train", crop_size=64)
    test = SirstDataset(NUAA, split="50_50", subset="test", mode="eval")
    assert len(train) == 213 and len(test) == 214
    s = test[0]
    h, w = s["size"]
    assert s["image"].shape[-2:] == (h + (-h) % 16, w + (-w) % 16) and s["mask"].sum() > 0
    assert train[0]["image"].shape == (3, 64, 64)


@pytest.mark.skipif(NUAA is None, reason=f"real NUAA-SIRST absent (set {DATA_ENV} or use ../shared/data)")
def test_real_nuaa_sirst_passes_the_checker():
    from sirst.data.check import check_dataset

    report = check_dataset(NUAA, progress=False)
    assert report.problems == []
    assert report.counts == {"train": 213, "test": 214} and sum(report.sizes.values()) == 427
    assert len(report.areas) >= 427 and len(report.sizes) > 10  # variable sizes, 1+ target per image


@pytest.mark.skipif(NUDT is None, reason=f"real NUDT-SIRST absent (set {DATA_ENV} or use ../shared/data)")
def test_real_nudt_sirst_loads():
    test = SirstDataset(NUDT, split="50_50", subset="test", mode="eval")
    assert len(test) == 664
    s = test[0]
    assert s["image"].shape == (3, 256, 256) and s["mask"].sum() > 0
