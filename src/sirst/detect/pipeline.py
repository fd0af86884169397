"""``run_detection``: files, folders and videos -> ``detections.csv``, masks, overlays and score maps,
through :meth:`sirst.detect.Detector.detect`, with reading, detection and writing in three threads."""

from __future__ import annotations

import csv
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sirst.detect.detector import Detector
from sirst.detect.inputs import InputItem, count_frames, iter_inputs, list_inputs
from sirst.detect.outputs import (
    CSV_COLUMNS,
    SCORE_FORMATS,
    DetectionSummary,
    csv_rows,
    draw_overlay,
    save_png,
    write_score_map,
)


def run_detection(
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    detector: Detector,
    write_overlays: bool = True,
    progress: bool = True,
    save_scores: str | None = None,
    bit_depth: int | None = None,
    value_range: tuple[float, float] | None = None,
) -> DetectionSummary:
    """Detect targets in every input and write ``detections.csv``, ``masks/``, ``overlays/``.

    An unreadable image (or missing path, empty folder, bad video) is reported by name on stderr and
    in ``errors.txt``, and the rest are processed; ``summary.failed`` counts them. Files in folders
    that are neither images nor videos are skipped with one message per folder.
    CSV columns: :mod:`sirst.detect.outputs`.
    ``save_scores`` (``"png"`` or ``"npy"``) also writes ``scores/<id>.png|.npy`` probability maps
    that ``sirst eval --pred`` accepts. Images are loaded and run in groups of at most
    ``detector.batch_size`` images and ``detector.max_pixels`` pixels, so memory stays bounded.
    """
    from tqdm import tqdm

    if save_scores is not None and save_scores not in SCORE_FORMATS:
        raise ValueError(f"save_scores must be one of {SCORE_FORMATS}, got {save_scores!r}")
    start = time.perf_counter()
    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    if write_overlays:
        (out / "overlays").mkdir(parents=True, exist_ok=True)
    summary = DetectionSummary(out)
    busy = summary.seconds

    def report(message: str) -> None:
        summary.errors.append(message)
        print(f"sirst detect: failed: {message}", file=sys.stderr)

    def note(message: str) -> None:
        print(f"sirst detect: {message}", file=sys.stderr)

    files = list_inputs(inputs, report, note)
    total = count_frames(files)
    items = iter_inputs(files, report, bit_depth=bit_depth, value_range=value_range)
    # Reading, detection (the network and clustering: Detector.detect) and writing run in three threads
    # joined by small queues, so files are read and results written while the network runs (torch, ONNX Runtime and OpenVINO release the
    # GIL). At most two groups wait in each queue: memory stays bounded by max_pixels.
    to_infer: queue.Queue = queue.Queue(maxsize=2)
    to_write: queue.Queue = queue.Queue(maxsize=2)
    failure: list[BaseException] = []
    stop = threading.Event()

    def read_groups() -> None:
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                chunk: list[tuple[InputItem, np.ndarray]] = []
                pixels = failed = 0
                for item in items:
                    try:
                        gray = item.load()
                    except (ValueError, FileNotFoundError) as exc:
                        # read_image's messages start with the path; prefix it when they do not.
                        message = str(exc)
                        report(message if message.startswith(item.source) else f"{item.source}: {message}")
                        failed += 1
                        continue
                    chunk.append((item, gray))
                    pixels += gray.size
                    if len(chunk) == detector.batch_size or pixels >= detector.max_pixels:
                        break
                busy["read"] += time.perf_counter() - t0
                if not chunk and not failed:
                    break
                _put(to_infer, (chunk, failed), stop)
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)
        finally:
            _put(to_infer, None, stop)

    def write_groups(writer: csv.writer, bar: tqdm) -> None:
        try:
            while (job := to_write.get()) is not None:
                t0 = time.perf_counter()
                chunk, found, failed = job
                for (item, gray), det in zip(chunk, found):
                    writer.writerows(csv_rows(item.id, item.source, det.targets))
                    save_png(out / "masks" / f"{item.id}.png", det.mask)
                    if write_overlays:
                        save_png(out / "overlays" / f"{item.id}.png", draw_overlay(gray, det.targets))
                    if save_scores:
                        write_score_map(out / "scores" / item.id, det.scores, save_scores)
                    summary.images += 1
                    summary.targets += len(det.targets)
                bar.update(len(chunk) + failed)
                busy["write"] += time.perf_counter() - t0
        except BaseException as exc:
            failure.append(exc)
            stop.set()
            while to_write.get() is not None:  # unblock the inference loop
                pass

    with open(summary.csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        bar = tqdm(total=total, desc="detect", unit="img", disable=not progress, dynamic_ncols=True)
        reader = threading.Thread(target=read_groups, name="sirst-read", daemon=True)
        writer_thread = threading.Thread(target=write_groups, args=(writer, bar), name="sirst-write", daemon=True)
        reader.start()
        writer_thread.start()
        try:
            while not stop.is_set() and (job := to_infer.get()) is not None:
                chunk, failed = job
                t0 = time.perf_counter()
                found = detector.detect([g for _, g in chunk], keep_scores=True) if chunk else []
                busy["infer"] += time.perf_counter() - t0
                _put(to_write, (chunk, found, failed), stop)
                del job, chunk, found  # free this group's frames before the next one is loaded
        except BaseException:
            stop.set()
            raise
        finally:
            to_write.put(None)  # the writer reads up to this marker, even after its own failure
            writer_thread.join()
            stop.set()
            reader.join(timeout=5)
            bar.close()
    if failure:
        raise failure[0]
    busy["total"] = time.perf_counter() - start
    errors_file = out / "errors.txt"
    if summary.errors:
        errors_file.write_text("\n".join(summary.errors) + "\n")
    elif errors_file.exists():  # a stale list from an earlier run into the same folder would mislead
        errors_file.unlink()
    return summary


def _put(q: queue.Queue, job: object, stop: threading.Event) -> None:
    """``q.put(job)`` that gives up when ``stop`` is set (the consumer has failed)."""
    while True:
        try:
            q.put(job, timeout=0.1)
            return
        except queue.Full:
            if stop.is_set():
                return
