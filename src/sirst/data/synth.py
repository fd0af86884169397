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
  :mod:`sirst.metrics.sizes`).

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

from sirst.metrics.sizes import size_class_name

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
            "size_class": size_class_name(area),
            "shape": shape,
            "scr": round(_measure_scr(image8.astype(np.float32), support), 3),
        })
    return image8, mask, targets


# ------------------------------------------------------------------------------------------------
# Hard negatives: clutter that resembles targets but is not one
# ------------------------------------------------------------------------------------------------

# What real detectors alarm on, drawn without any target label. Each kind is a function
# (rng, image (H, W) float32 in [0, 1]) -> image; they never write into the mask.
CLUTTER_KINDS = ("edges", "coast", "hud", "text", "structures", "lamps", "hot_pixels", "fixed_pattern",
                 "dark_sky", "horizon")


def _edges(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Bright cloud edges: a thresholded fractal field with a sharp, sunlit rim."""
    h, w = img.shape
    field = _fractal(rng, h, w, rng.uniform(2.4, 3.2))
    inside = (field > rng.uniform(0.3, 1.2)).astype(np.float32)
    rim = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    rim = cv2.GaussianBlur(rim, (3, 3), 0)
    return img + rng.uniform(0.03, 0.12) * inside + rng.uniform(0.05, 0.3) * rim


def _coast(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A coastline: warm land with a ragged boundary against cooler water (or the reverse)."""
    h, w = img.shape
    xs = np.arange(w, dtype=np.float32)
    profile = h * rng.uniform(0.2, 0.8) + h * 0.08 * _fractal(rng, 1, w, 2.0)[0] + rng.uniform(-0.3, 0.3) * (xs - w / 2)
    land = (np.arange(h, dtype=np.float32)[:, None] > profile[None, :]).astype(np.float32)
    if rng.random() < 0.5:
        land = 1.0 - land
    texture = 0.05 * _fractal(rng, h, w, 1.8)
    out = img * (1 - land) + land * (rng.uniform(0.3, 0.7) + texture)
    # Surf and rocks: bright specks right on the boundary, the clutter most like a point target.
    rim = cv2.morphologyEx(land, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    specks = (rng.random((h, w)) < 0.05).astype(np.float32) * rim
    specks = cv2.GaussianBlur(cv2.dilate(specks, np.ones((2, 2), np.uint8)), (3, 3), 0)
    return out + rng.uniform(0.1, 0.35) * specks


def _hud(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Head-up display graphics: crosshairs, brackets, tick scales and boxes, saturated white or black."""
    h, w = img.shape
    out = img.copy()
    value = 1.0 if rng.random() < 0.8 else 0.0
    thick = int(rng.integers(1, 3))
    cy, cx = int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4))
    gap, arm = int(rng.integers(3, 12)), int(rng.integers(10, 60))
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):  # crosshair with a hole in the middle
        cv2.line(out, (cx + dx * gap, cy + dy * gap), (cx + dx * (gap + arm), cy + dy * (gap + arm)), value, thick)
    if rng.random() < 0.7:  # centre dot or small box: the HUD part that looks most like a target
        r = int(rng.integers(1, 3))
        cv2.rectangle(out, (cx - r, cy - r), (cx + r, cy + r), value, -1 if rng.random() < 0.5 else 1)
    for _ in range(int(rng.integers(0, 4))):  # corner brackets
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        s = int(rng.integers(6, 20))
        cv2.line(out, (x0, y0), (x0 + s, y0), value, thick)
        cv2.line(out, (x0, y0), (x0, y0 + s), value, thick)
    if rng.random() < 0.6:  # a tick scale along one border (heading or altitude tape)
        y = int(rng.integers(4, h // 6)) if rng.random() < 0.5 else int(rng.integers(5 * h // 6, h - 4))
        step = int(rng.integers(6, 16))
        for x in range(int(rng.integers(0, step)), w, step):
            cv2.line(out, (x, y), (x, y + int(rng.integers(2, 6))), value, 1)
    return out


def _text(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Overlay text: time stamps, coordinates, camera names (small fonts make dot-like glyphs)."""
    h, w = img.shape
    out = img.copy()
    alphabet = "0123456789:.-+NSEWABCDEFHKMRTX "
    for _ in range(int(rng.integers(1, 5))):
        s = "".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), int(rng.integers(3, 14))))
        scale = rng.uniform(0.25, 0.6)
        org = (int(rng.integers(0, max(1, w - 40))), int(rng.integers(8, h)))
        value = 1.0 if rng.random() < 0.8 else 0.0
        glyphs = np.zeros((h, w), np.uint8)  # putText draws on 8-bit images only
        cv2.putText(glyphs, s, org, int(rng.choice([cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_SIMPLEX])), scale, 255,
                    1, cv2.LINE_AA if rng.random() < 0.5 else cv2.LINE_8)
        alpha = glyphs.astype(np.float32) / 255.0
        out = out * (1 - alpha) + value * alpha
    return out


