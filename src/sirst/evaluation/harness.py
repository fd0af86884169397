"""The harness: score any :class:`~sirst.evaluation.methods.Method` on a list of samples.

Every method goes the same way: ``respond`` (timed) on each image, ``output`` to the score map and
binary prediction, and one :class:`Scorer` that scores the prediction with the exact and the
reference protocol (:mod:`sirst.metrics`) and sweeps the Pd-Fa curve on the score. Classical
methods can spread the images over processes (``jobs``) and keep a per-method cache that a later
run continues (:func:`evaluate_classical_cached`). Folders of score maps against folders of masks
are scored by :func:`sirst.evaluation.saved.evaluate_dirs`, networks over a whole dataset split
(batched, shardable: training's validation) by :func:`sirst.evaluation.dataset.evaluate_dataset`;
all with the same metric objects.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sirst.evaluation.methods import ClassicalMethod, Method, MethodOutput, NetworkMethod
from sirst.evaluation.report import MethodResult, safe_name
from sirst.evaluation.samples import Sample

__all__ = [
    "CACHE_FORMAT",
    "IMAGE_COLUMNS",
    "Scorer",
    "cache_path",
    "evaluate_classical_cached",
    "evaluate_classical",
    "evaluate_method",
    "evaluate_network",
]


class Scorer:
    """Metric accumulators of one method: its predictions scored with the exact and the reference
    protocol (:mod:`sirst.metrics`), and the Pd-Fa curve (exact) swept on its scores.

    ``update`` scores one image and returns its one-line summary (:data:`IMAGE_COLUMNS`); ``state``
    and ``merge_state`` carry the running sums, so a cached run continues where it stopped.
    """

    def __init__(self, curve_thresholds: Sequence[float]) -> None:
        from sirst.metrics import ROCMetric, SirstMetrics

        self.exact = SirstMetrics(threshold=0.5)
        self.reference = SirstMetrics(threshold=0.5, protocol="reference")
        self.roc = ROCMetric(curve_thresholds)

    def update(self, out: MethodOutput, mask: np.ndarray, source: object) -> list[int]:
        """Score one image's output against its ``(H, W)`` mask; ``source`` names it in errors."""
        from sirst.metrics import SirstMetrics

        if out.score.shape != mask.shape:
            raise ValueError(f"{source}: mask size {mask.shape} differs from the response map {out.score.shape}")
        # The binary prediction is what both protocols score; the reference protocol resizes it
        # (bilinear, > 0.5) to 256x256 like the public code's score maps.
        pred = out.pred.astype(np.float32)
        one = SirstMetrics(threshold=0.5)
        one.update([pred], [mask])
        st = one.state()
        self.exact.merge_state(st)
        self.reference.update([pred], [mask])
        self.roc.update([out.score], [mask])
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


def _respond_timed(method: Method, sample: Sample) -> tuple[np.ndarray, float, float]:
    """``(response, wall seconds, CPU seconds)`` of ``method`` on one sample; reading its input
    (``method.read``) is not timed.

    The CPU time of the process is what the method costs on this CPU even when other jobs share it
    (wall time then grows, CPU time does not; single-threaded BLAS assumed)."""
    image = method.read(sample)
    start, cpu = time.perf_counter(), time.process_time()
    out = method.respond(image)
    return out, time.perf_counter() - start, time.process_time() - cpu


def _classical_worker(job: tuple[str, Sample]) -> tuple[np.ndarray, float, float]:
    """Process-pool worker: ``(classical method name, sample)`` -> :func:`_respond_timed`."""
    name, sample = job
    return _respond_timed(ClassicalMethod(name), sample)


