"""Evaluate classical methods (and networks, for comparison tables) with the shared sirst.metrics code.

Classical response maps are binarised per image with the DNANet paper's adaptive threshold (Eq. 13,
:func:`sirst.metrics.adaptive_threshold`) or a fixed threshold on the response normalised by its
maximum; networks at probability 0.5. The Pd-Fa curve sweeps a threshold on the normalised
response (classical, :data:`CURVE_THRESHOLDS`) or the probability (networks, logit-spaced
:data:`NETWORK_CURVE_THRESHOLDS`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Curve thresholds on the normalised response / probability.
CURVE_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.0, 1.0, 0.05), 2))
#: Probability thresholds of a network's Pd-Fa curve: evenly spaced in logit from -9 to 9 (1.2e-4 to
#: 1 - 1.2e-4, 0.5 included). A trained network's probabilities sit near 0 and 1, so evenly spaced
#: probabilities would bunch the curve into a few points.
NETWORK_CURVE_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in 1.0 / (1.0 + np.exp(-np.linspace(-9.0, 9.0, 37))))


@dataclass(frozen=True)
class Sample:
    """One test image: its id and the image/mask files."""

    id: str
    image: Path
    mask: Path


@dataclass
class MethodResult:
    """Metrics of one method over a split.

    Attributes:
        method: display name (``tophat``, ``dnanet:weights.pt``...).
        threshold: ``"adaptive"`` or the fixed threshold used.
        metrics: :meth:`sirst.metrics.SirstMetrics.compute` (fractions).
        curve: ``thresholds``/``pd``/``fa`` (and pixel ROC) lists, see :class:`sirst.metrics.ROCMetric`.
        seconds_per_image: mean time of the method itself (no file IO), seconds.
        num_images: images evaluated.
    """

    method: str
    threshold: str
    metrics: dict[str, float]
    curve: dict[str, Any]
    seconds_per_image: float
    num_images: int
    extra: dict[str, Any] = field(default_factory=dict)

    def table_row(self) -> dict[str, float | str]:
        """The paper's Table II columns: IoU, nIoU, Pd (x100), Fa (x1e-6), plus seconds per image."""
        m = self.metrics
        return {
            "method": self.method,
            "iou_x100": 100.0 * m["iou"],
            "niou_x100": 100.0 * m["niou"],
            "pd_x100": 100.0 * m["pd"],
            "fa_x1e6": 1e6 * m["fa"],
            "seconds_per_image": self.seconds_per_image,
        }


def load_samples(root: str | os.PathLike, split: str = "auto", subset: str = "test", max_images: int | None = None) -> list[Sample]:
    """The samples of ``subset`` (``train``/``test``) of the dataset at ``root``, in split-file order."""
    from sirst.data.dataset import locate_pairs, read_ids, resolve_split

    if subset not in ("train", "test"):
        raise ValueError(f"{subset}: subset must be 'train' or 'test'")
    files = resolve_split(root, split)
    split_file = getattr(files, subset)
    ids = read_ids(split_file)
    if not ids:
        raise ValueError(f"{split_file}: split file lists no images")
    if max_images is not None:
        if max_images < 1:
            raise ValueError(f"--max-images must be >= 1, got {max_images}")
        ids = ids[:max_images]
    return [Sample(i, img, mask) for i, img, mask in locate_pairs(Path(root), ids, split_file)]


def _run_classical(job: tuple[str, str]) -> tuple[np.ndarray, float]:
    """Worker: ``(method name, image path)`` -> ``(response (H, W) float32, seconds)``."""
    from sirst.classical import get_method
    from sirst.data.io import read_image

    name, path = job
    image = read_image(path)
    fn = get_method(name)
    start = time.perf_counter()
    out = fn(image)
    return out, time.perf_counter() - start


def classical_maps(name: str, samples: Sequence[Sample], jobs: int = 1, progress: bool = True) -> Iterator[tuple[np.ndarray, float]]:
    """Response maps ``(H, W)`` float32 and seconds of ``name`` on ``samples``, in order.

    ``jobs > 1`` spreads the images over that many processes.
    """
    from tqdm import tqdm

    from sirst.classical import get_method

    get_method(name)  # fail before starting workers
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    work = [(name, str(s.image)) for s in samples]
    bar = tqdm(total=len(work), desc=name, unit="img", disable=not progress)
    try:
        if jobs == 1:
            for job in work:
                yield _run_classical(job)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                for res in pool.map(_run_classical, work, chunksize=1):
                    yield res
                    bar.update()
    finally:
        bar.close()


def normalise_response(response: np.ndarray) -> np.ndarray:
    """A classical response map ``(H, W)`` divided by its maximum (all zeros if the maximum is <= 0)."""
    response = np.asarray(response, dtype=np.float32)
    peak = float(response.max())
    return response / peak if peak > 0 else np.zeros_like(response)


def binarise(score: np.ndarray, fixed: float | None = None) -> np.ndarray:
    """The prediction ``(H, W)`` bool that the metrics score: ``score > t`` with ``t`` the adaptive
    threshold of Eq. 13 (:func:`sirst.metrics.adaptive_threshold`) or ``fixed``."""
    from sirst.metrics import adaptive_threshold

    thr = adaptive_threshold(score) if fixed is None else fixed
    return np.asarray(score) > thr


