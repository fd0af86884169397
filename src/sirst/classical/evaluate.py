"""Evaluate classical methods (and networks, for comparison tables) with the shared sirst.metrics code.

Classical response maps are binarised per image with the DNANet paper's adaptive threshold (Eq. 13,
:func:`sirst.classical.threshold.adaptive_threshold`) or a fixed threshold on the response normalised by its
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

from sirst.classical.threshold import adaptive_threshold

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
        """The paper's Table II columns: IoU, nIoU, Pd (x100), Fa (x1e-6), plus seconds per image, and
        the same under the reference protocol (``*_ref_*``) when it was computed."""
        m = self.metrics
        row: dict[str, float | str] = {
            "method": self.method,
            "iou_x100": 100.0 * m["iou"],
            "niou_x100": 100.0 * m["niou"],
            "pd_x100": 100.0 * m["pd"],
            "fa_x1e6": 1e6 * m["fa"],
            "seconds_per_image": self.seconds_per_image,
        }
        if "cpu_seconds_per_image" in self.extra:
            row["cpu_seconds_per_image"] = self.extra["cpu_seconds_per_image"]
        ref = self.extra.get("reference")
        if ref:  # the same predictions under the public code's protocol
            row.update({"iou_ref_x100": 100.0 * ref["iou"], "niou_ref_x100": 100.0 * ref["niou"],
                        "pd_ref_x100": 100.0 * ref["pd"], "fa_ref_x1e6": 1e6 * ref["fa"]})
        return row


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


def _run_classical_timed(job: tuple[str, str]) -> tuple[np.ndarray, float, float]:
    """Worker: ``(method, image path)`` -> ``(response (H, W) float32, wall seconds, CPU seconds)``.

    The CPU time of the worker process is what the method costs on this CPU even when other jobs
    share it (wall time then grows, CPU time does not; single-threaded BLAS assumed)."""
    from sirst.classical import get_method
    from sirst.data.io import read_image

    name, path = job
    image = read_image(path)
    fn = get_method(name)
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(image)
    return out, time.perf_counter() - start, time.process_time() - cpu


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
    threshold of Eq. 13 (:func:`sirst.classical.threshold.adaptive_threshold`) or ``fixed``."""
    thr = adaptive_threshold(score) if fixed is None else fixed
    return np.asarray(score) > thr


class _Scorer:
    """Metric accumulators of one method: Eq. 13 (or fixed-threshold) predictions scored with the
    exact and the reference protocol (:mod:`sirst.metrics`), and the Pd-Fa curve (exact).

    ``update`` scores one image and returns its one-line summary (:data:`IMAGE_COLUMNS`); ``state``
    and ``merge_state`` carry the running sums, so a cached run continues where it stopped.
    """

    def __init__(self, curve_thresholds: Sequence[float], fixed: float | None, normalise: bool) -> None:
        from sirst.metrics import ROCMetric, SirstMetrics

        self.fixed = fixed
        self.normalise = normalise
        self.exact = SirstMetrics(threshold=0.5)
        self.reference = SirstMetrics(threshold=0.5, protocol="reference")
        self.roc = ROCMetric(curve_thresholds)

    def update(self, score: np.ndarray, mask: np.ndarray, source: object) -> list[int]:
        from sirst.metrics import SirstMetrics

        if score.shape != mask.shape:
            raise ValueError(f"{source}: mask size {mask.shape} differs from the response map {score.shape}")
        score = np.asarray(score, dtype=np.float32)
        if self.normalise:
            score = normalise_response(score)
        # The binary prediction is what both protocols score; the reference protocol resizes it
        # (bilinear, > 0.5) to 256x256 like the public code's score maps.
        pred = binarise(score, self.fixed).astype(np.float32)
        one = SirstMetrics(threshold=0.5)
        one.update([pred], [mask])
        st = one.state()
        self.exact.merge_state(st)
        self.reference.update([pred], [mask])
        self.roc.update([score], [mask])
        seg, pdfa = st["segmentation"], st["pdfa"]
        return [int(seg["intersection"]), int(seg["union"]), int(pdfa["num_targets"]), int(pdfa["matched"][0]),
                int(pdfa["false_alarm_pixels"][0]), int(pdfa["num_pixels"])]

    def state(self) -> dict[str, Any]:
        return {"exact": self.exact.state(), "reference": self.reference.state(), "roc": self.roc.state()}

    def merge_state(self, state: dict[str, Any]) -> None:
        self.exact.merge_state(state["exact"])
        self.reference.merge_state(state["reference"])
        self.roc.merge_state(state["roc"])

    def result(self, method: str, threshold: str, seconds: float, n: int) -> MethodResult:
        res = MethodResult(method, threshold, self.exact.compute(), self.roc.compute(), seconds / max(n, 1), n)
        res.extra["reference"] = self.reference.compute()
        return res


