"""``sirst bench``: inference, training and metric speed, side by side with the reference baselines.

:func:`run_bench` returns a JSON-ready dict; :func:`format_report` renders it as text tables.
All variants of one table are timed interleaved in the same run (see
:func:`sirst.bench.time_interleaved`), and every inference variant's detections on synthesized
test images are compared with the reference baseline's.
"""

from __future__ import annotations

import copy
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sirst.bench import (
    Peak,
    count_flops,
    estimate_peak_gflops,
    make_score_maps,
    measure_gemm_gflops,
    median,
    network_batch,
    public_style_pd_fa,
    same_detections,
    synthetic_images,
    time_interleaved,
)
from sirst.weights import resolve_weights

INFERENCE_VARIANTS: tuple[str, ...] = ("eager", "fold", "fold_cl_whole", "fold_cl_plain", "fold_cl", "bf16", "fp16", "onnxruntime", "onnxruntime_int8",
                                       "openvino_fp32", "openvino_bf16", "openvino_int8", "compile",
                                       "compile_bf16", "cuda_graphs_fp16", "cuda_graphs_bf16")
#: Variants that are a :class:`sirst.detect.backends.PathSpec` (what ``sirst detect --precision/--backend`` runs).
DEPLOY_VARIANTS: dict[str, str] = {"fold_cl": "torch-fp32", "bf16": "torch-bf16", "onnxruntime": "onnxruntime-fp32",
                                   "onnxruntime_int8": "onnxruntime-int8", "openvino_fp32": "openvino-fp32",
                                   "openvino_bf16": "openvino-bf16", "openvino_int8": "openvino-int8"}


