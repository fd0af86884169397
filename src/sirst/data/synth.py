"""A NUDT-SIRST-style synthesizer: infrared-like backgrounds, virtual targets, exact masks.

The recipe follows the DNANet paper's NUDT-SIRST: targets of adaptive size (point, spot,
extended; circular, elliptical, polygonal or cross-shaped, rotated) are composited onto
backgrounds of five scene kinds (cloud, city, sea, field, highlight), their intensity set from a
signal-to-clutter ratio, and blurred with a 5x5 Gaussian.

Definitions (documented so users can reproduce them):

* **Mask** = the target's support before the blur (the blur spreads a little energy outside it,
  as in NUDT-SIRST). Targets never touch: each keeps a 2-pixel gap, so every target is exactly one
  8-connected component of the mask.
* **SCR** = (mean of the target pixels - mean of the local background) / std of the local
  background, the local background being the ring between the target's 2-pixel and 12-pixel
  dilations, measured on the final 8-bit image.
* **Size classes** by area: point <= 9 px, spot 10-81 px, extended > 81 px (those of
  :mod:`sirst.metrics`).

Every image is drawn from its own generator ``SeedSequence([seed, index])``: the same seed gives
the same bytes, whatever the order or the number of processes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SCENE_KINDS = ("cloud", "city", "sea", "field", "highlight")
SHAPES = ("ellipse", "polygon", "cross")
GAP = 2  # pixels kept free around every target so components stay distinct
RING = 12  # outer radius of the local-background ring for the SCR


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of the synthesizer."""

    size: int = 256
    scr: tuple[float, float] = (2.0, 12.0)
    targets: tuple[int, int] = (1, 3)
    # Probabilities of the point / spot / extended size classes.
    class_probs: tuple[float, float, float] = (0.35, 0.4, 0.25)


# ------------------------------------------------------------------------------------------------
# Backgrounds
# ------------------------------------------------------------------------------------------------