def _structures(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Buildings with lit window grids and warm roof edges."""
    h, w = img.shape
    out = img.copy()
    for _ in range(int(rng.integers(1, 4))):
        bw, bh = int(rng.integers(w // 8, w // 3)), int(rng.integers(h // 6, h // 2))
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(h // 4, h - bh + 1))
        out[y0 : y0 + bh, x0 : x0 + bw] = rng.uniform(0.2, 0.55)
        sx, sy = int(rng.integers(4, 10)), int(rng.integers(5, 12))
        ww, wh = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        level = rng.uniform(0.08, 0.35)
        lit = rng.uniform(0.2, 0.9)
        for y in range(y0 + 2, y0 + bh - wh, sy):
            for x in range(x0 + 2, x0 + bw - ww, sx):
                if rng.random() < lit:
                    out[y : y + wh, x : x + ww] += level
    return cv2.GaussianBlur(out, (3, 3), 0)


def _lamps(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Street lamps and lit vents: small hot blobs on poles or walls, in rows (context, not isolation)."""
    h, w = img.shape
    out = img.copy()
    y = int(rng.integers(h // 5, 3 * h // 5))
    x, step = int(rng.integers(5, 40)), int(rng.integers(25, 70))
    pole = rng.uniform(0.05, 0.2)
    while x < w - 3:
        top = y + int(rng.integers(-6, 7))
        cv2.line(out, (x, top), (x, h - 1), float(np.clip(img[min(top, h - 1), x] + pole, 0, 1)), 1)
        r = rng.uniform(1.0, 2.5)
        cv2.circle(out, (x, top), int(round(r)), float(rng.uniform(0.7, 1.0)), -1)
        x += step + int(rng.integers(-5, 6))
    return cv2.GaussianBlur(out, (3, 3), 0)


def _hot_pixels(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Isolated defective pixels: single, sharp (no optical blur, unlike a real point target)."""
    h, w = img.shape
    out = img.copy()
    n = int(rng.integers(3, 40))
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    out[ys, xs] = np.where(rng.random(n) < 0.8, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.1, n))
    return out


def _fixed_pattern(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Fixed-pattern noise of an uncalibrated sensor: column and row offsets plus a little speckle."""
    h, w = img.shape
    cols = rng.normal(0, rng.uniform(0.005, 0.03), w).astype(np.float32)[None, :]
    rows = rng.normal(0, rng.uniform(0.0, 0.015), h).astype(np.float32)[:, None]
    return img + cols + rows + rng.uniform(0.005, 0.02) * rng.standard_normal((h, w)).astype(np.float32)


def _dark_sky(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A dark, nearly uniform sky stretched by automatic gain: the sensor noise dominates."""
    h, w = img.shape
    base = rng.uniform(0.03, 0.2) + 0.01 * _fractal(rng, h, w, 3.0)
    noise = rng.uniform(0.01, 0.05) * rng.standard_normal((h, w)).astype(np.float32)
    if rng.random() < 0.5:  # correlated noise blobs a few pixels wide
        noise = cv2.GaussianBlur(noise, (0, 0), rng.uniform(0.6, 1.2)) * 2.0
    return base + noise


def _horizon(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A sea horizon: a thin bright band with glints just below it."""
    h, w = img.shape
    y = int(rng.integers(h // 6, 5 * h // 6))
    out = img.copy()
    out[:y] = rng.uniform(0.3, 0.6) + 0.03 * _fractal(rng, y, w, 3.0)
    band = int(rng.integers(1, 4))
    out[y : y + band] += rng.uniform(0.1, 0.3)
    glints = (rng.random((min(12, h - y), w)) < rng.uniform(0.002, 0.02)).astype(np.float32)
    glints = cv2.dilate(glints, np.ones((1, int(rng.integers(1, 4))), np.uint8))
    out[y : y + glints.shape[0]] += rng.uniform(0.1, 0.35) * glints
    return cv2.GaussianBlur(out, (3, 3), 0)


_CLUTTER = {"edges": _edges, "coast": _coast, "hud": _hud, "text": _text, "structures": _structures,
            "lamps": _lamps, "hot_pixels": _hot_pixels, "fixed_pattern": _fixed_pattern, "dark_sky": _dark_sky,
            "horizon": _horizon}


def add_clutter(rng: np.random.Generator, image: np.ndarray, kinds: tuple[str, ...] | list[str]) -> np.ndarray:
    """Draw the hard-negative clutter ``kinds`` (see :data:`CLUTTER_KINDS`) onto ``image``.

    ``image`` float32 (H, W) in [0, 1]; returns a new array of the same shape, clipped to [0, 1].
    Nothing drawn here is a target: masks are not touched.
    """
    out = image.astype(np.float32)
    for kind in kinds:
        if kind not in _CLUTTER:
            raise ValueError(f"unknown clutter kind {kind!r}; valid: {', '.join(CLUTTER_KINDS)}")
        out = _CLUTTER[kind](rng, out).astype(np.float32)
    return np.clip(out, 0.0, 1.0)


def make_hard_sample(
    rng: np.random.Generator,
    config: SynthConfig = SynthConfig(),
    negative_p: float = 0.5,
    background: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """A training sample with hard-negative clutter: a procedural (or given) background with one to
    three clutter kinds; with probability ``negative_p`` no target at all (empty mask), else
    targets placed as :func:`make_sample` does, over the clutter.

    Returns ``image`` uint8 (H, W), ``mask`` bool (H, W), target records (see :func:`make_sample`).
    """
    size = config.size
    if background is None:
        background = make_background(rng, SCENE_KINDS[int(rng.integers(0, len(SCENE_KINDS)))], size)
    n = int(rng.integers(1, 4))
    kinds = [CLUTTER_KINDS[int(i)] for i in rng.choice(len(CLUTTER_KINDS), size=n, replace=False)]
    # Dark sky replaces the scene, so it goes first; overlays (HUD, text, hot pixels) go last.
    order = {k: i for i, k in enumerate(("dark_sky", "coast", "horizon", "edges", "structures", "lamps",
                                         "fixed_pattern", "hot_pixels", "hud", "text"))}
    kinds.sort(key=order.__getitem__)
    cluttered = add_clutter(rng, background, kinds)
    if rng.random() < negative_p:
        return np.round(cluttered * 255).astype(np.uint8), np.zeros((size, size), bool), []
    return make_sample(rng, config, background=cluttered)


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


def _one(args: tuple[int, int, SynthConfig, list[Path] | None, float]) -> tuple[str, np.ndarray, np.ndarray, list[dict]]:
    seed, index, config, backgrounds, hard_p = args
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    sample_id = f"{index:06d}"
    # Drawn only when asked for, so datasets without hard samples keep their bytes.
    hard = hard_p > 0 and rng.random() < hard_p
    if backgrounds:
        src = backgrounds[int(rng.integers(0, len(backgrounds)))]
        background = _real_background(rng, src, config.size)
        kind = f"real:{src.name}"
    else:
        kind = SCENE_KINDS[index % len(SCENE_KINDS)]  # balanced scene kinds
        background = None
    if hard:
        if background is None:
            background = make_background(rng, kind, config.size)
        image, mask, targets = make_hard_sample(rng, config, negative_p=0.5, background=background)
        kind = f"{kind}+clutter"
    elif background is not None:
        image, mask, targets = make_sample(rng, config, background=background)
    else:
        image, mask, targets = make_sample(rng, config, kind=kind)
    for k, t in enumerate(targets):
        t.update({"image": sample_id, "index": k, "background": kind})
    return sample_id, image, mask, targets


def check_destination(out_dir: str | os.PathLike, backgrounds: str | os.PathLike | None = None,
                      overwrite: bool = False) -> None:
    """Raise before anything is written: ``backgrounds`` is not a folder, or ``out_dir`` already holds a
    dataset (files in ``images/`` or ``masks/``) and ``overwrite`` is False."""
    out = Path(out_dir)
    if backgrounds is not None and not Path(backgrounds).is_dir():
        raise FileNotFoundError(f"--backgrounds {backgrounds}: no such folder")
    if not overwrite and out.is_dir() and any((out / d).is_dir() and any((out / d).iterdir()) for d in ("images", "masks")):
        raise ValueError(f"--out {out}: already holds a dataset (images/, masks/); pass --overwrite to replace it, or "
                         "another --out")


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
    hard_p: float = 0.0,
    overwrite: bool = True,
) -> Path:
    """Write a synthetic dataset in the standard layout and return its folder.

    ``hard_p``: fraction of images drawn with hard-negative clutter (:func:`make_hard_sample`: HUD graphics,
    text, edges, lamps, hot pixels, sensor noise ...), half of them without any target. ``overwrite=False``
    refuses a folder that already holds a dataset (:func:`check_destination`).

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
    check_destination(out_dir, backgrounds, overwrite)
    out = Path(out_dir)
    config = SynthConfig(size=size, scr=(float(scr[0]), float(scr[1])), targets=(int(targets[0]), int(targets[1])))
    bg_files = _load_backgrounds(Path(backgrounds)) if backgrounds is not None else None
    if not 0.0 <= hard_p <= 1.0:
        raise ValueError(f"--hard-p must be in [0, 1], got {hard_p}")
    jobs = [(seed, i, config, bg_files, float(hard_p)) for i in range(num)]
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