#: Columns of a cached image summary: wall seconds of the method, pixels in the intersection and
#: union of prediction and mask, ground-truth targets, detected targets, false-alarm pixels, image
#: pixels (exact protocol), CPU seconds of the method (``None`` in rows cached before it was kept).
IMAGE_COLUMNS: tuple[str, ...] = ("seconds", "intersection", "union", "targets", "detected", "false_alarm_pixels", "pixels",
                                  "cpu_seconds")


def _accumulate(
    method: str, threshold: str, maps: Iterator[tuple[np.ndarray, float]], samples: Sequence[Sample], fixed: float | None, normalise: bool
) -> MethodResult:
    from sirst.data.io import read_mask

    scorer = _Scorer(CURVE_THRESHOLDS if normalise else NETWORK_CURVE_THRESHOLDS, fixed, normalise)
    seconds = 0.0
    n = 0
    for sample, (score, dt) in zip(samples, maps):
        scorer.update(score, read_mask(sample.mask), sample.mask)
        seconds += dt
        n += 1
    if n != len(samples):
        raise RuntimeError(f"{method}: got {n} maps for {len(samples)} images")
    return scorer.result(method, threshold, seconds, n)


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


#: Version of the per-method cache files written by :func:`evaluate_classical_cached`.
CACHE_FORMAT = 1


