"""Benchmarks behind ``sirst bench``: FLOP counting, peak estimates, interleaved timing, the checks.

* :func:`count_flops` - FLOPs per image (``torch.utils.flop_counter``; FLOPs = 2 x MACs,
  convolutions and matrix products only), counted on the ``meta`` device (instant).
* :func:`estimate_peak_gflops` - the device's peak from its specifications (CPU: cores x clock x
  FLOPs per cycle of its vector/matrix units; GPU: a table of datasheet numbers).
* :func:`time_interleaved` - warm-up, then rounds that call every variant once each, so that load
  from other processes hits all variants alike; medians are reported.
* :func:`same_detections` - compares the targets (8-connected components of logit > 0) of two runs
  (:mod:`sirst.detect.check`, re-exported with the check frames ``synthetic_images``, ``network_batch``).
* :func:`make_score_maps` / :func:`public_style_pd_fa` - the metric-speed comparison with the
  public code's per-image ``skimage.measure.label`` + ``regionprops`` loop.

The reference DNANet used as the speed baseline lives in :mod:`sirst.bench.reference_dnanet`.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from sirst.detect.backends import cpu_flags as _cpu_flags
from sirst.detect.check import DetectionCheck, network_batch, same_detections, synthetic_images
from sirst.detect.optimize import in_channels_of

__all__ = ["DetectionCheck", "Peak", "count_flops", "estimate_peak_gflops", "make_score_maps", "measure_gemm_gflops",
           "median", "network_batch", "public_style_pd_fa", "same_detections", "synthetic_images",
           "time_interleaved"]

# ------------------------------------------------------------------------------------------------
# FLOPs and peaks
# ------------------------------------------------------------------------------------------------


def count_flops(model: nn.Module | str, size: int, in_channels: int | None = None, train: bool = False) -> int:
    """FLOPs for one ``in_channels x size x size`` image through ``model`` (a module or a registry name).

    ``train=False``: one eval-mode forward. ``train=True``: a training-mode forward (all heads) plus
    the backward of a loss on its outputs (about 3x the forward). The count runs on a copy of the
    model on the ``meta`` device, so nothing is computed. ``in_channels`` defaults to the model's.
    """
    from sirst.models import create_model

    if isinstance(model, str):
        with torch.device("meta"):
            model = create_model(model) if in_channels is None else create_model(model, in_channels=in_channels)
    else:
        model = copy.deepcopy(model).to("meta")
    in_channels = in_channels or in_channels_of(model)
    x = torch.empty(1, in_channels, size, size, device="meta")
    counter = FlopCounterMode(display=False)
    if train:
        model.train()
        for p in model.parameters():
            p.requires_grad_(True)
        with counter:
            out = model(x)
            outs = out if isinstance(out, (list, tuple)) else [out]
            sum(o.float().mean() for o in outs).backward()
    else:
        model.eval()
        with counter, torch.no_grad():
            model(x)
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class Peak:
    """Peak throughput of a device for one precision: GFLOP/s and where the number comes from."""

    gflops: float | None
    source: str


# Datasheet peaks in TFLOP/s, dense (no sparsity): (fp32 CUDA cores, tf32 tensor, bf16/fp16 tensor).
GPU_PEAKS_TFLOPS: dict[str, tuple[float, float, float]] = {
    "H200": (67.0, 494.7, 989.4),
    "H100 PCIe": (51.2, 378.0, 756.0),
    "H100 NVL": (60.0, 417.5, 835.0),
    "H100": (67.0, 494.7, 989.4),  # SXM
    "A100": (19.5, 156.0, 312.0),
    "L40S": (91.6, 183.0, 366.0),
    "A10": (31.2, 62.5, 125.0),
    "T4": (8.1, 8.1, 65.0),
}


def _cpu_ghz() -> float | None:
    """Nominal clock: cpufreq's maximum, else ``cpu MHz`` of /proc/cpuinfo (None if unknown)."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1000.0
    except (OSError, ValueError):
        pass
    return None