@dataclass
class BenchConfig:
    """What ``sirst bench`` measures (see ``sirst bench --help``)."""

    device: str = "cpu"
    size: int = 256
    batches: tuple[int, ...] = (1, 8, 16)
    model: str = "dnanet"
    weights: str | None = None
    threads: int | None = None
    warmup: int = 1
    repeats: int = 5
    variants: tuple[str, ...] | None = None  # None: the defaults for the device
    compile: bool = False
    train_batch: int = 16
    train_repeats: int = 3
    skip_train: bool = False
    fast_runs: int | None = None  # fast-path training runs side by side (None: 3 on CUDA, skipped on CPU)
    fast_steps: int = 20  # timed steps per fast-path run
    eval_maps: int = 500
    eval_threads: int | None = None  # None: every core (the public loop is single-threaded anyway)
    skip_eval: bool = False
    peak_gflops: float | None = None
    peak_gflops_half: float | None = None
    progress: bool = True
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.size < 16 or self.size % 16:
            raise ValueError(f"--size must be a positive multiple of 16, got {self.size}")
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"--batch must list positive batch sizes, got {self.batches}")
        if self.eval_threads is not None and self.eval_threads < 1:
            raise ValueError(f"--eval-threads must be >= 1, got {self.eval_threads}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"--repeats must be >= 1 and --warmup >= 0, got {self.repeats}, {self.warmup}")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"--device must be cpu or cuda[:i], got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: CUDA is not available in this PyTorch build/machine")
        if self.weights is not None and not resolve_weights(self.weights).is_file():
            raise FileNotFoundError(f"{self.weights}: checkpoint not found")
        unknown = sorted(set(self.variants or ()) - set(INFERENCE_VARIANTS))
        if unknown:
            raise ValueError(f"--variants: unknown {unknown}; valid: {', '.join(INFERENCE_VARIANTS)}")


def default_variants(device: torch.device, compile_: bool) -> tuple[str, ...]:
    """The inference rows measured by default on ``device``."""
    if device.type == "cuda":
        out = ["eager", "fold_cl", "bf16", "fp16", "cuda_graphs_bf16", "cuda_graphs_fp16"]
    else:
        from sirst.detect.backends import backend_available

        out = ["eager", "fold", "fold_cl_whole", "fold_cl", "bf16"]
        if backend_available("onnxruntime"):
            out += ["onnxruntime", "onnxruntime_int8"]
        if backend_available("openvino"):
            out += ["openvino_fp32", "openvino_bf16", "openvino_int8"]
    if compile_:
        out += ["compile", "compile_bf16"]
    return tuple(out)


VARIANT_LABELS: dict[str, tuple[str, str]] = {
    # name: (label, precision)
    "eager": ("sirst eager (inference_mode, BN, NCHW)", "fp32"),
    "fold": ("+ BN folded", "fp32"),
    "fold_cl_whole": ("+ BN folded + channels_last (whole batch per forward)", "fp32"),
    "fold_cl_plain": ("+ BN folded + channels_last + CPU micro-batches of 1, no oneDNN prepacking", "fp32"),
    "fold_cl": ("+ BN folded + channels_last + CPU micro-batches of 1 [default]", "fp32"),
    "bf16": ("BN folded + channels_last + bf16 autocast", "bf16"),
    "fp16": ("BN folded + channels_last + fp16 autocast", "fp16"),
    "onnxruntime": ("ONNX Runtime (CPU EP, BN folded)", "fp32"),
    "onnxruntime_int8": ("ONNX Runtime INT8 (QDQ, per-channel)", "int8"),
    "openvino_fp32": ("OpenVINO fp32", "fp32"),
    "openvino_bf16": ("OpenVINO bf16", "bf16"),
    "openvino_int8": ("OpenVINO INT8 (same QDQ model, rest bf16)", "int8"),
    "compile": ("torch.compile (BN folded, channels_last)", "fp32"),
    "compile_bf16": ("torch.compile + bf16 autocast", "bf16"),
    "cuda_graphs_fp16": ("CUDA graphs + fp16 autocast", "fp16"),
    "cuda_graphs_bf16": ("CUDA graphs + bf16 autocast", "bf16"),
}


# ------------------------------------------------------------------------------------------------
# Model and variants
# ------------------------------------------------------------------------------------------------


def load_bench_model(cfg: BenchConfig) -> tuple[nn.Module, str]:
    """The model to benchmark (eval mode, CPU) and a description of its weights."""
    from sirst.checkpoint import model_from_checkpoint
    from sirst.models import create_model

    if cfg.weights:
        return model_from_checkpoint(cfg.weights, "cpu").float().eval(), cfg.weights
    if cfg.model == "dnanet":
        from sirst.weights import default_weights_path

        if default_weights_path().is_file():
            return model_from_checkpoint(default_weights_path(), "cpu").float().eval(), "bundled default weights (nuaa)"
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model).eval()
    # Random init leaves BN at identity; give it non-trivial statistics so folding is exercised.
    gen = torch.Generator().manual_seed(cfg.seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None:
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    # A random network's logits are all of one sign, which would make the detection check vacuous:
    # shift the output bias so that the top 0.3 % of pixels of synthesized images are "targets".
    heads = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels == 1 and m.bias is not None]
    if heads:
        with torch.no_grad():
            out = model(network_batch(synthetic_images(2, cfg.size, cfg.seed), _in_ch(model)))
            out = out[-1] if isinstance(out, (list, tuple)) else out
            heads[-1].bias -= torch.quantile(out.flatten().float(), 0.997)
    return model, f"random init (seed {cfg.seed}, output bias shifted to 0.3 % positives); pass --weights"


def _reference_runner(model: nn.Module, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor] | None:
    from sirst.bench.reference_dnanet import reference_from

    try:
        ref = reference_from(model).to(device)
    except ValueError:
        return None

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # as the public test script
            return ref(x.to(device))[-1]

    return run


