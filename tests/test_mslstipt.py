"""MSLSTIPT: known answers on small synthetic inputs, in the single-frame and the multi-frame form."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from sirst.classical import get_method, mslstipt, mslstipt_decompose, mslstipt_sequence, mslstipt_sequence_decompose
from sirst.classical.mslstipt import DEFAULTS, FRAMES_PER_TENSOR, generalised_soft_threshold, msl_decompose, tensor_rpca


def low_rank_background(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A rank-2 ``(h, w)`` background in [0.2, 0.7]: sums of outer products of smooth profiles."""
    rng = np.random.default_rng(seed)
    y, x = np.linspace(0, 1, h), np.linspace(0, 1, w)
    bg = 0.25 * np.outer(1 + 0.5 * np.sin(3 * y + rng.random()), 1 + 0.3 * np.cos(2 * x))
    bg += 0.1 * np.outer(y, 1 - x)
    return bg + 0.2 - bg.min()


def point(h: int, w: int, centre: tuple[int, int], amp: float = 0.3, sigma: float = 0.7) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return amp * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))


def peak(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(a)), a.shape))


def test_registered_as_the_single_frame_form() -> None:
    assert get_method("mslstipt") is mslstipt


def test_paper_defaults() -> None:
    """The authors' settings: p = 0.8, C = 5, H = 4, tau = 50 grey levels, L = 6 frames, ADMM
    penalties from 1e-4 growing by 1.2 (tensor RPCA, 800 iterations, tol 1e-8) and 1.1 (MSL, 200
    iterations, tol 1e-4); single frame: 40x40 patches, step 40."""
    assert DEFAULTS == {"p": 0.8, "c": 5.0, "h": 4.0, "tau": 50.0} and FRAMES_PER_TENSOR == 6

    def defaults(fn) -> dict:
        return {k: v.default for k, v in inspect.signature(fn).parameters.items() if v.default is not inspect.Parameter.empty}

    assert defaults(tensor_rpca) == {"mu": 1e-4, "rho": 1.2, "mu_max": 1e10, "tol": 1e-8, "max_iter": 800}
    assert defaults(msl_decompose) == {"beta": 1e-4, "rho": 1.1, "beta_max": 1e8, "tol": 1e-4, "max_iter": 200}
    single = defaults(mslstipt_decompose)
    assert (single["patch"], single["step"], single["grey_levels"]) == (40, 40, 255.0)
    assert defaults(mslstipt_sequence_decompose)["frames_per_tensor"] == 6


def test_generalised_soft_threshold_known_answers() -> None:
    sigma = np.array([0.0, 0.5, 1.0, 2.0, 5.0, 20.0])
    # p = 1 is the soft threshold (nuclear norm).
    np.testing.assert_allclose(generalised_soft_threshold(sigma, 1.5, 1.0), np.maximum(sigma - 1.5, 0))
    # p < 1: each output minimises 0.5 (x - s)^2 + lam x^p (checked on a fine grid).
    lam, p = 1.5, 0.8
    got = generalised_soft_threshold(sigma, lam, p, iterations=20)
    grid = np.linspace(0, 25, 250_001)
    for s, x in zip(sigma, got):
        f = 0.5 * (grid - s) ** 2 + lam * grid**p
        best = grid[np.argmin(f)]
        assert 0.5 * (x - s) ** 2 + lam * x**p <= f.min() + 1e-6, (s, x, best)
    assert got[0] == got[1] == got[2] == 0.0  # below the threshold
    assert 0 < got[-1] < sigma[-1]  # large values are shrunk less than by the soft threshold
    assert sigma[-1] - got[-1] < 1.5


def test_single_frame_recovers_a_point_target_on_a_low_rank_background() -> None:
    h, w, t = 80, 80, (50, 27)
    img = low_rank_background(h, w) + point(h, w, t)
    res = mslstipt_decompose(img, patch=20, step=20)
    assert res.target.shape == img.shape and res.target.dtype == np.float32
    assert peak(res.target) == t
    assert res.target[t] == pytest.approx(0.3, abs=0.06)  # the target's amplitude, in the image's units
    far = res.target.copy()
    far[t[0] - 4 : t[0] + 5, t[1] - 4 : t[1] + 5] = 0
    assert far.max() < 0.01
    np.testing.assert_allclose(res.background + res.target, img, atol=0.02)


