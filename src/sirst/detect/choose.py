"""Which inference path a job runs on (``sirst detect --precision auto`` / ``--backend auto``).

:func:`plan_path` picks the path for a job: a measured choice when one is cached; a measurement
(:func:`choose_path`) when the job is large enough to pay for it (:data:`MEASURE_MIN_WORK`) or when
asked; else a rule (:func:`rule_path`): the paths in the order measured fastest for this CPU class
(:func:`ranked_paths`), each taken only when its one-off costs are paid already on this machine or the
job is large enough to pay them (:func:`min_work`), and checked against fp32 on two bundled sample
images (:func:`verify_path`, verdict cached). :func:`choose_path` times the available paths once per
machine, weights and thread count, checks each against fp32 on the bundled sample images (same
targets), and caches the fastest verified path with its fastest batch size.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from sirst.detect.backends import (
    AUTO_PRECISIONS,
    PathSpec,
    _atomic_write,
    build_runner,
    cache_dir,
    candidate_paths,
    cpu_flags,
    default_calibration_images,
    machine_key,
    weights_digest,
)
from sirst.detect.check import network_batch, same_detections, synthetic_images, unpack_masks
from sirst.detect.optimize import in_channels_of


def auto_candidates(backend: str = "auto", bf16_units: bool | None = None) -> list[PathSpec]:
    """The paths ``--precision auto`` chooses among, fastest first for this CPU class
    (:func:`ranked_paths`): installed, of a gated precision (:data:`AUTO_PRECISIONS`), less those
    measured slower than a sibling on every CPU tried: with OpenVINO, its bf16 beats ONNX Runtime fp32
    and its own fp32 (on CPUs with bf16 units; without, its fp32 beats ONNX Runtime's)
    (docs/performance.md); torch fp32 always stays (the verification reference).
    """
    paths = ranked_paths([c for c in candidate_paths("auto", backend) if c.precision in AUTO_PRECISIONS], bf16_units)
    if PathSpec("openvino", "bf16") in paths:
        paths = [c for c in paths if c not in (PathSpec("onnxruntime", "fp32"), PathSpec("openvino", "fp32"))]
    elif PathSpec("openvino", "fp32") in paths:
        paths = [c for c in paths if c != PathSpec("onnxruntime", "fp32")]
    return paths


# ------------------------------------------------------------------------------------------------
# Measuring the paths
# ------------------------------------------------------------------------------------------------


@dataclass
class PathChoice:
    """The path :func:`choose_path` picked, the batch size it runs fastest at, and what was measured."""

    spec: PathSpec
    batch_size: int
    threads: int
    ms_per_img: float
    measured: dict[str, dict[str, float]] = field(default_factory=dict)  # path -> {batch: ms/img}
    verified: dict[str, str] = field(default_factory=dict)  # path -> "ok" or why not
    cached: bool = False
    source: str = "measured"
    #: The runner already built for ``spec`` while choosing (not saved), or ``None``.
    runner: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        how = "cached measurement" if self.cached else self.source
        return (f"{self.spec} at batch {self.batch_size}, {self.threads} thread(s), "
                f"{self.ms_per_img:.0f} ms per 256x256 image ({how})")

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "runner"}
        d["spec"] = str(self.spec)
        return d

    @classmethod
    def from_json(cls, d: dict) -> PathChoice:
        d = dict(d)
        d["spec"] = PathSpec.parse(d["spec"])
        return cls(**d)


def verify_runner(reference: np.ndarray, candidate: np.ndarray) -> str:
    """``"ok"`` when the candidate's logits ``(N, H, W)`` give the same targets as the reference's
    logits or masks (count, centroids within 1 px), else what differs."""
    check = same_detections(reference, candidate)
    return "ok" if check.same_targets else check.describe()


def _verification_batch(in_channels: int, n: int = 4) -> torch.Tensor:
    """``n`` bundled sample images (synthesized frames where missing), 256x256: ``(n, C, 256, 256)``;
    the ones with most targets first (sea, then city), so a short check still compares targets."""
    images = [g[:256, :256] for g in default_calibration_images(4)[:4] if min(g.shape) >= 256]
    if len(images) == 4:  # sorted by name: city, cloud, field, sea
        images = [images[i] for i in (3, 0, 1, 2)]
    images = images[:n]
    images += synthetic_images(max(0, n - len(images)), 256, seed=7)
    return network_batch(images, in_channels)


def _choice_file(model: nn.Module, candidates: Sequence[PathSpec], threads: int, batches: Sequence[int],
                 cache: Path) -> Path:
    key = f"{machine_key(threads)}-{weights_digest(model)}-{'_'.join(sorted(map(str, candidates)))}-{'_'.join(map(str, batches))}"
    return cache / "choices" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def cached_choice(model: nn.Module, candidates: Sequence[PathSpec], threads: int, batches: Sequence[int] = (1, 2, 4, 8),
                  cache: Path | None = None) -> PathChoice | None:
    """The choice :func:`choose_path` measured and cached for these arguments, or ``None``."""
    file = _choice_file(model, candidates, threads, batches, cache or cache_dir())
    if not file.is_file():
        return None
    try:
        choice = PathChoice.from_json(json.loads(file.read_text()))
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable cache entry is measured again
    choice.cached = True
    return choice


def choose_path(
    model: nn.Module,
    candidates: Sequence[PathSpec],
    threads: int,
    batches: Sequence[int] = (1, 2, 4, 8),
    cache: Path | None = None,
    use_cache: bool = True,
    progress: Callable[[str], None] | None = None,
) -> PathChoice:
    """The fastest of ``candidates`` whose detections match torch fp32 on the verification images.

    Each candidate is timed on 256x256 synthesized frames at batch 1 (median of 3 after a warm-up);
    the two fastest verified ones are then timed at the other ``batches`` and the best per-image
    time wins. The result is cached in ``cache/choices/<machine>-<weights>.json``.
    """
    cache = cache or cache_dir()
    if not candidates:
        raise ValueError("no inference path is installed for the requested precision/backend")
    file = _choice_file(model, candidates, threads, batches, cache)
    if use_cache and (choice := cached_choice(model, candidates, threads, batches, cache)) is not None:
        return choice
    if len(candidates) == 1 and len(batches) == 1:
        return PathChoice(candidates[0], batches[0], threads, float("nan"), source="only option")
    in_ch = in_channels_of(model)
    verify_x = _verification_batch(in_ch)
    reference = build_runner(model, PathSpec("torch", "fp32"), threads, cache)
    with torch.inference_mode():
        ref_out = torch.cat([reference(verify_x[i : i + 1]) for i in range(len(verify_x))]).float().numpy()[:, 0]
    frames = network_batch(synthetic_images(max(batches), 256, seed=3), in_ch)
    runners: dict[str, Callable] = {}
    verified: dict[str, str] = {}
    measured: dict[str, dict[str, float]] = {}

    def time_at(fn: Callable, b: int, rounds: int = 3) -> float:
        x = frames[:b].contiguous()
        fn(x)  # warm-up: first-call allocation, per-shape compilation
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
        return 1000.0 * statistics.median(times) / b

    for k, spec in enumerate(candidates):
        if progress:
            progress(f"measuring inference paths on this machine ({k + 1}/{len(candidates)}: {spec})")
        try:
            fn = reference if spec == PathSpec("torch", "fp32") else build_runner(model, spec, threads, cache,
                                                                                  progress=progress)
            with torch.inference_mode():
                out = torch.cat([fn(verify_x[i : i + 1]) for i in range(len(verify_x))]).float().numpy()[:, 0]
            verified[str(spec)] = verify_runner(ref_out, out)
        except Exception as exc:  # a backend that fails on this machine is reported, not fatal
            verified[str(spec)] = f"failed: {exc}"
            continue
        runners[str(spec)] = fn
        if verified[str(spec)] == "ok":
            with torch.inference_mode():
                measured[str(spec)] = {str(batches[0]): time_at(fn, batches[0])}
    ok = sorted(measured, key=lambda s: measured[s][str(batches[0])])
    for name in ok[:2]:
        for b in batches[1:]:
            with torch.inference_mode():
                measured[name][str(b)] = time_at(runners[name], b)
    if not measured:
        raise RuntimeError(f"no inference path could be verified on this machine: {verified}")
    best, best_b, best_ms = None, batches[0], float("inf")
    for name, per_batch in measured.items():
        for b, ms in per_batch.items():
            if ms < best_ms:
                best, best_b, best_ms = name, int(b), ms
    choice = PathChoice(PathSpec.parse(best), best_b, threads, best_ms, measured, verified)
    _atomic_write(file, lambda tmp: tmp.write_text(json.dumps(choice.to_json(), indent=1)))
    return choice


# ------------------------------------------------------------------------------------------------
# The rule for jobs too small to pay for a measurement
# ------------------------------------------------------------------------------------------------

#: Job size, in 256x256-frame equivalents (:func:`sirst.detect.inputs.job_work`), from which ``auto``
#: measures the paths (:func:`choose_path`) before running: the measurement costs about as much as
#: 145-340 frames of the job on the fastest path (docs/performance.md, "The first run"), so it is run
#: only where that is at most ~10 % of the job; smaller jobs follow :func:`rule_path`.
MEASURE_MIN_WORK = 3000
#: Job size from which ``auto`` pays a path's one-off costs on a machine where they are not paid yet:
#: an ONNX export, OpenVINO's compile and the check against fp32 (6.7 s on one core, what 30 frames save
#: on OpenVINO bf16 against torch bf16), or the check alone (two sample frames through both paths,
#: 2.9 s, what 14 frames save on torch bf16 against torch fp32); ``scripts/first_run_costs.py``
#: measures them, docs/performance.md ("The first run") has the numbers.
EXPORT_MIN_WORK = 32
VERIFY_MIN_WORK = 16
#: The batch the rule runs at: per-image time grows with the batch on the CPUs measured (every path).
RULE_BATCH = 1
#: Fastest first, as measured (docs/performance.md): with bf16 units (AMX, AVX512-BF16) and without.
#: torch bf16 is left out without bf16 units (emulated, slower than fp32); OpenVINO bf16 there would
#: run fp32 under a bf16 name, so its fp32 path stands in.
RANKED_BF16 = ("openvino-bf16", "torch-bf16", "openvino-fp32", "onnxruntime-fp32", "torch-fp32")
RANKED_NO_BF16 = ("openvino-fp32", "onnxruntime-fp32", "torch-fp32")
REFERENCE_PATH = PathSpec("torch", "fp32")


def has_bf16_units(flags: set[str] | None = None) -> bool:
    """Whether the CPU has bf16 matrix / vector units (AMX-BF16 or AVX512-BF16)."""
    if flags is None:
        flags = cpu_flags()
    return bool({"amx_bf16", "avx512_bf16"} & set(flags))


def ranked_paths(candidates: Sequence[PathSpec], bf16_units: bool | None = None) -> list[PathSpec]:
    """``candidates`` in the order measured fastest for this CPU class (:data:`RANKED_BF16` or
    :data:`RANKED_NO_BF16`), less those not in that order (INT8, which failed the accuracy gate, and
    bf16 paths without bf16 units); when that leaves none, ``candidates`` as given."""
    order = RANKED_BF16 if (has_bf16_units() if bf16_units is None else bf16_units) else RANKED_NO_BF16
    names = {str(c): c for c in candidates}
    ranked = [names[n] for n in order if n in names]
    return ranked or list(candidates)


def min_work(spec: PathSpec) -> float:
    """The job size (256x256 frames) from which :func:`rule_path` pays ``spec``'s one-off costs:
    0 for torch fp32 (the reference: nothing to export or check), :data:`VERIFY_MIN_WORK` for the
    other torch paths, :data:`EXPORT_MIN_WORK` for the exported ones."""
    if spec == REFERENCE_PATH:
        return 0.0
    return float(VERIFY_MIN_WORK if spec.backend == "torch" else EXPORT_MIN_WORK)


def rule_path(ranked: Sequence[PathSpec], work: float | None, ready: Sequence[str] = ()) -> tuple[PathSpec, str]:
    """The first of ``ranked`` (fastest first) whose one-off costs are paid on this machine (its name
    in ``ready``) or that this job pays for (``work`` >= :func:`min_work`; ``None``: a job of unknown
    size, taken as large), with why; when none qualifies, the first of those with the least to pay."""
    for spec in ranked:
        need = min_work(spec)
        if need == 0:
            return spec, "the reference path"
        if str(spec) in ready:
            return spec, "checked on this machine before"
        if work is None or work >= need:
            size = "of unknown size" if work is None else f"of {work:.0f} 256x256 frame(s) >= {need:.0f}"
            return spec, f"the job {size} pays its one-off check" + (" and export" if spec.backend != "torch" else "")
    return min(ranked, key=min_work), "the cheapest to start of the paths asked for"


def _verdict_file(model: nn.Module, spec: PathSpec, threads: int, cache: Path) -> Path:
    key = f"{machine_key(threads)}-{weights_digest(model)}-{spec}"
    return cache / "verified" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def cached_verdict(model: nn.Module, spec: PathSpec, threads: int, cache: Path | None = None) -> str | None:
    """What :func:`verify_path` found for ``spec`` on this machine before, or ``None``."""
    file = _verdict_file(model, spec, threads, cache or cache_dir())
    try:
        return str(json.loads(file.read_text())["verdict"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def path_ready(model: nn.Module, spec: PathSpec, threads: int, cache: Path | None = None) -> bool:
    """Whether ``spec``'s one-off costs are paid on this machine: checked ``ok`` (and exported)."""
    cache = cache or cache_dir()
    if spec == REFERENCE_PATH:
        return True
    if cached_verdict(model, spec, threads, cache) != "ok":
        return False
    return spec.backend == "torch" or (cache / "models" / weights_digest(model) / "fp32.onnx").is_file()


#: torch fp32's masks (logit > 0) of the check frames for the bundled weights, keyed by weights and frames
#: (:func:`fp32_check_key`): shipped so that a first run checks a path with its own forward alone, not
#: also fp32's (0.9 s of a 10 s first run on one core). Written by ``scripts/write_fp32_check.py``; weights
#: or frames without an entry are checked against a fp32 forward run here.
FP32_CHECK_FILE = Path(__file__).with_name("fp32_check.json")


def fp32_check_key(model: nn.Module, x: torch.Tensor) -> str:
    """The :data:`FP32_CHECK_FILE` key of ``model``'s weights and the check frames ``x``."""
    return f"{weights_digest(model)}-{hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()[:16]}"


def shipped_fp32_masks(model: nn.Module, x: torch.Tensor) -> np.ndarray | None:
    """torch fp32's masks ``(N, H, W)`` of the check frames ``x`` for ``model``'s weights as shipped in
    :data:`FP32_CHECK_FILE`, or ``None``."""
    try:
        entry = json.loads(FP32_CHECK_FILE.read_text()).get(fp32_check_key(model, x))
    except (OSError, ValueError):
        return None
    return None if entry is None else unpack_masks(entry, (x.shape[0], *x.shape[-2:]))


def fp32_masks(model: nn.Module, x: torch.Tensor, threads: int, cache: Path | None = None) -> np.ndarray:
    """torch fp32's masks (logit > 0) ``(N, H, W)`` of the frames ``x``, one frame per forward."""
    reference = build_runner(model, REFERENCE_PATH, threads, cache)
    with torch.inference_mode():
        return torch.cat([reference(x[i : i + 1]) for i in range(len(x))]).float().numpy()[:, 0] > 0


def verify_path(
    model: nn.Module,
    spec: PathSpec,
    threads: int,
    cache: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[str, Callable[[torch.Tensor], torch.Tensor] | None]:
    """Check ``spec`` against torch fp32 on two bundled sample frames (same targets: count, centroids
    within 1 px) and cache the verdict; returns it (``"ok"`` or what differs) and the runner built.
    fp32's side is read from :data:`FP32_CHECK_FILE` where it holds these weights, else run here."""
    cache = cache or cache_dir()
    if progress:
        progress(f"checking {spec} against fp32 on 2 sample frames (once on this machine)")
    x = _verification_batch(in_channels_of(model), 2)
    runner = None
    try:
        runner = build_runner(model, spec, threads, cache, progress=progress)
        if hasattr(runner, "expect"):  # OpenVINO: compile the frames' shape once, for the job too (256x256)
            runner.expect(tuple(x[:1].shape))
        reference = shipped_fp32_masks(model, x)
        if reference is None:
            reference = fp32_masks(model, x, threads, cache)
        with torch.inference_mode():
            out = torch.cat([runner(x[i : i + 1]) for i in range(len(x))]).float().numpy()[:, 0]
        verdict = verify_runner(reference, out)
    except Exception as exc:  # a backend that fails on this machine is reported, not fatal
        verdict, runner = f"failed: {exc}", None
    file = _verdict_file(model, spec, threads, cache)
    _atomic_write(file, lambda tmp: tmp.write_text(json.dumps({"path": str(spec), "verdict": verdict})))
    return verdict, runner


def plan_path(
    model: nn.Module,
    candidates: Sequence[PathSpec],
    threads: int,
    work: float | None,
    batch_size: int | None = None,
    cache: Path | None = None,
    remeasure: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PathChoice:
    """The path to run a job of ``work`` 256x256-frame equivalents on (``None``: unknown size).

    In order: a measured choice cached for these candidates (:func:`cached_choice`); a measurement
    (:func:`choose_path`) when ``remeasure`` or the job reaches :data:`MEASURE_MIN_WORK`; else the
    rule (:func:`rule_path` over :func:`ranked_paths`), whose pick, unless it is torch fp32, is
    checked against fp32 once per machine (:func:`verify_path`); a pick that fails the check is
    dropped and the rule asked again. ``batch_size``: the batch to run (and the only one measured);
    default :data:`RULE_BATCH`, or the fastest measured. With one candidate it is taken as it is.
    """
    cache = cache or cache_dir()
    ranked = ranked_paths(candidates)
    if not ranked:
        raise ValueError("no inference path is installed for the requested precision/backend")
    batches = (batch_size,) if batch_size else (1, 4)
    if len(ranked) > 1:
        if not remeasure and (choice := cached_choice(model, ranked, threads, batches, cache)) is not None:
            return choice
        if remeasure or (work is not None and work >= MEASURE_MIN_WORK):
            return choose_path(model, ranked, threads, batches, cache, use_cache=False, progress=progress)
    batch = batch_size or RULE_BATCH
    if len(ranked) == 1:
        return PathChoice(ranked[0], batch, threads, float("nan"), source="only option")
    remaining, verified = list(ranked), {}
    while True:
        ready = [str(s) for s in remaining if path_ready(model, s, threads, cache)]
        spec, why = rule_path(remaining, work, ready)
        runner = None
        if spec == REFERENCE_PATH or len(remaining) == 1:
            break
        verdict = cached_verdict(model, spec, threads, cache)  # a path that failed here before is not tried again
        if verdict is None:
            verdict, runner = verify_path(model, spec, threads, cache, progress)
        verified[str(spec)] = verdict
        if verdict == "ok":
            break
        remaining.remove(spec)
    return PathChoice(spec, batch, threads, float("nan"), verified=verified, source=f"rule: {why}", runner=runner)


def default_threads() -> int:
    """CPU threads for inference: every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