def cache_path(cache_dir: str | os.PathLike, name: str) -> Path:
    """The cache file of classical method ``name`` in ``cache_dir``: ``<name>.json``."""
    return Path(cache_dir) / f"{safe_name(name)}.json"


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _read_cache(path: Path, meta: dict[str, Any], ids: set[str]) -> dict[str, Any] | None:
    """The cache at ``path`` if it exists; ``ValueError`` when it belongs to another run."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: unreadable cache ({exc}); delete it to start this method again") from None
    for key, want in meta.items():
        if doc.get(key) != want:
            raise ValueError(f"{path}: cached {key} {doc.get(key)!r} differs from this run's {want!r}; "
                             "use another output folder or delete the file")
    foreign = sorted(set(doc["images"]) - ids)
    if foreign:
        raise ValueError(f"{path}: the cache holds {len(foreign)} images that are not in this split "
                         f"(e.g. {foreign[0]}); use another output folder or delete the file")
    return doc


def _write_atomic(path: Path, doc: dict[str, Any]) -> None:
    # Written next to the target and renamed over it: a run killed mid-write leaves the previous file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)


def _maps_until(name: str, samples: Sequence[Sample], jobs: int, deadline: float | None) -> Iterator[tuple[Sample, tuple[np.ndarray, float, float]]]:
    """``(sample, (response, wall s, CPU s))`` in order until ``deadline`` (``time.monotonic()``) passes.

    No image is started after the deadline; with ``jobs > 1`` at most ``2 * jobs`` images are in
    flight, so the run ends soon after it (unstarted work is cancelled on exit).
    """
    def open_() -> bool:
        return deadline is None or time.monotonic() < deadline

    if jobs == 1:
        for s in samples:
            if not open_():
                return
            yield s, _run_classical_timed((name, str(s.image)))
        return
    from collections import deque

    pool = ProcessPoolExecutor(max_workers=jobs)
    try:
        todo = iter(samples)
        flight: deque = deque()

        def submit() -> None:
            s = next(todo, None)
            if s is not None and open_():
                flight.append((s, pool.submit(_run_classical_timed, (name, str(s.image)))))

        for _ in range(2 * jobs):
            submit()
        while flight:
            s, fut = flight.popleft()
            res = fut.result()
            submit()
            yield s, res
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def evaluate_classical_cached(
    name: str,
    samples: Sequence[Sample],
    cache_dir: str | os.PathLike,
    threshold: str | float = "adaptive",
    jobs: int = 1,
    progress: bool = True,
    deadline: float | None = None,
) -> MethodResult:
    """:func:`evaluate_classical` that keeps its results on disk and stops at a deadline.

    After every image, ``cache_dir/<name>.json`` is rewritten (atomically) with the per-image
    summaries (:data:`IMAGE_COLUMNS`, by image id) and the running metric sums; a later call
    skips the images found there, so a killed or time-limited run continues where it stopped.
    Besides wall time, each image's CPU time is kept (``extra["cpu_seconds_per_image"]``): on a
    shared machine it is the better measure of what the method costs.

    Args:
        deadline: ``time.monotonic()`` value after which no further image is started (``None``: run
            to the end).

    Returns:
        The result over the images done so far; ``extra["complete"]`` says whether that is every
        sample, ``extra["images_total"]`` how many there are, ``extra["reference"]`` holds the
        reference-protocol metrics.
    """
    from tqdm import tqdm

    from sirst.classical import get_method
    from sirst.data.io import read_mask

    get_method(name)  # fail before touching the cache
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    fixed = parse_threshold(threshold)
    label = "adaptive" if fixed is None else str(fixed)
    path = cache_path(cache_dir, name)
    meta = {"format": CACHE_FORMAT, "method": name, "threshold": label, "curve_thresholds": list(CURVE_THRESHOLDS)}
    doc = _read_cache(path, meta, {s.id for s in samples})
    scorer = _Scorer(CURVE_THRESHOLDS, fixed, normalise=True)
    if doc is None:
        doc = {**meta, "columns": list(IMAGE_COLUMNS), "images": {}, "state": None}
    else:
        if doc["state"] is not None:
            scorer.merge_state(doc["state"])
        if doc["columns"] != list(IMAGE_COLUMNS):  # a cache from before CPU time was kept
            missing = len(IMAGE_COLUMNS) - len(doc["columns"])
            if doc["columns"] != list(IMAGE_COLUMNS[: len(doc["columns"])]) or missing < 1:
                raise ValueError(f"{path}: unknown cache columns {doc['columns']}; delete the file to start again")
            doc["columns"] = list(IMAGE_COLUMNS)
            doc["images"] = {k: [*v, *([None] * missing)] for k, v in doc["images"].items()}
    todo = [s for s in samples if s.id not in doc["images"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), desc=name, unit="img", disable=not progress)
    try:
        for sample, (score, dt, cpu) in _maps_until(name, todo, jobs, deadline):
            row = scorer.update(score, read_mask(sample.mask), sample.mask)
            doc["images"][sample.id] = [round(dt, 4), *row, round(cpu, 4)]
            doc["state"] = _jsonable(scorer.state())
            _write_atomic(path, doc)
            bar.update()
    finally:
        bar.close()
    done = len(doc["images"])
    seconds = float(sum(v[0] for v in doc["images"].values()))
    cpu = [v[-1] for v in doc["images"].values() if v[-1] is not None]
    res = scorer.result(name, label, seconds, done)
    res.extra.update({"complete": done == len(samples), "images_total": len(samples), "cache": str(path),
                      "cpu_seconds_per_image": float(np.mean(cpu)) if cpu else float("nan"), "cpu_timed_images": len(cpu)})
    return res


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