#: Below 1 % of full scale (2.5 grey levels): what the dictionary truncation (tau = 50 on the Fourier
#: singular values) leaves of a smooth background in E; a target of the tests above is 0.3.
NO_TARGET = 0.01


@pytest.mark.parametrize("seed", [0, 3])
def test_single_frame_smooth_background_gives_no_target(seed: int) -> None:
    img = low_rank_background(160, 200, seed=seed)
    assert mslstipt(img).max() < NO_TARGET


def test_single_frame_defaults_on_a_larger_image() -> None:
    h, w, t = 160, 200, (97, 131)
    img = low_rank_background(h, w, seed=1) + point(h, w, t)
    out = mslstipt(img)
    assert peak(out) == t


def moving_target_sequence(n: int, h: int = 48, w: int = 56, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``n`` frames of a static low-rank background with a point target moving 3 px per frame."""
    bg = low_rank_background(h, w, seed)
    rng = np.random.default_rng(seed)
    centres = [(12 + 2 * i, 10 + 3 * i) for i in range(n)]
    frames = np.stack([bg + point(h, w, c) + 0.002 * rng.standard_normal((h, w)) for c in centres])
    return frames, centres


def test_multi_frame_recovers_the_moving_target_in_every_frame() -> None:
    frames, centres = moving_target_sequence(8)  # groups: frames 0-5, then 2-7 (flush with the end)
    res = mslstipt_sequence_decompose(frames)
    assert res.target.shape == frames.shape and res.background.shape == frames.shape
    for k, c in enumerate(centres):
        assert peak(res.target[k]) == c, k
        assert res.target[k][c] > 0.15, k
    # The static background stays in the background part.
    far = res.target.copy()
    for k, c in enumerate(centres):
        far[k, c[0] - 3 : c[0] + 4, c[1] - 3 : c[1] + 4] = 0
    assert far.max() < 0.05


def test_multi_frame_static_smooth_sequence_gives_no_target() -> None:
    bg = low_rank_background(48, 56, seed=2)
    frames = np.stack([bg * (1 + 0.01 * k) for k in range(6)])  # slow global brightness drift
    assert mslstipt_sequence(frames).max() < NO_TARGET


def test_sequence_input_errors() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W\) frames with N >= 2"):
        mslstipt_sequence(np.zeros((1, 16, 16)))
    with pytest.raises(ValueError, match=r"\(N, H, W\) frames"):
        mslstipt_sequence(np.zeros((16, 16)))
    with pytest.raises(ValueError, match="frames_per_tensor must be >= 2"):
        mslstipt_sequence(np.zeros((4, 16, 16)), frames_per_tensor=1)


def test_classical_detect_cli_runs_the_multi_frame_form(tmp_path, capsys) -> None:
    """`sirst classical-detect FOLDER --method mslstipt`: a folder of frames is one sequence; the
    moving target is found in every frame (and only there); a video is read the same way."""
    import csv

    import cv2

    from sirst.cli import main
    from sirst.data.io import write_png

    frames, centres = moving_target_sequence(6)
    folder = tmp_path / "seq"
    folder.mkdir()
    for k, f in enumerate(frames):
        write_png(folder / f"frame_{k:03d}.png", np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8))
    assert main(["classical-detect", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert "seq: 6 frame(s), mslstipt" in capsys.readouterr().out
    with open(tmp_path / "out" / "detections.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["frame"] for r in rows] == [f"frame_{k:03d}" for k in range(6)]  # one target per frame
    for r, (cy, cx) in zip(rows, centres):
        assert abs(float(r["x"]) - cx) < 1.5 and abs(float(r["y"]) - cy) < 1.5
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 6

    video = tmp_path / "seq.avi"
    h, w = frames.shape[1:]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h), isColor=False)
    for f in frames:
        writer.write(np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8))
    writer.release()
    assert main(["classical-detect", str(video), "--out", str(tmp_path / "vid")]) == 0
    with open(tmp_path / "vid" / "detections.csv") as fh:
        found = {r["frame"]: (float(r["y"]), float(r["x"])) for r in csv.DictReader(fh) if float(r["peak_score"]) == 1.0}
    for k, (cy, cx) in enumerate(centres):
        y, x = found[f"seq_f{k:06d}"]
        assert abs(y - cy) < 1.5 and abs(x - cx) < 1.5
