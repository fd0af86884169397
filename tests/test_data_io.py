"""Image/mask reading: bit depths, colour, corrupt files, non-binary masks."""

import numpy as np
import pytest
from PIL import Image

from sirst.data import read_image, read_mask, to_network_input
from sirst.data.io import from_network_input


def test_8bit_16bit_and_rgb_are_scaled_to_unit_range(tmp_path):
    g8 = np.array([[0, 51, 255]], np.uint8)
    Image.fromarray(g8).save(tmp_path / "g8.png")
    np.testing.assert_allclose(read_image(tmp_path / "g8.png"), [[0, 0.2, 1.0]], atol=1e-6)

    g16 = np.array([[0, 13107, 65535]], np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 0.2, 1.0]], atol=1e-6)

    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (100, 100, 100)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png"), [[0.299, 100 / 255]], atol=1e-5)

    rgba = np.dstack([rgb, np.full((1, 2), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png"), read_image(tmp_path / "rgb.png"))


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"bad\.png: cannot read image"):
        read_image(bad)
    with pytest.raises(FileNotFoundError, match=r"nothere\.png: file not found"):
        read_image(tmp_path / "nothere.png")


def test_masks_binary_in_any_encoding_and_non_binary_rejected(tmp_path):
    m = np.array([[0, 255], [255, 0]], np.uint8)
    Image.fromarray(m).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[False, True], [True, False]]
    Image.fromarray(np.dstack([m] * 3)).save(tmp_path / "m_rgb.png")
    assert read_mask(tmp_path / "m_rgb.png").tolist() == [[False, True], [True, False]]
    Image.fromarray((m > 0).astype(np.uint8)).save(tmp_path / "m01.png")
    assert read_mask(tmp_path / "m01.png").sum() == 2
    Image.fromarray(np.array([[0, 128], [255, 0]], np.uint8)).save(tmp_path / "soft.png")
    with pytest.raises(ValueError, match=r"soft\.png: mask is not binary \(values 0, 128, 255\)"):
        read_mask(tmp_path / "soft.png")


def test_network_input_normalisation_round_trip():
    gray = np.array([[0.485, 1.0]], np.float32)
    x = to_network_input(gray, 3)
    assert x.shape == (3, 1, 2)
    assert abs(float(x[0, 0, 0])) < 1e-6  # the ImageNet mean of channel 0 maps to 0
    np.testing.assert_allclose(from_network_input(x), gray, atol=1e-6)
    assert to_network_input(gray, 1).shape == (1, 1, 2)
