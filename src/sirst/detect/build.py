"""A :class:`~sirst.detect.Detector` from weights and options (what ``sirst detect`` runs): bundled
weights, a checkpoint or an ONNX file; the torch, ONNX Runtime or OpenVINO backend; the precision,
batch and threads, chosen for the job on the CPU (:mod:`sirst.detect.choose`)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import torch

from sirst.detect.backends import (
    OpenVinoRunner,
    PathSpec,
    QuantConfig,
    build_runner,
    candidate_paths,
    dataset_calibration_images,
    require_backend,
)
from sirst.detect.choose import auto_candidates, default_threads, plan_path
from sirst.detect.detector import DEFAULT_MAX_PIXELS, Detector
from sirst.detect.export import OnnxRunner


def load_detector(
    weights: str | os.PathLike | None = None,
    *,
    device: str = "cpu",
    precision: str = "auto",
    backend: str = "auto",
    threads: int | None = None,
    batch_size: int | None = None,
    compile: bool = False,
    calibration: Sequence[str | os.PathLike] | None = None,
    remeasure: bool = False,
    work: float | None = None,
    threshold: float = 0.5,
    tile: int | None = None,
    overlap: int = 64,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_peak: float | None = None,
    verify: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Detector:
    """The Detector for ``weights`` (a bundled name, default ``general``; a ``.pt`` checkpoint; or an
    ``.onnx`` file for the ONNX Runtime / OpenVINO backends) and the options of ``sirst detect``.

    On the CPU, ``precision="auto"`` / ``backend="auto"`` take an installed inference path that passed
    the accuracy gate (docs/performance.md) and gives the same targets as fp32 on this machine's check
    images: the fastest measured here, or, for a job too small to pay for measuring, the rule for this
    CPU class weighed against ``work``, the job's size in 256x256 frames (:func:`sirst.detect.inputs.job_work`;
    ``None``: unknown, taken as large) (:func:`sirst.detect.choose.plan_path`). ``calibration``: datasets
    to calibrate INT8 on. ``progress`` receives one-line notes (exports, checks). GPUs, ``compile`` and
    fp16 run through torch as asked. ``detector.description`` says what was chosen, for the outputs.
    """
    from sirst.checkpoint import model_from_checkpoint
    from sirst.weights import resolve_weights

    check_options(weights, device, backend, precision)
    threads = threads or default_threads()
    common = dict(threshold=threshold, tile=tile, overlap=overlap, max_pixels=max_pixels, min_peak=min_peak,
                  verify=verify)
    if _is_onnx(weights):
        backend = backend if backend != "auto" else "onnxruntime"
        if device != "cpu":
            raise ValueError(f"--device {device}: the {backend} backend runs on the CPU; use --backend torch")
        precision = "fp32" if precision == "auto" else precision
        if precision not in ("fp32", "bf16") or (backend == "onnxruntime" and precision != "fp32"):
            raise ValueError(f"--precision {precision}: an ONNX file runs as it is (fp32; bf16 with --backend openvino); "
                             "give the .pt checkpoint for int8")
        require_backend(backend)
        if backend == "openvino":
            model = OpenVinoRunner(weights, precision, threads)
        else:
            model = OnnxRunner(weights, threads=threads)
        det = Detector(model, device="cpu", batch_size=batch_size or 1, **common)
        det.description = {"path": f"{backend}-{precision}", "batch_size": det.batch_size, "threads": threads,
                           "how": "given"}
        return det
    model = model_from_checkpoint(resolve_weights(weights), "cpu" if device == "cpu" else device)
    if common["min_peak"] is None:  # the weights' own gate, also for the exported runners that lack the attribute
        common["min_peak"] = model.min_peak_logit
    common["verifier"] = model.verifier  # likewise the weights' verifier (None: none bundled)
    torch.set_num_threads(threads)
    if device != "cpu" or compile or precision == "fp16":
        # GPUs and the compiled/fp16 paths run through torch as asked; nothing is measured for them.
        precision = "fp32" if precision == "auto" else precision
        if precision == "int8":
            raise ValueError("--precision int8 runs on the CPU (ONNX Runtime / OpenVINO); use bf16 or fp16 on a GPU")
        det = Detector(model, device=device, batch_size=batch_size or 8, precision=precision,
                       compile=compile, **common)
        det.description = {"path": f"torch-{precision}", "batch_size": det.batch_size, "device": device,
                           "threads": threads, "how": "given"}
        return det
    if precision == "auto":
        candidates = auto_candidates(backend)
    else:
        if backend != "auto":
            PathSpec(backend, precision).validate()
            require_backend(backend)
        candidates = candidate_paths(precision, backend)
        if not candidates:
            require_backend("onnxruntime")  # the int8 paths need it: say how to install
    # The job's size decides whether measuring the paths, or exporting one, pays off (choose.plan_path).
    choice = plan_path(model, candidates, threads, work, batch_size, remeasure=remeasure, progress=progress)
    images = None
    if calibration and choice.spec.precision == "int8":
        images = dataset_calibration_images(calibration, QuantConfig().calibration_images)
    runner = choice.runner or build_runner(model, choice.spec, threads, progress=progress, calibration=images)
    det = Detector(runner, device="cpu", batch_size=choice.batch_size, **common)
    ms = choice.ms_per_img
    det.description = {"path": str(choice.spec), "batch_size": choice.batch_size, "threads": threads,
                       "how": ("cached measurement" if choice.cached else choice.source)
                       if precision == "auto" or backend == "auto" else "given",
                       "job_256px_frames": None if work is None else round(work, 2),
                       # Strict JSON for summary.json: an unmeasured path has no time, not NaN.
                       "ms_per_256px_image": ms if ms is not None and math.isfinite(ms) else None,
                       "measured": choice.measured, "verified": choice.verified}
    return det


def _is_onnx(weights: str | os.PathLike | None) -> bool:
    return bool(weights) and str(weights).lower().endswith(".onnx")


def check_options(weights: str | os.PathLike | None, device: str, backend: str, precision: str) -> None:
    """Raise ``ValueError`` for options of :func:`load_detector` that do not go together (a backend that
    runs on the CPU with a GPU device, an ONNX file with the torch backend, a backend that does not run
    the precision), before anything is loaded."""
    if backend not in ("auto", "torch") and device != "cpu":
        raise ValueError(f"--device {device}: the {backend} backend runs on the CPU; use --backend torch")
    if _is_onnx(weights) and backend == "torch":
        raise ValueError(f"--weights {weights}: an ONNX model runs with --backend onnxruntime or openvino; "
                         "the torch backend needs a .pt checkpoint")
    if backend != "auto" and precision not in ("auto", "fp16") and not _is_onnx(weights):
        PathSpec(backend, precision).validate()