def _responses(method: Method, samples: Sequence[Sample], jobs: int, deadline: float | None = None
               ) -> Iterator[tuple[Sample, tuple[np.ndarray, float, float]]]:
    """``(sample, (response, wall s, CPU s))`` in order, until ``deadline`` (``time.monotonic()``) passes.

    No image is started after the deadline. ``jobs > 1`` (classical methods) spreads the images over
    that many processes with at most ``2 * jobs`` in flight, so the run ends soon after the deadline
    (unstarted work is cancelled on exit).
    """
    def open_() -> bool:
        return deadline is None or time.monotonic() < deadline

    if jobs == 1:
        for s in samples:
            if not open_():
                return
            yield s, _respond_timed(method, s)
        return
    if not isinstance(method, ClassicalMethod):
        raise ValueError(f"{method.name}: --jobs > 1 applies to classical methods only")
    pool = ProcessPoolExecutor(max_workers=jobs)
    try:
        todo = iter(samples)
        flight: deque = deque()

        def submit() -> None:
            s = next(todo, None)
            if s is not None and open_():
                flight.append((s, pool.submit(_classical_worker, (method.name, s))))

        for _ in range(2 * jobs):
            submit()
        while flight:
            s, fut = flight.popleft()
            res = fut.result()
            submit()
            yield s, res
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def evaluate_method(method: Method, samples: Sequence[Sample], jobs: int = 1, progress: bool = True) -> MethodResult:
    """Run ``method`` on ``samples`` and score it (exact and reference protocol, Pd-Fa curve).

    Args:
        jobs: processes for a classical method (networks run in this process).

    Returns:
        The :class:`~sirst.evaluation.report.MethodResult`; ``seconds_per_image`` is the mean wall
        time of ``method.respond`` (no file IO), ``extra["reference"]`` the reference-protocol metrics.
    """
    from tqdm import tqdm

    from sirst.data.io import read_mask

    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    scorer = Scorer(method.curve_thresholds)
    seconds = 0.0
    n = 0
    with tqdm(total=len(samples), desc=method.name, unit="img", disable=not progress) as bar:
        for sample, (response, dt, _cpu) in _responses(method, samples, jobs):
            scorer.update(method.output(response), read_mask(sample.mask), sample.mask)
            seconds += dt
            n += 1
            bar.update()
    return scorer.result(method.name, method.threshold, seconds, n)


def evaluate_classical(
    name: str, samples: Sequence[Sample], threshold: str | float = "adaptive", jobs: int = 1, progress: bool = True
) -> MethodResult:
    """:func:`evaluate_method` of classical method ``name``.

    Args:
        threshold: ``"adaptive"`` (Eq. 13 per image) or a float in [0, 1) on the response divided by
            its per-image maximum.
    """
    return evaluate_method(ClassicalMethod(name, threshold), samples, jobs, progress)


def evaluate_network(weights: str | os.PathLike, samples: Sequence[Sample], device: str = "cpu", progress: bool = True,
                     label: str | None = None) -> MethodResult:
    """:func:`evaluate_method` of the network of checkpoint ``weights`` (a path or a bundled name),
    probabilities thresholded at 0.5; named ``label`` (default ``dnanet:<path>``)."""
    method = NetworkMethod(weights, device)
    method.name = label or f"dnanet:{method.path}"
    return evaluate_method(method, samples, 1, progress)


#: Version of the per-method cache files written by :func:`evaluate_classical_cached`.
CACHE_FORMAT = 1


def cache_path(cache_dir: str | os.PathLike, name: str) -> Path:
    """The cache file of method ``name`` in ``cache_dir``: ``<name>.json``."""
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

    from sirst.data.io import read_mask

    method = ClassicalMethod(name, threshold)  # fails before touching the cache
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    name = method.name
    path = cache_path(cache_dir, name)
    meta = {"format": CACHE_FORMAT, "method": name, "threshold": method.threshold,
            "curve_thresholds": list(method.curve_thresholds)}
    doc = _read_cache(path, meta, {s.id for s in samples})
    scorer = Scorer(method.curve_thresholds)
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
        for sample, (response, dt, cpu) in _responses(method, todo, jobs, deadline):
            row = scorer.update(method.output(response), read_mask(sample.mask), sample.mask)
            doc["images"][sample.id] = [round(dt, 4), *row, round(cpu, 4)]
            doc["state"] = _jsonable(scorer.state())
            _write_atomic(path, doc)
            bar.update()
    finally:
        bar.close()
    done = len(doc["images"])
    seconds = float(sum(v[0] for v in doc["images"].values()))
    cpu = [v[-1] for v in doc["images"].values() if v[-1] is not None]
    res = scorer.result(name, method.threshold, seconds, done)
    res.extra.update({"complete": done == len(samples), "images_total": len(samples), "cache": str(path),
                      "cpu_seconds_per_image": float(np.mean(cpu)) if cpu else float("nan"), "cpu_timed_images": len(cpu)})
    return res