def _fractal(rng: np.random.Generator, h: int, w: int, beta: float) -> np.ndarray:
    """1/f^beta noise (H, W), normalised to zero mean and unit std."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))) / f ** (beta / 2)
    spectrum[0, 0] = 0
    field = np.fft.irfft2(spectrum, s=(h, w))
    return ((field - field.mean()) / (field.std() + 1e-12)).astype(np.float32)


def _cloud(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(0.25, 0.55)
    sky = np.linspace(rng.uniform(-0.08, 0.08), 0, h, dtype=np.float32)[:, None]
    clouds = np.clip(_fractal(rng, h, w, rng.uniform(2.6, 3.4)), -1.5, None)
    return base + sky + rng.uniform(0.06, 0.14) * clouds


def _city(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = rng.uniform(0.2, 0.4) + 0.04 * _fractal(rng, h, w, 2.5)
    skyline = int(h * rng.uniform(0.3, 0.7))
    for _ in range(int(rng.integers(6, 16))):
        x0 = int(rng.integers(0, w))
        bw = int(rng.integers(w // 20, w // 5))
        top = int(rng.integers(skyline - h // 4, skyline + h // 6))
        img[max(top, 0):, x0 : x0 + bw] = rng.uniform(0.25, 0.6)
        # Warm windows: small bright rectangles, the clutter that resembles point targets.
        for _ in range(int(rng.integers(0, 6))):
            wy = int(rng.integers(max(top, 0), h))
            wx = int(rng.integers(x0, min(x0 + bw, w - 1) + 1))
            img[wy : wy + 2, wx : wx + 3] += rng.uniform(0.05, 0.2)
    return cv2.GaussianBlur(img.astype(np.float32), (3, 3), 0)


def _sea(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    horizon = int(h * rng.uniform(0.15, 0.5))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    waves = np.sin(yy * rng.uniform(0.3, 0.9) + 0.4 * np.sin(xx * rng.uniform(0.02, 0.08)))
    sea = rng.uniform(0.2, 0.4) + 0.03 * waves + 0.05 * _fractal(rng, h, w, 2.2)
    # Sun glints: sparse, horizontally elongated bright streaks on the water.
    glints = (rng.random((h, w)) < rng.uniform(0.0005, 0.003)).astype(np.float32)
    glints = cv2.dilate(glints, np.ones((1, 3), np.uint8)) * rng.uniform(0.1, 0.3)
    sea = sea + glints * (yy > horizon)
    sky = rng.uniform(0.35, 0.6) + 0.05 * _fractal(rng, h, w, 3.0)
    return np.where(yy < horizon, sky, sea).astype(np.float32)


def _field(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    regions = _fractal(rng, h, w, 3.0)
    levels = np.digitize(regions, np.quantile(regions, [0.25, 0.5, 0.75]))
    tones = rng.uniform(0.2, 0.55, size=4).astype(np.float32)
    texture = 0.04 * _fractal(rng, h, w, 1.4)
    img = tones[levels] + texture
    edges = cv2.Canny((levels * 60).astype(np.uint8), 10, 30).astype(np.float32) / 255.0
    return cv2.GaussianBlur(img + 0.05 * edges, (3, 3), 0)


def _highlight(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = _cloud(rng, h, w)
    bright = _fractal(rng, h, w, 3.2)
    img = img + np.clip(bright - rng.uniform(0.8, 1.4), 0, None) * rng.uniform(0.3, 0.6)
    return img


_BACKGROUNDS = {"cloud": _cloud, "city": _city, "sea": _sea, "field": _field, "highlight": _highlight}


def make_background(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """A procedural infrared-like background of scene ``kind``: float32 (size, size) in [0, 1]."""
    if kind not in _BACKGROUNDS:
        raise ValueError(f"unknown scene kind {kind!r}; valid: {', '.join(SCENE_KINDS)}")
    img = _BACKGROUNDS[kind](rng, size, size)
    img = img + rng.uniform(0.004, 0.015) * rng.standard_normal((size, size)).astype(np.float32)  # sensor noise
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Targets
# ------------------------------------------------------------------------------------------------


def _target_shape(rng: np.random.Generator, size_class: str) -> tuple[np.ndarray, str]:
    """A binary target support (h, w) uint8 of the requested size class, and its shape name."""
    if size_class == "point":
        hh, ww = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        return np.ones((hh, ww), np.uint8), "point"
    radius = rng.uniform(2.0, 4.5) if size_class == "spot" else rng.uniform(5.5, 12.0)
    shape = "ellipse" if size_class == "spot" else SHAPES[int(rng.integers(0, len(SHAPES)))]
    canvas_r = int(np.ceil(radius)) + 2
    canvas = np.zeros((2 * canvas_r + 1, 2 * canvas_r + 1), np.uint8)
    centre = (canvas_r, canvas_r)
    angle = rng.uniform(0, 180)
    if shape == "ellipse":
        axes = (max(1, int(round(radius))), max(1, int(round(radius * rng.uniform(0.4, 1.0)))))
        cv2.ellipse(canvas, centre, axes, angle, 0, 360, 1, -1)
    elif shape == "polygon":
        n = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = radius * rng.uniform(0.6, 1.0, n)
        pts = np.stack([canvas_r + radii * np.cos(angles), canvas_r + radii * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    else:  # cross: two rotated bars, like an aircraft seen from below
        for a in (angle, angle + rng.uniform(60, 120)):
            length = radius * (1.0 if a == angle else rng.uniform(0.5, 0.9))
            box = ((canvas_r, canvas_r), (2 * length, max(2.0, radius * 0.35)), a)
            cv2.fillPoly(canvas, [np.round(cv2.boxPoints(box)).astype(np.int32)], 1)
    ys, xs = np.nonzero(canvas)
    return canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], shape


def size_class_of(area: int) -> str:
    """Point (<= 9 px), spot (10-81 px) or extended (> 81 px)."""
    return "point" if area <= 9 else "spot" if area <= 81 else "extended"


def _measure_scr(image: np.ndarray, support: np.ndarray) -> float:
    near = cv2.dilate(support, np.ones((2 * GAP + 1, 2 * GAP + 1), np.uint8))
    far = cv2.dilate(support, np.ones((2 * RING + 1, 2 * RING + 1), np.uint8))
    ring = (far > 0) & (near == 0)
    bg = image[ring]
    return float((image[support > 0].mean() - bg.mean()) / max(bg.std(), 1e-3))


def make_sample(
    rng: np.random.Generator,
    config: SynthConfig = SynthConfig(),
    background: np.ndarray | None = None,
    kind: str | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """One synthetic image.

    Args:
        rng: the image's own generator.
        background: a real background (H, W) float32 in [0, 1] of ``config.size``; else procedural.
        kind: scene kind for procedural backgrounds (random when None).

    Returns ``image`` uint8 (H, W), ``mask`` bool (H, W) and one dict per target with
    ``centroid`` (row, col), ``area``, ``bbox`` (row0, col0, row1, col1; exclusive ends),
    ``size_class``, ``shape`` and the measured ``scr``.
    """
    size = config.size
    if background is None:
        kind = kind or SCENE_KINDS[int(rng.integers(0, len(SCENE_KINDS)))]
        background = make_background(rng, kind, size)
    image = background.astype(np.float32).copy()
    occupied = np.zeros((size, size), np.uint8)
    layer = np.zeros((size, size), np.float32)
    supports: list[tuple[np.ndarray, str, str, float]] = []
    n_targets = int(rng.integers(config.targets[0], config.targets[1] + 1))
    for _ in range(n_targets):
        size_class = ["point", "spot", "extended"][int(rng.choice(3, p=np.asarray(config.class_probs)))]
        shape_mask, shape = _target_shape(rng, size_class)
        th, tw = shape_mask.shape
        margin = RING + 1  # keep the SCR ring inside the image
        if th + 2 * margin >= size or tw + 2 * margin >= size:
            continue
        for _attempt in range(20):
            y = int(rng.integers(margin, size - margin - th))
            x = int(rng.integers(margin, size - margin - tw))
            if not occupied[y - GAP : y + th + GAP, x - GAP : x + tw + GAP].any():
                break
        else:
            continue  # no free place: fewer targets rather than touching ones
        support = np.zeros((size, size), np.uint8)
        support[y : y + th, x : x + tw] = shape_mask
        occupied |= support
        # Brightest at the centre, as a real hot target: a smooth profile inside the support.
        dist = cv2.distanceTransform(np.pad(shape_mask, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
        profile = 0.6 + 0.4 * dist / max(float(dist.max()), 1.0)
        unit = np.zeros((size, size), np.float32)
        unit[y : y + th, x : x + tw] = profile * shape_mask
        unit = cv2.GaussianBlur(unit, (5, 5), 0)
        # Amplitude from the requested SCR against the local background.
        near = cv2.dilate(support, np.ones((2 * GAP + 1, 2 * GAP + 1), np.uint8))
        far = cv2.dilate(support, np.ones((2 * RING + 1, 2 * RING + 1), np.uint8))
        bg = image[(far > 0) & (near == 0)]
        scr = rng.uniform(*config.scr)
        on = support > 0
        wanted = bg.mean() + scr * max(float(bg.std()), 0.01)
        amplitude = max((wanted - image[on].mean()) / max(float(unit[on].mean()), 1e-3), 0.02)
        layer += amplitude * unit
        supports.append((support, size_class, shape, scr))
    image8 = np.round(np.clip(image + layer, 0, 1) * 255).astype(np.uint8)
    mask = occupied > 0
    targets = []
    for support, size_class, shape, _requested in supports:
        ys, xs = np.nonzero(support)
        area = int(len(ys))
        targets.append({
            "centroid": [round(float(ys.mean()), 3), round(float(xs.mean()), 3)],
            "area": area,
            "bbox": [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1],
            "size_class": size_class_of(area),
            "shape": shape,
            "scr": round(_measure_scr(image8.astype(np.float32), support), 3),
        })
    return image8, mask, targets


# ------------------------------------------------------------------------------------------------
# Whole datasets
# ------------------------------------------------------------------------------------------------


def _load_backgrounds(folder: Path) -> list[Path]:
    from sirst.data.io import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: backgrounds folder not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) to use as backgrounds")
    return files


def _real_background(rng: np.random.Generator, path: Path, size: int) -> np.ndarray:
    """A random crop of a real image, resized so its short side is at least ``size``."""
    from sirst.data.io import read_image

    img = read_image(path)
    h, w = img.shape
    scale = max(size / h, size / w) * rng.uniform(1.0, 1.5)
    img = cv2.resize(img, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_AREA)
    y = int(rng.integers(0, img.shape[0] - size + 1))
    x = int(rng.integers(0, img.shape[1] - size + 1))
    return img[y : y + size, x : x + size]


def _one(args: tuple[int, int, SynthConfig, list[Path] | None]) -> tuple[str, np.ndarray, np.ndarray, list[dict]]:
    seed, index, config, backgrounds = args
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    sample_id = f"{index:06d}"
    if backgrounds:
        src = backgrounds[int(rng.integers(0, len(backgrounds)))]
        image, mask, targets = make_sample(rng, config, background=_real_background(rng, src, config.size))
        kind = f"real:{src.name}"
    else:
        kind = SCENE_KINDS[index % len(SCENE_KINDS)]  # balanced scene kinds
        image, mask, targets = make_sample(rng, config, kind=kind)
    for k, t in enumerate(targets):
        t.update({"image": sample_id, "index": k, "background": kind})
    return sample_id, image, mask, targets


def synthesize(
    out_dir: str | os.PathLike,
    num: int,
    seed: int = 0,
    size: int = 256,
    backgrounds: str | os.PathLike | None = None,
    scr: tuple[float, float] = (2.0, 12.0),
    targets: tuple[int, int] = (1, 3),
    progress: bool = True,
    workers: int = 1,
) -> Path:
    """Write a synthetic dataset in the standard layout and return its folder.

    Creates ``images/<id>.png`` (8-bit), ``masks/<id>.png`` (0/255), ``50_50/train.txt`` and
    ``50_50/test.txt`` (a seeded half/half split) and ``targets.json`` (one record per target:
    image id, centroid, area, bbox, size class, shape, SCR, background kind).
    """
    from tqdm import tqdm

    from sirst.data.io import write_png

    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    if size < 64 or size % 16:
        raise ValueError(f"--size must be a multiple of 16 and >= 64, got {size}")
    if not (0 <= scr[0] <= scr[1]):
        raise ValueError(f"--scr must be MIN,MAX with 0 <= MIN <= MAX, got {scr}")
    if not (1 <= targets[0] <= targets[1]):
        raise ValueError(f"--targets must be MIN,MAX with 1 <= MIN <= MAX, got {targets}")
    out = Path(out_dir)
    config = SynthConfig(size=size, scr=(float(scr[0]), float(scr[1])), targets=(int(targets[0]), int(targets[1])))
    bg_files = _load_backgrounds(Path(backgrounds)) if backgrounds is not None else None
    jobs = [(seed, i, config, bg_files) for i in range(num)]
    records: list[dict] = []
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers)
        results = pool.map(_one, jobs, chunksize=8)
    else:
        pool, results = None, map(_one, jobs)
    try:
        for sample_id, image, mask, tgts in tqdm(results, total=num, desc="synth", unit="img", disable=not progress):
            write_png(out / "images" / f"{sample_id}.png", image)
            write_png(out / "masks" / f"{sample_id}.png", mask)
            records.extend(tgts)
    finally:
        if pool is not None:
            pool.shutdown()
    ids = [f"{i:06d}" for i in range(num)]
    order = np.random.default_rng(np.random.SeedSequence([seed, 2**31])).permutation(num)
    n_train = num // 2 if num > 1 else 1
    split = out / "50_50"
    split.mkdir(parents=True, exist_ok=True)
    (split / "train.txt").write_text("".join(ids[i] + "\n" for i in sorted(order[:n_train])))
    (split / "test.txt").write_text("".join(ids[i] + "\n" for i in sorted(order[n_train:])) if num > 1 else ids[0] + "\n")
    (out / "targets.json").write_text(json.dumps(records, indent=1, sort_keys=True))
    return out
