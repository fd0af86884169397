"""Figures of the DNANet paper: outputs with detections circled (Fig. 7), 3D response surfaces
(Fig. 8) and Pd-Fa curves on target-size subsets (Fig. 9). Matplotlib, Agg backend, PNG files.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sirst.metrics import SIZE_SUBSETS, ImageMatch

#: Circle colours (RGB 0-255), distinct from any grey pixel of the images: cyan for correctly detected
#: targets, red for false alarms, yellow (dashed) for missed targets.
DETECTED_RGB: tuple[int, int, int] = (0, 200, 255)
FALSE_ALARM_RGB: tuple[int, int, int] = (255, 40, 40)
MISS_RGB: tuple[int, int, int] = (255, 230, 0)
_MIN_RADIUS = 5.0  # pixels of the image: a circle never hides a point target under its line


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _radius(labels: np.ndarray, k: int, centroid: np.ndarray) -> float:
    """Circle radius around component ``k`` (0-based): its farthest pixel from the centroid + 3 px."""
    rows, cols = np.nonzero(labels == k + 1)
    if rows.size == 0:
        return _MIN_RADIUS
    r = float(np.sqrt(((rows - centroid[0]) ** 2 + (cols - centroid[1]) ** 2).max()))
    return max(_MIN_RADIUS, r + 3.0)


def _circles(ax, match: ImageMatch, linewidth: float) -> None:
    """Circle the detected, missed (ground-truth centroids) and false-alarm (prediction) components."""
    from matplotlib.patches import Circle

    def add(labels: np.ndarray, k: int, centroid: np.ndarray, rgb: tuple[int, int, int], style: str) -> None:
        r = _radius(labels, k, centroid)
        # No antialiasing: the circle's pixels carry exactly its colour (tests look for them).
        ax.add_patch(Circle((centroid[1], centroid[0]), r, fill=False, edgecolor=_hex(rgb), linewidth=linewidth,
                            linestyle=style, antialiased=False))

    for k in match.detected:
        add(match.gt_labels, int(k), match.gt.centroid[k], DETECTED_RGB, "-")
    for k in match.missed:
        add(match.gt_labels, int(k), match.gt.centroid[k], MISS_RGB, "--")
    for k in match.false_alarms:
        add(match.pred_labels, int(k), match.pred.centroid[k], FALSE_ALARM_RGB, "-")


def match_caption(match: ImageMatch) -> str:
    """``IoU 0.71 | 2/3 det | 1 FA``: the per-image numbers shown under a panel."""
    iou = match.iou
    iou_s = "IoU n/a" if np.isnan(iou) else f"IoU {iou:.2f}"
    return f"{iou_s} | {len(match.pairs)}/{len(match.gt)} det | {len(match.false_alarms)} FA"


def draw_comparison(
    image: np.ndarray,
    mask: np.ndarray,
    preds: Mapping[str, np.ndarray],
    matches: Mapping[str, ImageMatch],
    path: str | os.PathLike,
    title: str = "",
    panel_inches: float = 2.6,
    dpi: int = 100,
) -> Path:
    """Input, ground truth and each method's binary output side by side, targets circled (Fig. 7).

    Args:
        image: ``(H, W)`` float in [0, 1].
        mask: ``(H, W)`` ground truth (``> 0.5`` target).
        preds: method name -> ``(H, W)`` bool prediction, in display order.
        matches: method name -> :func:`sirst.metrics.match_image` of that prediction.
        path: PNG to write.

    Returns:
        ``path``. Circles: :data:`DETECTED_RGB` detected, :data:`FALSE_ALARM_RGB` false alarm,
        :data:`MISS_RGB` missed.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D

    names = list(preds)
    n = 2 + len(names)
    h, w = image.shape
    panel_h = panel_inches * h / w
    fig, axes = plt.subplots(1, n, figsize=(panel_inches * n, panel_h + 0.9), dpi=dpi, squeeze=False)
    axes = axes[0]
    # Circle lines 2 px wide whatever the image size.
    lw = 2.0 * 72.0 / dpi
    axes[0].imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(np.asarray(mask) > 0.5, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title("ground truth", fontsize=9)
    for ax, name in zip(axes[2:], names):
        ax.imshow(preds[name], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(match_caption(matches[name]), fontsize=7)
        _circles(ax, matches[name], lw)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        Line2D([], [], color=_hex(DETECTED_RGB), marker="o", linestyle="", markerfacecolor="none", label="detected"),
        Line2D([], [], color=_hex(FALSE_ALARM_RGB), marker="o", linestyle="", markerfacecolor="none", label="false alarm"),
        Line2D([], [], color=_hex(MISS_RGB), marker="o", linestyle="", markerfacecolor="none", label="missed"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, facecolor="white")
    plt.close(fig)
    return path


def target_window(mask: np.ndarray, margin: int = 12, min_side: int = 32, max_side: int = 96) -> tuple[slice, slice]:
    """The window of a 3D plot: the box around all targets plus ``margin``, at least ``min_side`` and at
    most ``max_side`` pixels a side (centred on the largest target when all of them do not fit); the
    whole image when there is no target."""
    mask = np.asarray(mask) > 0.5
    h, w = mask.shape
    if not mask.any():
        return slice(0, h), slice(0, w)
    rows, cols = np.nonzero(mask)
    r0, r1, c0, c1 = rows.min() - margin, rows.max() + 1 + margin, cols.min() - margin, cols.max() + 1 + margin
    if r1 - r0 > max_side or c1 - c0 > max_side:
        from sirst.targets import component_stats, label_components

        labels, n = label_components(mask)
        stats = component_stats(labels, n)
        cy, cx = stats.centroid[int(np.argmax(stats.area))]
        r0, r1 = int(cy) - max_side // 2, int(cy) + max_side // 2
        c0, c1 = int(cx) - max_side // 2, int(cx) + max_side // 2

    def fit(a: int, b: int, size: int) -> slice:
        side = min(max(b - a, min_side), size)
        mid = (a + b) // 2
        a = int(np.clip(mid - side // 2, 0, size - side))
        return slice(a, a + side)

    return fit(int(r0), int(r1), h), fit(int(c0), int(c1), w)


def draw_surfaces(
    image: np.ndarray,
    mask: np.ndarray,
    scores: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    title: str = "",
    max_mesh: int = 64,
    dpi: int = 90,
) -> Path:
    """3D surfaces of the input and of each method's score map around the targets (Fig. 8).

    Args:
        image: ``(H, W)`` float in [0, 1].
        mask: ``(H, W)`` ground truth; the window is :func:`target_window` of it.
        scores: method name -> ``(H, W)`` score in [0, 1].
        path: PNG to write.
        max_mesh: the surface mesh has at most this many points a side (strided beyond).
    """
    plt = _pyplot()
    rs, cs = target_window(mask)
    panels = {"input": np.asarray(image, dtype=np.float32), **{k: np.asarray(v, dtype=np.float32) for k, v in scores.items()}}
    n = len(panels)
    fig = plt.figure(figsize=(2.8 * n, 3.0), dpi=dpi)
    yy, xx = np.mgrid[rs, cs]
    step = max(1, int(np.ceil(max(yy.shape) / max_mesh)))
    for i, (name, z) in enumerate(panels.items()):
        ax = fig.add_subplot(1, n, i + 1, projection="3d")
        win = z[rs, cs]
        ax.plot_surface(xx[::step, ::step], yy[::step, ::step], win[::step, ::step], cmap="jet", vmin=0.0, vmax=1.0,
                        rstride=1, cstride=1, linewidth=0, antialiased=False)
        ax.set_zlim(0.0, 1.0)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=6)
        ax.view_init(elev=35, azim=-60)
    if title:
        fig.suptitle(f"{title}  (rows {rs.start}-{rs.stop - 1}, cols {cs.start}-{cs.stop - 1})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, facecolor="white")
    plt.close(fig)
    return path


def write_pdfa_subsets(curves: Mapping[str, Mapping[str, Any]], out_dir: str | os.PathLike, stem: str = "pdfa_subsets") -> tuple[Path, Path]:
    """Pd-Fa curves of several methods on the subsets point / point+spot / all (Fig. 9).

    Args:
        curves: method name -> :meth:`sirst.metrics.ROCMetric.compute` output (needs ``subsets``).
        out_dir: folder for ``<stem>.csv`` (method, subset, threshold, pd, fa, num_images,
            num_targets) and ``<stem>.png`` (one panel per subset, one line per method).

    Returns:
        ``(csv path, png path)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{stem}.csv"
    with open(csv_path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["method", "subset", "threshold", "pd", "fa", "num_images", "num_targets"])
        for method, c in curves.items():
            if "subsets" not in c:
                raise ValueError(f"{method}: curve has no size subsets (ROCMetric with pdfa=True is needed)")
            for subset in SIZE_SUBSETS:
                sc = c["subsets"][subset]
                for t, pd, fa in zip(c["thresholds"], sc["pd"], sc["fa"]):
                    wr.writerow([method, subset, f"{t:.4f}", f"{pd:.6f}", f"{fa:.9g}", sc["num_images"], sc["num_targets"]])
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(SIZE_SUBSETS), figsize=(4.2 * len(SIZE_SUBSETS), 3.6), dpi=110, squeeze=False)
    for ax, subset in zip(axes[0], SIZE_SUBSETS):
        n_img = n_tgt = 0
        for method, c in curves.items():
            sc = c["subsets"][subset]
            n_img, n_tgt = sc["num_images"], sc["num_targets"]
            fa = np.asarray(sc["fa"], dtype=float)
            pd = np.asarray(sc["pd"], dtype=float)
            keep = fa > 0  # log axis: Fa spans decades; thresholds with no false alarm are left out
            order = np.argsort(fa[keep], kind="stable")
            ax.plot(fa[keep][order], pd[keep][order], marker=".", label=method)
        ax.set_xscale("log")
        ax.set_title(f"{subset} ({n_img} images, {n_tgt} targets)", fontsize=9)
        ax.set_xlabel("Fa (false-alarm pixels / pixels)")
        ax.set_ylabel("Pd")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    png_path = out / f"{stem}.png"
    fig.savefig(png_path, facecolor="white")
    plt.close(fig)
    return csv_path, png_path


def rgb_pixel_count(png: str | os.PathLike, rgb: Sequence[int], tol: int = 0) -> int:
    """Pixels of a PNG whose RGB is within ``tol`` of ``rgb`` in every channel (for checks and tests)."""
    from PIL import Image

    a = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    return int(np.all(np.abs(a - np.asarray(rgb, dtype=np.int16)) <= tol, axis=-1).sum())