def _accumulate(
    method: str, threshold: str, maps: Iterator[tuple[np.ndarray, float]], samples: Sequence[Sample], fixed: float | None, normalise: bool
) -> MethodResult:
    from sirst.data.io import read_mask
    from sirst.metrics import ROCMetric, SirstMetrics

    metrics = SirstMetrics(threshold=0.5)
    roc = ROCMetric(CURVE_THRESHOLDS if normalise else NETWORK_CURVE_THRESHOLDS)
    seconds = 0.0
    n = 0
    for sample, (score, dt) in zip(samples, maps):
        mask = read_mask(sample.mask)
        if score.shape != mask.shape:
            raise ValueError(f"{sample.mask}: mask size {mask.shape} differs from the response map {score.shape}")
        score = np.asarray(score, dtype=np.float32)
        if normalise:
            score = normalise_response(score)
        metrics.update([binarise(score, fixed).astype(np.float32)], [mask])
        roc.update([score], [mask])
        seconds += dt
        n += 1
    if n != len(samples):
        raise RuntimeError(f"{method}: got {n} maps for {len(samples)} images")
    return MethodResult(method, threshold, metrics.compute(), roc.compute(), seconds / max(n, 1), n)


def evaluate_classical(
    name: str, samples: Sequence[Sample], threshold: str | float = "adaptive", jobs: int = 1, progress: bool = True
) -> MethodResult:
    """Run classical method ``name`` on ``samples`` and score it.

    Args:
        threshold: ``"adaptive"`` (Eq. 13 per image) or a float in [0, 1) on the response divided by
            its per-image maximum.
    """
    fixed = parse_threshold(threshold)
    maps = classical_maps(name, samples, jobs, progress)
    return _accumulate(name, "adaptive" if fixed is None else str(fixed), maps, samples, fixed, normalise=True)


def evaluate_network(weights: str | os.PathLike, samples: Sequence[Sample], device: str = "cpu", progress: bool = True, label: str | None = None) -> MethodResult:
    """Run the network of checkpoint ``weights`` on ``samples``; probabilities thresholded at 0.5."""
    from tqdm import tqdm

    from sirst.checkpoint import model_from_checkpoint
    from sirst.data.io import read_image
    from sirst.inference import Detector

    from sirst.weights import resolve_weights

    path = resolve_weights(weights)  # a path, or a bundled name (nuaa, nudt)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: network weights not found")
    # No global torch.set_grad_enabled(False) here: callers go on training (sirst experiment);
    # the Detector runs under inference_mode.
    detector = Detector(model_from_checkpoint(path, device), device=device)

    def maps() -> Iterator[tuple[np.ndarray, float]]:
        for s in tqdm(samples, desc=label or path.name, unit="img", disable=not progress):
            image = read_image(s.image)
            start = time.perf_counter()
            prob = detector.predict_scores([image])[0]  # inference mode inside, no global grad switch
            yield np.asarray(prob, dtype=np.float32), time.perf_counter() - start

    return _accumulate(label or f"dnanet:{path}", "0.5", maps(), samples, 0.5, normalise=False)


def parse_threshold(value: str | float) -> float | None:
    """``"adaptive"`` -> ``None``; a number in [0, 1) -> that float; anything else ValueError."""
    if isinstance(value, str):
        if value.strip().lower() == "adaptive":
            return None
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{value}: --threshold must be 'adaptive' or a number in [0, 1)") from None
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{value}: --threshold must be 'adaptive' or a number in [0, 1)")
    return float(value)


def write_curve(result: MethodResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<method>_pdfa.csv`` (threshold, pd, fa, tpr, fpr) and ``<method>_pdfa.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = safe_name(result.method)
    c = result.curve
    csv_path = out_dir / f"{stem}_pdfa.csv"
    rows = ["threshold,pd,fa,tpr,fpr"]
    rows += [f"{t:.4f},{pd:.6f},{fa:.9g},{tpr:.6f},{fpr:.9g}" for t, pd, fa, tpr, fpr in zip(c["thresholds"], c["pd"], c["fa"], c["tpr"], c["fpr"])]
    csv_path.write_text("\n".join(rows) + "\n")
    fig, ax = plt.subplots(figsize=(4.5, 3.5), dpi=120)
    ax.plot(np.asarray(c["fa"]) * 1e6, c["pd"], marker=".")
    ax.set_xlabel("Fa (x1e-6)")
    ax.set_ylabel("Pd")
    ax.set_title(f"Pd-Fa: {result.method}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    png_path = out_dir / f"{stem}_pdfa.png"
    fig.savefig(png_path)
    plt.close(fig)
    return csv_path, png_path


def safe_name(method: str) -> str:
    """A file-name-safe version of a method label (``dnanet:/a/b.pt`` -> ``dnanet_b``)."""
    if ":" in method:
        kind, rest = method.split(":", 1)
        method = f"{kind}_{Path(rest).stem}"
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in method)


def markdown_table(results: Sequence[MethodResult]) -> str:
    """Markdown table with the paper's Table II columns plus seconds per image."""
    lines = [
        "| Method | IoU (x1e-2) | nIoU (x1e-2) | Pd (x1e-2) | Fa (x1e-6) | s / image |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        row = r.table_row()
        lines.append(
            f"| {row['method']} | {row['iou_x100']:.2f} | {row['niou_x100']:.2f} | {row['pd_x100']:.2f} "
            f"| {row['fa_x1e6']:.2f} | {row['seconds_per_image']:.4f} |"
        )
    return "\n".join(lines)


def write_results(results: Sequence[MethodResult], out_dir: Path, stem: str = "compare") -> tuple[Path, Path]:
    """Write ``<stem>.md`` (table) and ``<stem>.json`` (rows + full metrics + curves)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{stem}.md"
    md.write_text(markdown_table(results) + "\n")
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps({"rows": [r.table_row() for r in results], "results": [asdict(r) for r in results]}, indent=2))
    return md, js