def estimate_peak_gflops(device: torch.device, precision: str = "fp32", threads: int | None = None) -> Peak:
    """Peak GFLOP/s of ``device`` for ``precision`` (``fp32``, ``bf16``, ``fp16``, ``int8``) from its specifications.

    CPU: ``threads`` cores (default ``torch.get_num_threads()``) x clock x FLOPs per cycle and core:
    fp32 64 with AVX-512 (two FMA units assumed), 32 with AVX2+FMA, else 8; bf16 1024 with AMX,
    128 with AVX512-BF16, else as fp32; int8 (operations) 2048 with AMX-INT8, 256 with AVX512-VNNI. GPU: :data:`GPU_PEAKS_TFLOPS`; fp32 convolutions run on
    TF32 tensor cores when ``torch.backends.cudnn.allow_tf32`` (PyTorch's default), so that peak applies.
    ``Peak.gflops`` is None when unknown (pass ``--peak-gflops``).
    """
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if precision == "int8":
            return Peak(None, f"{name}: INT8 is a CPU path here")
        for key, (fp32, tf32, half) in GPU_PEAKS_TFLOPS.items():
            if key in name:
                if precision == "fp32":
                    tf = torch.backends.cudnn.allow_tf32
                    return Peak((tf32 if tf else fp32) * 1e3, f"{name} datasheet, {'TF32' if tf else 'FP32'} dense")
                return Peak(half * 1e3, f"{name} datasheet, {precision.upper()} dense")
        return Peak(None, f"{name}: unknown GPU, pass --peak-gflops")
    flags = _cpu_flags()
    ghz = _cpu_ghz()
    cores = min(threads or torch.get_num_threads(), os.cpu_count() or 1)
    if ghz is None:
        return Peak(None, "unknown CPU clock, pass --peak-gflops")
    per_cycle, unit = (64, "AVX-512 2xFMA") if "avx512f" in flags else (32, "AVX2 2xFMA") if {"avx2", "fma"} <= flags \
        else (8, "SSE")
    if precision == "int8":
        # INT8 "GFLOP/s" here are giga-operations (2 per multiply-add), comparable with the FLOP count.
        if "amx_int8" in flags:
            per_cycle, unit = 2048, "AMX-INT8"
        elif "avx512_vnni" in flags:
            per_cycle, unit = 256, "AVX512-VNNI"
    elif precision != "fp32":
        if "amx_bf16" in flags:
            per_cycle, unit = 1024, "AMX-BF16"
        elif "avx512_bf16" in flags:
            per_cycle, unit = 128, "AVX512-BF16"
    return Peak(cores * ghz * per_cycle, f"{cores} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle ({unit}), estimated")


def measure_gemm_gflops(device: torch.device, precision: str = "fp32", size: int | None = None) -> float:
    """GFLOP/s of one large square matrix product on ``device`` in ``precision``: what the device
    reaches in practice (turbo clocks included), a ceiling that the datasheet peak may under- or
    overstate. Best of 3 after a warm-up; uses the current torch thread count."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    n = size or (8192 if device.type == "cuda" else 2048)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    best = float("inf")
    with torch.inference_mode():
        for i in range(4):
            _sync(device)
            start = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            if i:
                best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    device: torch.device,
    warmup: int = 1,
    repeats: int = 5,
    progress: bool = False,
) -> dict[str, list[float]]:
    """Seconds per call of each function: ``warmup`` untimed calls each, then ``repeats`` rounds in
    which every function runs once (interleaved). CUDA work is synchronised around every call."""
    from tqdm import tqdm

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in tqdm(range(repeats), desc="timing", leave=False, disable=not progress):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ------------------------------------------------------------------------------------------------
# Metric speed: the public code's per-image loop
# ------------------------------------------------------------------------------------------------


def make_score_maps(n: int, size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` probability maps ``(n, size, size)`` float32 (8-bit quantised) and boolean masks with
    1-3 round targets each, ~85 % of them detected (slightly shifted), a few false alarms, and a
    background of uniform noise below 0.45."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    scores = np.empty((n, size, size), np.float32)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        score = rng.random((size, size)) * 0.45
        for _ in range(int(rng.integers(1, 4))):
            r, c = rng.integers(4, size - 4, size=2)
            blob = (yy - r) ** 2 + (xx - c) ** 2 <= rng.uniform(0.8, 3.5) ** 2
            masks[i] |= blob
            if rng.random() < 0.85:
                score[np.roll(blob, int(rng.integers(-1, 2)), axis=1)] = rng.uniform(0.6, 1.0)
        for r, c in rng.integers(0, size, size=(int(rng.integers(0, 3)), 2)):
            score[r : r + 2, c : c + 2] = 0.9
        scores[i] = np.round(score * 255) / 255.0
    return scores, masks


def public_style_pd_fa(scores: Sequence[np.ndarray], masks: Sequence[np.ndarray], threshold: float) -> tuple[float, float]:
    """Pd and Fa the way the public DNANet code computes them: per image ``skimage.measure.label``
    and ``regionprops`` of prediction and mask, then a Python loop matching centroids closer than
    3 pixels. Returns ``(pd, fa)`` (Fa = unmatched predicted pixels / all pixels)."""
    from skimage import measure

    hits = targets = fa = pixels = 0
    for s, m in zip(scores, masks):
        coord_image = measure.regionprops(measure.label(s > threshold, connectivity=2))
        coord_label = measure.regionprops(measure.label(m, connectivity=2))
        targets += len(coord_label)
        pixels += s.size
        total = [r.area for r in coord_image]
        matched = []
        for g in coord_label:
            for k in range(len(coord_image)):
                if np.linalg.norm(np.array(coord_image[k].centroid) - np.array(g.centroid)) < 3:
                    matched.append(coord_image[k].area)
                    hits += 1
                    del coord_image[k]
                    break
        fa += sum(a for a in total if a not in matched)
    return hits / max(targets, 1), fa / max(pixels, 1)


__all__ = [
    "DetectionCheck",
    "GPU_PEAKS_TFLOPS",
    "Peak",
    "count_flops",
    "estimate_peak_gflops",
    "make_score_maps",
    "median",
    "network_batch",
    "public_style_pd_fa",
    "same_detections",
    "synthetic_images",
    "time_interleaved",
]