def build_variant(
    name: str, model: nn.Module, device: torch.device, tmp: Path, threads: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable ``(N, C, H, W)`` -> logits for inference variant ``name``."""
    from sirst.detect.optimize import optimize_for_inference

    if name in DEPLOY_VARIANTS and name not in ("fold_cl", "bf16"):
        from sirst.detect.backends import PathSpec, build_runner

        # The user cache: the ONNX export and the INT8 model are made once per weights, as for sirst detect.
        return build_runner(model, PathSpec.parse(DEPLOY_VARIANTS[name]), threads)
    kwargs: dict[str, Any] = {
        "eager": dict(fold_bn=False, channels_last=False, micro_batch=0),
        "fold": dict(channels_last=False, micro_batch=0),
        "fold_cl_whole": dict(micro_batch=0),
        "fold_cl_plain": dict(onednn=False),
        "fold_cl": dict(),
        "bf16": dict(precision="bf16"),
        "fp16": dict(precision="fp16"),
        "compile": dict(compile=True),
        "compile_bf16": dict(compile=True, precision="bf16"),
        "cuda_graphs_fp16": dict(precision="fp16", cuda_graphs=True),
        "cuda_graphs_bf16": dict(precision="bf16", cuda_graphs=True),
    }[name]
    return optimize_for_inference(model, device, **kwargs)


def _in_ch(model: nn.Module) -> int:
    from sirst.detect.optimize import in_channels_of

    return in_channels_of(model)


def _pct(gflops: float, peak: Peak) -> float | None:
    return 100.0 * gflops / peak.gflops if peak.gflops else None


# ------------------------------------------------------------------------------------------------
# The three benchmarks
# ------------------------------------------------------------------------------------------------


def bench_inference(cfg: BenchConfig, model: nn.Module, device: torch.device, flops: int,
                    peaks: dict[str, Peak], threads: int, gemm: dict[str, float]) -> list[dict[str, Any]]:
    """Rows ``{batch, variant, label, precision, ms_per_img, img_per_s, speedup, gflops, pct_peak,
    detections, ...}``, the reference baseline first, for every batch size."""
    from tqdm import tqdm

    images = synthetic_images(max(cfg.batches), cfg.size, cfg.seed)
    batch = network_batch(images, _in_ch(model))
    names = list(cfg.variants or default_variants(device, cfg.compile))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
        reference = _reference_runner(model, device)
        if reference is not None:
            runners["reference"] = reference
        setup: dict[str, float] = {}
        for name in tqdm(names, desc="preparing", leave=False, disable=not cfg.progress):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runners[name] = build_variant(name, model, device, Path(tmp), threads)
            setup[name] = time.perf_counter() - start
        base_name = "reference" if "reference" in runners else names[0]
        for b in cfg.batches:
            x = batch[:b].to(device) if device.type == "cuda" else batch[:b].contiguous()
            outputs: dict[str, np.ndarray] = {}
            first_call: dict[str, float] = {}
            for name, fn in runners.items():  # first call: compile/capture time, and the outputs to check
                start = time.perf_counter()
                outputs[name] = fn(x).float().cpu().numpy()[:, 0]
                first_call[name] = time.perf_counter() - start
            times = time_interleaved({k: (lambda fn=fn: fn(x)) for k, fn in runners.items()}, device,
                                     warmup=cfg.warmup, repeats=cfg.repeats, progress=cfg.progress)
            base = median(times[base_name])
            for name in runners:
                t = median(times[name])
                label, precision = ("reference DNANet (public code style: eager, BN, NCHW, no_grad)", "fp32") \
                    if name == "reference" else VARIANT_LABELS[name]
                gflops = flops * b / t / 1e9
                check = same_detections(outputs[base_name], outputs[name])
                rows.append({
                    "batch": b, "variant": name, "label": label, "precision": precision,
                    "ms_per_img": 1000.0 * t / b, "img_per_s": b / t, "speedup": base / t,
                    "gflops": gflops, "pct_peak": _pct(gflops, peaks[precision]),
                    "pct_gemm": 100.0 * gflops / gemm[precision] if gemm.get(precision) else None,
                    "seconds": times[name], "first_call_s": first_call[name], "setup_s": setup.get(name, 0.0),
                    "detections": check.describe(), "identical_detections": check.identical,
                    "same_targets": check.same_targets,
                    "max_abs_logit_diff": check.max_abs_logit_diff, "pixels_differing": check.pixels_differing,
                    "targets": check.targets,
                })
    return rows


def best_against_best(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each variant at its fastest batch against the reference at *its* fastest batch.

    Returns one dict per variant, fastest first: ``variant``, ``label``, ``batch`` (its fastest),
    ``ms_per_img``, ``ratio`` (reference's best ms/img / this), ``pct_peak``, ``detections`` (worst
    check over all batches: identical < same targets < different).
    """
    best: dict[str, dict[str, Any]] = {}
    worst: dict[str, dict[str, Any]] = {}
    rank = lambda r: 2 if r["identical_detections"] else 1 if r["same_targets"] else 0  # noqa: E731
    for r in rows:
        if r["variant"] not in best or r["ms_per_img"] < best[r["variant"]]["ms_per_img"]:
            best[r["variant"]] = r
        if r["variant"] not in worst or rank(r) < rank(worst[r["variant"]]):
            worst[r["variant"]] = r
    base_name = "reference" if "reference" in best else next(iter(best), None)
    if base_name is None:
        return []
    base = best[base_name]["ms_per_img"]
    out = [{"variant": v, "label": r["label"], "precision": r["precision"], "batch": r["batch"],
            "ms_per_img": r["ms_per_img"], "img_per_s": r["img_per_s"], "ratio": base / r["ms_per_img"],
            "pct_peak": r["pct_peak"], "detections": worst[v]["detections"], "baseline": base_name,
            "baseline_batch": best[base_name]["batch"]}
           for v, r in best.items()]
    return sorted(out, key=lambda d: d["ms_per_img"])


def bench_training(cfg: BenchConfig, model: nn.Module, device: torch.device, flops: int,
                   peaks: dict[str, Peak]) -> list[dict[str, Any]]:
    """Training-step throughput (Soft-IoU with deep supervision, Adagrad; the paper's step)."""
    from sirst.data.synth import SynthConfig, make_sample
    from sirst.engine.config import TrainConfig
    from sirst.engine.steps import SegmentationStep

    rng = np.random.default_rng(cfg.seed + 1)
    samples = [make_sample(np.random.default_rng([cfg.seed + 1, i]), SynthConfig(size=cfg.size))
               for i in range(cfg.train_batch)]
    del rng
    images = network_batch([s[0].astype(np.float32) / 255.0 for s in samples], _in_ch(model)).to(device)
    masks = torch.from_numpy(np.stack([s[1] for s in samples])[:, None].astype(np.float32)).to(device)
    variants: dict[str, tuple[str, str, dict[str, Any]]] = {
        "fp32": ("fp32, NCHW", "fp32", dict(amp=False, channels_last=False, compile=False)),
        "amp_cl": ("bf16 autocast (--amp) + channels_last", "bf16", dict(amp=True, channels_last=True, compile=False)),
    }
    if cfg.compile:
        variants["compile"] = ("torch.compile (--compile) + channels_last", "fp32",
                               dict(amp=False, channels_last=True, compile=True))
    steps: dict[str, Callable[[], object]] = {}
    first_call: dict[str, float] = {}
    for name, (_, _, opts) in variants.items():
        net = copy.deepcopy(model).to(device).train()
        for p in net.parameters():
            p.requires_grad_(True)
        x = images
        if opts["channels_last"]:
            net = net.to(memory_format=torch.channels_last)
            x = images.contiguous(memory_format=torch.channels_last)
        tc = TrainConfig(data=".", out=".", device=device.type, amp=opts["amp"], channels_last=opts["channels_last"])
        step = SegmentationStep(tc)
        optimizers = step.configure_optimizers(net, tc)
        runner = torch.compile(net) if opts["compile"] else net
        batch = {"image": x, "mask": masks}
        steps[name] = lambda s=step, r=runner, b=batch, o=optimizers: s.step(r, b, o)
        start = time.perf_counter()
        steps[name]()
        first_call[name] = time.perf_counter() - start
    times = time_interleaved(steps, device, warmup=cfg.warmup, repeats=cfg.train_repeats, progress=cfg.progress)
    rows = []
    base = median(times["fp32"])
    for name, (label, precision, _) in variants.items():
        t = median(times[name])
        gflops = flops * cfg.train_batch / t / 1e9
        rows.append({"batch": cfg.train_batch, "variant": name, "label": label, "precision": precision,
                     "img_per_s": cfg.train_batch / t, "speedup": base / t, "gflops": gflops,
                     "pct_peak": _pct(gflops, peaks[precision]), "seconds": times[name],
                     "first_call_s": first_call[name]})
    return rows


def bench_metrics(cfg: BenchConfig) -> list[dict[str, Any]]:
    """Metric evaluation speed on ``cfg.eval_maps`` 256x256 probability maps, in memory, with
    ``cfg.eval_threads`` torch threads (default: every core)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.eval_threads or os.cpu_count() or 1)
    try:
        rows = _bench_metrics(cfg)
    finally:
        threads = torch.get_num_threads()
        torch.set_num_threads(previous)
    for row in rows:
        row["threads"] = threads
    return rows


def _bench_metrics(cfg: BenchConfig) -> list[dict[str, Any]]:
    from sirst.metrics import PdFaMetric, SirstMetrics

    scores, masks = make_score_maps(cfg.eval_maps, 256, cfg.seed)
    chunk = 32
    results: dict[str, Any] = {}

    def ours_full() -> None:
        m = SirstMetrics(0.5, "reference")
        for i in range(0, len(scores), chunk):
            m.update(scores[i : i + chunk], masks[i : i + chunk])
        results["full"] = m.compute()

    def ours_pdfa() -> None:
        m = PdFaMetric(0.5, "reference")
        for i in range(0, len(scores), chunk):
            m.update(scores[i : i + chunk], masks[i : i + chunk])
        results["pdfa"] = m.compute()

    def public() -> None:
        results["public"] = public_style_pd_fa(scores, masks, 0.5)

    fns = {"public_loop": public, "sirst_pdfa": ours_pdfa, "sirst_all": ours_full}
    times = time_interleaved(fns, torch.device("cpu"), warmup=1, repeats=max(3, cfg.repeats))
    pd, fa = results["public"]
    agree = abs(pd - results["full"]["pd"]) < 1e-12 and abs(fa - results["full"]["fa"]) < 1e-15 \
        and abs(pd - results["pdfa"]["pd"]) < 1e-12
    labels = {
        "public_loop": "public-code loop: skimage label + regionprops per image (Pd, Fa)",
        "sirst_pdfa": "sirst PdFaMetric, batched labelling (Pd, Fa)",
        "sirst_all": "sirst SirstMetrics (IoU, nIoU, P/R/F1, Pd, Fa)",
    }
    base = median(times["public_loop"])
    return [{"variant": k, "label": labels[k], "maps": cfg.eval_maps, "maps_per_s": cfg.eval_maps / median(v),
             "speedup": base / median(v), "seconds": v, "pd_fa_agree": agree} for k, v in times.items()]


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the benchmarks of ``cfg``; returns everything as a JSON-ready dict."""
    cfg.validate()
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_bench(cfg)
    finally:
        torch.set_num_threads(previous_threads)


def _run_bench(cfg: BenchConfig) -> dict[str, Any]:
    device = torch.device(cfg.device)
    threads = torch.get_num_threads()
    model, weights = load_bench_model(cfg)
    in_ch = _in_ch(model)
    flops = count_flops(model, cfg.size, in_ch)
    train_flops = count_flops(model, cfg.size, in_ch, train=True)
    peaks = {p: estimate_peak_gflops(device, p, threads) for p in ("fp32", "bf16", "fp16", "int8")}
    if cfg.peak_gflops:
        peaks["fp32"] = Peak(cfg.peak_gflops, "given by --peak-gflops")
    if cfg.peak_gflops_half:
        peaks["bf16"] = peaks["fp16"] = Peak(cfg.peak_gflops_half, "given by --peak-gflops-half")
    # What the device reaches on one large matrix product, as a practical ceiling beside the peak.
    precisions = {VARIANT_LABELS[v][1] for v in (cfg.variants or default_variants(device, cfg.compile))} | {"fp32"}
    if device.type == "cpu":
        precisions.discard("fp16")  # no fp16 matrix units on CPUs; oneDNN emulates it
    precisions.discard("int8")  # no int8 matrix product in torch to measure; the peak estimate stands
    gemm = {p: measure_gemm_gflops(device, p) for p in sorted(precisions)}
    report: dict[str, Any] = {
        "command": " ".join(["sirst", *sys.argv[1:]]) if sys.argv and "bench" in sys.argv else None,
        "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
        "device": _device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "model": cfg.model,
        "weights": weights,
        "flops_per_image": flops,
        "train_flops_per_image": train_flops,
        "peaks": {k: asdict(v) for k, v in peaks.items()},
        "gemm_gflops": gemm,
        "inference": bench_inference(cfg, model, device, flops, peaks, threads, gemm),
    }
    report["best"] = best_against_best(report["inference"])
    # Metrics before training: run after the training steps (gigabytes of autograd buffers freed),
    # the same metric code measured ~15 % slower (20.3x -> 17.0x the public loop), a state of the
    # process's memory rather than of either implementation.
    if not cfg.skip_eval:
        report["metrics"] = bench_metrics(cfg)
    if not cfg.skip_train:
        report["training"] = bench_training(cfg, model, device, train_flops, peaks)
        report["fast_training"] = _fast_training(cfg, model, device, train_flops, peaks)
    return report


def _fast_training(cfg: BenchConfig, model: nn.Module, device: torch.device, train_flops: int,
                   peaks: dict[str, Peak]) -> dict[str, Any]:
    """The CUDA training fast path (sirst window): one run alone and ``fast_runs`` side by side."""
    from sirst.bench.fast_train import bench_fast_training

    runs = cfg.fast_runs if cfg.fast_runs is not None else (3 if device.type == "cuda" else 0)
    if runs < 1:
        return {"skipped": "on the CPU by default (pass --fast-runs N to time it here too)"}
    amp = device.type == "cuda"  # bf16 as a window trains; fp32 on a CPU
    return bench_fast_training(model, device, runs, cfg.train_batch, cfg.size, cfg.fast_steps, train_flops,
                               peaks["bf16" if amp else "fp32"], amp=amp, seed=cfg.seed)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical CPUs)"
    return platform.processor() or "cpu"


# ------------------------------------------------------------------------------------------------
# Text report
# ------------------------------------------------------------------------------------------------


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_report(r: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    lines = [
        f"device: {r['device']} | torch {r['torch']} | threads {r['threads']}",
        f"model: {r['model']} ({r['weights']}), input {r['config']['size']}x{r['config']['size']}",
        f"FLOPs per image: inference {r['flops_per_image'] / 1e9:.2f} GFLOP "
        f"({r['flops_per_image'] / 2e9:.2f} GMAC), training step {r['train_flops_per_image'] / 1e9:.2f} GFLOP",
    ]
    for k, p in r["peaks"].items():
        lines.append(f"peak {k}: {_f(p['gflops'], '.0f')} GFLOP/s ({p['source']})")
    for k, g in r.get("gemm_gflops", {}).items():
        lines.append(f"large matrix product {k}: {g:.0f} GFLOP/s measured (%gemm below is relative to it)")
    lines += ["", "Inference (median of interleaved repeats; speed-up vs the first row of each batch)"]
    head = (f"{'batch':>5}  {'variant':<62} {'ms/img':>8} {'img/s':>7} {'x':>6} {'GFLOP/s':>8} {'%peak':>6} "
            f"{'%gemm':>6}  detections")
    lines.append(head)
    for row in r["inference"]:
        lines.append(f"{row['batch']:>5}  {row['label']:<62} {row['ms_per_img']:>8.1f} {row['img_per_s']:>7.2f} "
                     f"{row['speedup']:>5.2f}x {row['gflops']:>8.1f} {_f(row['pct_peak'], '.1f'):>6} "
                     f"{_f(row.get('pct_gemm'), '.1f'):>6}  {row['detections']}")
    if r.get("best"):
        b0 = r["best"][0]
        lines += ["", f"Best against best: every variant at its fastest batch against the {b0['baseline']} at its "
                      f"fastest (batch {b0['baseline_batch']}); detections: the worst check over all batches",
                  f"{'variant':<62} {'batch':>5} {'ms/img':>8} {'img/s':>7} {'x ref':>6} {'%peak':>6}  detections"]
        for row in r["best"]:
            lines.append(f"{row['label']:<62} {row['batch']:>5} {row['ms_per_img']:>8.1f} {row['img_per_s']:>7.2f} "
                         f"{row['ratio']:>5.2f}x {_f(row['pct_peak'], '.1f'):>6}  {row['detections']}")
    if "training" in r:
        lines += ["", f"Training step (batch {r['training'][0]['batch']}, Soft-IoU + deep supervision, Adagrad)",
                  f"{'variant':<44} {'img/s':>7} {'x':>6} {'GFLOP/s':>8} {'%peak':>6}"]
        for row in r["training"]:
            lines.append(f"{row['label']:<44} {row['img_per_s']:>7.2f} {row['speedup']:>5.2f}x {row['gflops']:>8.1f} "
                         f"{_f(row['pct_peak'], '.1f'):>6}")
    fast = r.get("fast_training")
    if fast and "rows" in fast:
        lines += ["", f"Training fast path (sirst window: data and augmentation on the device, each step "
                      f"{'one CUDA graph' if fast['graphs'] else 'eager'}, batch {fast['batch']}, {fast['precision']}; "
                      f"capture {fast['capture_s']:.1f} s)",
                  f"{'runs at once':<14} {'img/s':>9} {'img/s a run':>12} {'GFLOP/s':>9} {'%peak':>6}"]
        for row in fast["rows"]:
            lines.append(f"{row['runs']:<14} {row['img_per_s']:>9.1f} {row['img_per_s_per_run']:>12.1f} "
                         f"{row['gflops']:>9.1f} {_f(row['pct_peak'], '.2f'):>6}")
    elif fast:
        lines += ["", f"Training fast path: skipped {fast['skipped']}"]
    if "metrics" in r:
        lines += ["", f"Metric evaluation ({r['metrics'][0]['maps']} maps of 256x256, in memory, "
                      f"{r['metrics'][0].get('threads', '?')} torch threads; the public loop is single-threaded; "
                      f"Pd/Fa agree with the public loop: {r['metrics'][0]['pd_fa_agree']})",
                  f"{'variant':<68} {'maps/s':>9} {'x':>7}"]
        for row in r["metrics"]:
            lines.append(f"{row['label']:<68} {row['maps_per_s']:>9.0f} {row['speedup']:>6.1f}x")
    slow = [row for row in r["inference"] if row["first_call_s"] > 5 * row["ms_per_img"] * row["batch"] / 1000 + 1]
    if slow:
        lines += ["", "first calls (compilation / graph capture): " + ", ".join(
            f"{row['variant']} b{row['batch']} {row['first_call_s']:.1f} s" for row in slow)]
    return "\n".join(lines)
